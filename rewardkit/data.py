"""Prompts for PPO: load, check, filter, template, split, tokenize.

Data arrives as a local JSON/JSONL/CSV/Parquet file, ``asset:NAME`` for the
shipped dialogues, or a hub dataset name (through ``datasets``). The steps
follow the seed notebook: keep rows whose text is longer than ``min_chars``
and at most ``max_chars`` characters, wrap the text in the prompt template,
split train/test with a fixed seed. Prompts longer than the model's limit are
truncated and *counted*, never silently dropped.

Local files are read here rather than by ``datasets``, so that every problem
in them is reported with the file, the line (or row) and the field at fault:
bytes that are not UTF-8, a line that is not JSON, an empty file, a missing
column, a text that is not a string, a missing reference. The same checks
run in ``rewardkit validate`` (:func:`check_local_source`), before any model
is loaded.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from rewardkit.errors import ModelNotFoundError, RecipeError
from rewardkit.hub import ASSET_PREFIX, resolve
from rewardkit.recipe.schema import DataSection

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
#: suffixes that make a source clearly a file path rather than a hub dataset name
_FILE_LIKE = set(_FILE_BUILDERS) | {".txt", ".tsv", ".xlsx", ".xls", ".arrow", ".ndjson"}
#: at most this many row problems are listed one by one; the rest are counted
MAX_REPORTED = 8
#: ``validate`` reads local files up to this size completely; larger ones only their first bytes
FULL_CHECK_BYTES = 32 << 20
_HEAD_BYTES = 64 << 10


@dataclass
class PromptSet:
    """One split of prompts, ready for rollouts.

    :param prompts: prompt texts (template applied).
    :param input_ids: token ids of each prompt, truncated to the limit.
    :param references: reference outputs, or ``None`` when the data has none.
    :param metadata: the remaining columns of each row.
    :param truncated: how many prompts were cut to fit ``max_prompt_tokens``.
    """

    prompts: list[str]
    input_ids: list[list[int]]
    references: list[str] | None
    metadata: list[dict] = field(default_factory=list)
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.prompts)


# --------------------------------------------------------------------------- rows and where they are

_MISSING = object()  # a key absent from one row of a JSON file


class _Problems(Exception):
    """Problems found in a data source, each ``(recipe key, location, message)``.

    The recipe key (``source``, ``text_field``, ...) lets ``validate`` attach a
    problem to the line of the recipe that chose it; the location names the
    data file and its line or row.
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        super().__init__(problems)
        self.problems = problems

    def recipe_error(self) -> RecipeError:
        return RecipeError([(loc, msg) for _, loc, msg in self.problems])


def _fail(key: str, location: str, message: str):
    raise _Problems([(key, location, message)])


@dataclass
class _Table:
    """The rows of one data source, and how a message names each row.

    :param label: the file (or dataset) as a reader finds it.
    :param columns: every column, in order of first appearance.
    :param rows: the rows as dicts (local files), or None when ``dataset`` holds them.
    :param lines: the 1-based line where each row starts, when known.
    """

    label: str
    columns: list[str]
    rows: list[dict] | None = None
    lines: list[int] | None = None
    dataset: Any = None  # a datasets.Dataset, for hub datasets and directories

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.dataset)

    def column(self, name: str) -> list:
        """Every row's value of ``name`` (``_MISSING`` where a JSON row lacks the key)."""
        if self.rows is not None:
            return [row.get(name, _MISSING) for row in self.rows]
        return list(self.dataset[name])

    def records(self, indices: Sequence[int]) -> list[dict]:
        """The full rows at ``indices`` (every column, None where a row lacks one)."""
        if self.rows is not None:
            return [{c: self.rows[i].get(c) for c in self.columns} for i in indices]
        return list(self.dataset.select(indices)) if len(indices) else []

    def where(self, index: int) -> str:
        """``file:line`` (or ``file: row N``) of the row at ``index``."""
        if self.lines is not None:
            return f"{self.label}:{self.lines[index]}"
        return f"{self.label}: row {index + 1}"


def _describe(value: Any) -> str:
    """A value's kind in a reader's words, with the value when it is short."""
    if value is None or value is _MISSING:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (list, tuple)):
        return f"a list ({len(value)} item{'' if len(value) == 1 else 's'})"
    if isinstance(value, dict):
        return "an object ({...})"
    return f"a {type(value).__name__}"


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


