"""Prompts for PPO: load, filter, template, split, tokenize.

Data arrives through ``datasets``: a hub dataset name, a local
JSON/JSONL/CSV/Parquet file, or ``asset:NAME`` for the shipped dialogues.
The steps follow the seed notebook: keep rows whose text is longer than
``min_chars`` and at most ``max_chars`` characters, wrap the text in the
prompt template, split train/test with a fixed seed. Prompts longer than the
model's limit are truncated and *counted*, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rewardkit.errors import ModelNotFoundError, RecipeError
from rewardkit.hub import resolve
from rewardkit.recipe.schema import DataSection

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


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


def load_rows(section: DataSection, base_dir=None):
    """Load the raw ``datasets.Dataset`` named by ``section.source``."""
    import datasets

    source = resolve(section.source, base_dir)
    suffix = Path(source).suffix.lower()
    try:
        if Path(source).is_file():
            if suffix not in _FILE_BUILDERS:
                raise RecipeError([("data.source", f"unsupported file type '{suffix}' for {source}; "
                                    f"use one of {', '.join(sorted(_FILE_BUILDERS))}")])
            return datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=source, split="train")
        return datasets.load_dataset(source, split=section.split)
    except RecipeError:
        raise
    except Exception as exc:
        if Path(source).exists():
            raise RecipeError([("data.source", f"could not read {source}: {exc}")]) from None
        raise ModelNotFoundError(
            f"could not load dataset '{section.source}' (split '{section.split}'): it is not a local file "
            f"and could not be found in the cache or downloaded ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}).\nDownload it where you have internet access "
            f"(`hf download --repo-type dataset {section.source}`) or point data.source at a local file."
        ) from None


def prepare(section: DataSection, tokenizer, *, seed: int, base_dir=None) -> tuple[PromptSet, PromptSet]:
    """Load, filter, template, split and tokenize: returns ``(train, test)``."""
    rows = load_rows(section, base_dir)
    missing = [c for c in (section.text_field, section.reference_field) if c and c not in rows.column_names]
    if missing:
        raise RecipeError([("data", f"column(s) {', '.join(missing)} not in {section.source} "
                            f"(columns: {', '.join(rows.column_names)})")])
    lo, hi = section.min_chars, section.max_chars
    text_field = section.text_field
    rows = rows.filter(lambda r: r[text_field] is not None and len(r[text_field]) > lo
                       and (hi is None or len(r[text_field]) <= hi))
    if section.limit is not None:
        rows = rows.select(range(min(section.limit, len(rows))))
    if len(rows) < 2:
        raise RecipeError([("data", f"only {len(rows)} rows of {section.source} pass the length filter "
                            f"({lo} < len({text_field}) <= {hi}); need at least 2")])
    split = rows.train_test_split(test_size=section.test_size, shuffle=section.shuffle, seed=seed)
    return (_to_prompts(split["train"], section, tokenizer), _to_prompts(split["test"], section, tokenizer))


def _to_prompts(rows, section: DataSection, tokenizer) -> PromptSet:
    placeholder = "{" + section.text_field + "}"
    # str.replace, not str.format: dialogue text may itself contain braces.
    prompts = [section.template.replace(placeholder, text) for text in rows[section.text_field]]
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    limit = section.max_prompt_tokens
    truncated = sum(len(ids) > limit for ids in encoded)
    if truncated:
        eos = tokenizer.eos_token_id
        # keep the closing EOS so a truncated prompt still looks finished to the encoder
        encoded = [ids if len(ids) <= limit else ids[:limit - 1] + ([eos] if eos is not None else [ids[limit - 1]])
                   for ids in encoded]
    refs = list(rows[section.reference_field]) if section.reference_field else None
    skip = {section.text_field, section.reference_field}
    meta_cols = [c for c in rows.column_names if c not in skip]
    metadata = [{c: row[c] for c in meta_cols} for row in rows] if meta_cols else [{} for _ in prompts]
    return PromptSet(prompts, encoded, refs, metadata, truncated)