# --------------------------------------------------------------------------- reading local files

def _decode(raw: bytes, label: str, *, final: bool = True) -> str:
    """UTF-8 text of ``raw`` (a leading byte-order mark dropped), or a problem naming the line.

    :param final: False when ``raw`` is only the start of a file, so a
        character cut at its end is not an error.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        _fail("source", f"{label}:1", "the file is UTF-16 text; save it as UTF-8")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=final)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        _fail("source", f"{label}:{line}", f"not UTF-8 text: byte {raw[exc.start]:#04x} at column {column} "
                                           f"(offset {exc.start}); save the file as UTF-8")
    return text.removeprefix("\ufeff")


def _empty_file(label: str, section: DataSection):
    _fail("source", label, f"the file is empty; it needs rows with a '{section.text_field}' field "
                           f"(data.text_field)")


def _from_dicts(label: str, items: Iterable[tuple[int, Any]], what: str) -> _Table:
    """A table of JSON objects; ``items`` are ``(line, value)`` pairs."""
    rows, lines, columns, bad = [], [], {}, _Report()
    for line, value in items:
        if isinstance(value, dict):
            rows.append(value)
            lines.append(line)
            columns.update(dict.fromkeys(value))
        else:
            bad.add("source", f"{label}:{line}", f"expected a JSON object ({{\"key\": value, ...}}) as {what}, "
                                                 f"got {_describe(value)}")
    bad.raise_if_any(label)
    return _Table(label, list(columns), rows, lines)


def _read_json_lines(text: str, label: str) -> _Table:
    """One JSON object per line; blank lines are skipped."""
    items, bad = [], _Report()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.add("source", f"{label}:{number}", f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                                   f"each line must hold one JSON object")
            continue
        if not isinstance(value, dict):
            bad.add("source", f"{label}:{number}", f"expected a JSON object ({{\"key\": value, ...}}) on each "
                                                   f"line, got {_describe(value)}")
        items.append((number, value))
    bad.raise_if_any(label)
    return _from_dicts(label, items, "each line")


def _read_json_array(text: str, label: str) -> _Table:
    """A JSON list of objects (or of strings, read as a ``text`` column, as ``datasets`` does)."""
    decoder = json.JSONDecoder()
    items: list[tuple[int, Any]] = []
    pos = text.index("[") + 1
    try:
        while True:
            pos = _skip_space(text, pos)
            if text.startswith("]", pos):
                break
            if items:
                if not text.startswith(",", pos):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
                pos = _skip_space(text, pos + 1)
            value, end = decoder.raw_decode(text, pos)
            items.append((text.count("\n", 0, pos) + 1, value))
            pos = end
        if _skip_space(text, pos + 1) != len(text):
            raise json.JSONDecodeError("Extra data after the list", text, _skip_space(text, pos + 1))
    except json.JSONDecodeError as exc:
        _fail("source", f"{label}:{exc.lineno}", f"not valid JSON ({exc.msg} at column {exc.colno})")
    if items and all(isinstance(v, str) for _, v in items):
        items = [(line, {"text": v}) for line, v in items]
    return _from_dicts(label, items, "each item of the list")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_json(text: str, label: str) -> _Table:
    """A ``.json`` file: a list of objects, JSON lines, or (refused) one multi-line object."""
    if text.lstrip().startswith("["):
        return _read_json_array(text, label)
    if sum(1 for line in text.split("\n") if line.strip()) > 1 and text.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # not one object: read it as JSON lines, which names the bad line
        if isinstance(whole, dict):
            keys = ", ".join(list(whole)[:10]) or "none"
            _fail("source", f"{label}:1", f"the file holds a single JSON object (keys: {keys}); write the rows "
                                          f"as a JSON list of objects ([{{...}}, ...]) or one object per line")
    return _read_json_lines(text, label)


def _read_csv(text: str, label: str) -> _Table:
    """A CSV file with a header row; column types are inferred as ``datasets`` does (pandas)."""
    import pandas as pd
    import pyarrow as pa

    lines = _csv_lines(text, label)
    try:
        frame = pd.read_csv(io.StringIO(text))
    except Exception as exc:  # pandas' parser errors carry their own line numbers
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail("source", label, f"could not read the file as CSV: {message}")
    rows = pa.Table.from_pandas(frame, preserve_index=False).to_pylist()
    if lines is not None and len(lines) != len(rows):
        lines = None  # the two parsers disagree on what a row is: name rows by number instead
    return _Table(label, [str(c) for c in frame.columns], rows, lines)


def _csv_lines(text: str, label: str) -> list[int] | None:
    """The starting line of each CSV data row; a row with more fields than the header is a problem."""
    reader = csv.reader(io.StringIO(text, newline=""))
    starts, bad, width, end = [], [], None, 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:
                continue  # a blank line
            if width is None:
                width = len(record)
                continue
            if len(record) > width:
                bad.append(("source", f"{label}:{start}", f"{len(record)} fields, but the header has {width}; "
                                                          f"quote fields that contain commas"))
            starts.append(start)
    except csv.Error:
        return None  # pandas reads it or says why
    if bad:
        raise _Problems(bad)
    return starts


def _read_parquet(path: Path, label: str) -> _Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        _fail("source", label, f"could not read the file as Parquet: {str(exc).splitlines()[0] if str(exc) else exc}")
    return _Table(label, list(table.column_names), table.to_pylist())


def _read_local(path: Path, section: DataSection) -> _Table:
    """Read a local data file completely, or raise the problems that stop it."""
    label = _display(path)
    suffix = path.suffix.lower()
    if suffix not in _FILE_BUILDERS:
        _fail("source", label, f"unsupported file type '{suffix}'; use one of {', '.join(sorted(_FILE_BUILDERS))}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        _fail("source", label, f"cannot read the file: {exc.strerror or exc}")
    if suffix == ".parquet":
        if not raw:
            _empty_file(label, section)
        return _read_parquet(path, label)
    text = _decode(raw, label)
    if not text.strip():
        _empty_file(label, section)
    if suffix == ".jsonl":
        table = _read_json_lines(text, label)
    elif suffix == ".json":
        table = _read_json(text, label)
    else:
        table = _read_csv(text, label)
    if not len(table):
        kind = "a header but no rows" if suffix == ".csv" else "no rows"
        _fail("source", label, f"the file has {kind}")
    return table


def _local_path(section: DataSection, base_dir) -> Path | None:
    """The local file or directory ``section.source`` names, or None for a hub dataset name.

    Relative paths are looked for in ``base_dir`` (the recipe's directory),
    then in the working directory, as :func:`rewardkit.hub.resolve` does.

    :raises _Problems: the source is clearly a path (``./x``, ``x.jsonl``, an
        asset) and nothing is there.
    """
    name = section.source
    if name.startswith(ASSET_PREFIX):
        try:
            return Path(resolve(name))
        except ModelNotFoundError as exc:
            _fail("source", "", str(exc))
    raw = Path(name).expanduser()
    tried = [raw] if raw.is_absolute() or base_dir is None else [Path(base_dir) / raw, raw]
    for path in tried:
        if path.exists():
            return path.resolve()
    if name.startswith((".", "/", "~")) or raw.suffix.lower() in _FILE_LIKE:
        if len(tried) > 1:
            _fail("source", "", f"no such data file: {name} (looked in the recipe's directory "
                                f"{Path(base_dir).resolve()} and in the working directory)")
        _fail("source", "", f"no such data file: {raw}")
    return None


def _open(section: DataSection, base_dir) -> _Table:
    """The rows of ``section.source``: a local file, a directory of files, or a hub dataset."""
    path = _local_path(section, base_dir)
    if path is not None and path.is_file():
        return _read_local(path, section)
    import datasets

    source = str(path) if path is not None else section.source
    try:
        rows = datasets.load_dataset(source, split=section.split)
    except Exception as exc:
        if path is not None:
            _fail("source", _display(path), f"could not read the data: {exc}")
        rows = _from_hub_snapshot(section)
        if rows is None:
            raise ModelNotFoundError(
                f"could not load dataset '{section.source}' (split '{section.split}'): it is not a local file "
                f"and could not be found in the cache or downloaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}).\nWhere you have internet access, "
                f"either download its files (`hf download --repo-type dataset {section.source}`) into the "
                f"Hugging Face cache you will copy, or load it once (`python -c \"import datasets; "
                f"datasets.load_dataset('{section.source}')\"`) to fill the datasets cache; or point "
                f"data.source at a local file or folder."
            ) from None
    label = _display(path) if path is not None else f"dataset '{section.source}' (split {section.split})"
    return _Table(label, list(rows.column_names), dataset=rows)


def _from_hub_snapshot(section: DataSection):
    """The split from a downloaded copy of the dataset repo in the hub cache, or None when there is none.

    Offline, ``datasets.load_dataset("org/name")`` reads only its own Arrow
    cache (``$HF_HOME/datasets``), not the files ``hf download --repo-type
    dataset`` leaves in the hub cache (``$HF_HOME/hub``); so a user who
    downloaded the files and went offline would be told the dataset is
    missing. Loading the cached snapshot folder reads the same files.
    """
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(section.source, repo_type="dataset", local_files_only=True)
    except Exception:
        return None
    import datasets

    try:
        return datasets.load_dataset(folder, split=section.split)
    except Exception:
        return None


# --------------------------------------------------------------------------- checking the rows

def _select(table: _Table, section: DataSection, needs_references: bool) -> list[int]:
    """The indices of the rows to use, after checking every field the run reads.

    Every row's text must be a string (it is measured and templated); the
    references of the rows kept must be strings, or may be null when no
    reward needs them.

    :raises _Problems: every problem, the first :data:`MAX_REPORTED` row by row.
    """
    text_field, ref_field = section.text_field, section.reference_field
    missing = []
    for key, name in (("text_field", text_field), ("reference_field", ref_field)):
        if name and name not in table.columns:
            hint = "; set data.reference_field: null if the data has no references" if key == "reference_field" \
                else ""
            missing.append((key, table.label, f"no column '{name}' (data.{key}); the columns are: "
                                              f"{', '.join(table.columns) or 'none'}{hint}"))
    if missing:
        raise _Problems(missing)

    report = _Report()
    texts = table.column(text_field)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            report.add("text_field", f"{table.where(i)}: {text_field}", _not_text(text, table, i, "text_field"))
    report.raise_if_any(table.label)

    lo, hi = section.min_chars, section.max_chars
    keep = [i for i, text in enumerate(texts) if len(text) > lo and (hi is None or len(text) <= hi)]
    if section.limit is not None:
        keep = keep[:section.limit]
    if ref_field:
        refs = table.column(ref_field)
        for i in keep:
            ref = refs[i]
            if isinstance(ref, str):
                continue
            if ref is None or ref is _MISSING:
                if needs_references:
                    report.add("reference_field", f"{table.where(i)}: {ref_field}",
                               f"{_not_text(ref, table, i, 'reference_field')}: a reward in the recipe compares "
                               f"completions with references, so every row needs one; fill it in or remove the row")
            else:
                report.add("reference_field", f"{table.where(i)}: {ref_field}",
                           _not_text(ref, table, i, "reference_field"))
        report.raise_if_any(table.label)

    if len(keep) < 2:
        _fail("min_chars", table.label, f"only {len(keep)} of {len(table)} rows pass the length filter "
                                        f"({lo} < len({text_field}) <= {hi}); need at least 2")
    n_test = math.ceil(section.test_size * len(keep))
    n_train = math.floor((1 - section.test_size) * len(keep))
    if n_test < 1 or n_train < 1:
        _fail("test_size", table.label, f"data.test_size {section.test_size} of {len(keep)} rows leaves "
                                        f"{n_train} for training and {n_test} for testing; both need at least one")
    return keep


def _not_text(value: Any, table: _Table, index: int, key: str) -> str:
    """Why ``value``, a row's ``data.<key>`` field, is not the text it should be."""
    if value is _MISSING:
        keys = ", ".join(table.rows[index]) or "none"
        return f"the row has no such key (data.{key}); its keys: {keys}"
    if value is None:
        return f"no text (null) for data.{key}"
    return f"expected text for data.{key}, got {_describe(value)}"


class _Report:
    """Collects row problems, keeping the first :data:`MAX_REPORTED` and counting the rest."""

    def __init__(self):
        self.problems: list[tuple[str, str, str]] = []
        self.more = 0

    def add(self, key: str, location: str, message: str) -> None:
        if len(self.problems) < MAX_REPORTED:
            self.problems.append((key, location, message))
        else:
            self.more += 1

    def raise_if_any(self, label: str) -> None:
        if self.more:
            self.problems.append((self.problems[-1][0], label, f"... and {self.more} more row(s) like these"))
        if self.problems:
            raise _Problems(self.problems)


# --------------------------------------------------------------------------- public functions

def load_rows(section: DataSection, base_dir=None):
    """The rows of ``section.source`` as a ``datasets.Dataset`` (read and parsed; fields unchecked).

    :raises RecipeError: the file is missing, unreadable, not UTF-8, empty or malformed.
    """
    try:
        table = _open(section, base_dir)
    except _Problems as exc:
        raise exc.recipe_error() from None
    if table.dataset is not None:
        return table.dataset
    import datasets

    return datasets.Dataset.from_list(table.records(range(len(table))))


def prepare(section: DataSection, tokenizer, *, seed: int, base_dir=None,
            needs_references: bool = False) -> tuple[PromptSet, PromptSet]:
    """Load, check, filter, template, split and tokenize: returns ``(train, test)``.

    :param base_dir: where a relative ``section.source`` is looked for (the recipe's directory).
    :param needs_references: a reward compares completions with references,
        so every row used must have one (a null is refused, naming the row).
    :raises RecipeError: every problem with the data, each naming the file,
        its line (or row) and the field.
    :raises ModelNotFoundError: a hub dataset that is neither cached nor downloadable.
    """
    try:
        table = _open(section, base_dir)
        keep = _select(table, section, needs_references)
    except _Problems as exc:
        raise exc.recipe_error() from None
    import datasets

    split = datasets.Dataset.from_dict({"row": keep}).train_test_split(
        test_size=section.test_size, shuffle=section.shuffle, seed=seed)
    return (_to_prompts(table, split["train"]["row"], section, tokenizer),
            _to_prompts(table, split["test"]["row"], section, tokenizer))


def check_local_source(section: DataSection, base_dir=None, *,
                       needs_references: bool = False) -> list[tuple[tuple[str, ...], str]]:
    """What is wrong with ``section.source`` when it is a local file, found without loading a model.

    For ``rewardkit validate``: a path that does not exist, a file that is
    not a supported type or cannot be read, and (for files up to
    :data:`FULL_CHECK_BYTES`) everything :func:`prepare` would refuse:
    encoding, syntax, missing columns, non-text fields, missing references,
    too few rows. Larger files have only their first bytes checked. Hub
    dataset names and directories are left to the run.

    :param base_dir: the recipe's directory.
    :param needs_references: as for :func:`prepare`.
    :returns: ``(key path, message)`` pairs, the key path inside the recipe
        (``("data", "source")``, ``("data", "text_field")``, ...) and the
        message naming the data file, its line and the field.
    """
    try:
        path = _local_path(section, base_dir)
        if path is None or not path.is_file():
            return []
        if path.stat().st_size > FULL_CHECK_BYTES:
            _check_head(path, section)
            return []
        _select(_read_local(path, section), section, needs_references)
    except _Problems as exc:
        return [(("data", key), f"{loc}: {msg}" if loc else msg)
                for key, loc, msg in exc.problems]
    except OSError as exc:
        return [(("data", "source"), f"cannot read {section.source}: {exc.strerror or exc}")]
    return []


def _check_head(path: Path, section: DataSection) -> None:
    """The cheap checks of a large file: supported, readable, not empty, UTF-8 at the start."""
    label = _display(path)
    suffix = path.suffix.lower()
    if suffix not in _FILE_BUILDERS:
        _fail("source", label, f"unsupported file type '{suffix}'; use one of {', '.join(sorted(_FILE_BUILDERS))}")
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    if suffix == ".parquet":
        return
    if not _decode(head, label, final=False).strip():
        _empty_file(label, section)


def _to_prompts(table: _Table, indices: list[int], section: DataSection, tokenizer) -> PromptSet:
    rows = table.records(indices)
    placeholder = "{" + section.text_field + "}"
    # str.replace, not str.format: dialogue text may itself contain braces.
    prompts = [section.template.replace(placeholder, row[section.text_field]) for row in rows]
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"] if prompts else []
    limit = section.max_prompt_tokens
    truncated = sum(len(ids) > limit for ids in encoded)
    if truncated:
        eos = tokenizer.eos_token_id
        # keep the closing EOS so a truncated prompt still looks finished to the encoder
        encoded = [ids if len(ids) <= limit else ids[:limit - 1] + ([eos] if eos is not None else [ids[limit - 1]])
                   for ids in encoded]
    refs = [row[section.reference_field] for row in rows] if section.reference_field else None
    skip = {section.text_field, section.reference_field}
    meta_cols = [c for c in table.columns if c not in skip]
    metadata = [{c: row[c] for c in meta_cols} for row in rows]
    return PromptSet(prompts, encoded, refs, metadata, truncated)
