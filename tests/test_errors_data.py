"""Bad data files are refused with the file, the line (or row) and the field at fault (issue 10, family 1)."""

import json
from pathlib import Path

import pytest

from rewardkit import data as D
from rewardkit.errors import RecipeError
from rewardkit.recipe.schema import DataSection

GOOD = {"dialogue": "#Person1#: hello there, how are you?", "summary": "They greet."}


class FakeTokenizer:
    """Word-count token ids: enough for prepare() to finish."""

    eos_token_id = 1

    def __call__(self, prompts, add_special_tokens=True):
        return {"input_ids": [[5] * len(p.split()) + [1] for p in prompts]}


def section(source, **kw) -> DataSection:
    kw.setdefault("min_chars", 0)
    return DataSection(source=str(source), **kw)


def jsonl(path, rows, *, blank_after_first=False) -> str:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    if blank_after_first:
        lines.insert(1, "")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def refused(source, *, needs_references=False, **kw) -> str:
    """prepare()'s message, after checking check_local_source() finds the same problems first."""
    sec = section(source, **kw)
    early = D.check_local_source(sec, None, needs_references=needs_references)
    with pytest.raises(RecipeError) as info:
        D.prepare(sec, FakeTokenizer(), seed=0, needs_references=needs_references)
    message = str(info.value)
    assert early, f"validate missed: {message}"
    assert all(text in message for _, text in early), (early, message)
    assert message.strip() and "Traceback" not in message
    return message


# ---------------------------------------------------------------- encoding

@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@pytest.mark.parametrize("bad", [b"caf\xe9", b"\xff\xfe junk", b"\x80", b"half \xe2\x82"])
def test_non_utf8_bytes_name_the_file_and_line(tmp_path, suffix, bad):
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        raw = b"dialogue,summary\nhello there,hi\nhow are you,ok\n" + bad + b",x\n"
        line = 4
    elif suffix == ".json":
        raw = b'[\n{"dialogue": "hello there", "summary": "hi"},\n{"dialogue": "how are you", "summary": "ok"},\n' \
              b'{"dialogue": "' + bad + b'", "summary": "x"}\n]\n'
        line = 4
    else:
        raw = (json.dumps(GOOD) + "\n").encode() * 2 + b'{"dialogue": "' + bad + b'", "summary": "x"}\n'
        line = 3
    path.write_bytes(raw)
    message = refused(path)
    assert f"data{suffix}:{line}: not UTF-8 text" in message and "save the file as UTF-8" in message


def test_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes((json.dumps(GOOD) + "\n").encode("utf-16"))
    assert "data.jsonl:1: the file is UTF-16 text; save it as UTF-8" in refused(path)


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbfdialogue,summary\nhello there,hi\nhow are you,ok\n")
    train, test = D.prepare(section(path), FakeTokenizer(), seed=0)
    assert len(train) + len(test) == 2


# ---------------------------------------------------------------- text field not a string

@pytest.mark.parametrize("value, shown", [(42, "a number (42)"), (3.5, "a number (3.5)"), ([1, 2], "a list (2 items)"),
                                          ({"a": 1}, "an object"), (True, "a boolean (true)"),
                                          (None, "no text (null)")])
def test_text_field_that_is_not_a_string_names_line_and_field(tmp_path, value, shown):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, {"dialogue": value, "summary": "s"}], blank_after_first=True)
    message = refused(path)
    assert "d.jsonl:4: dialogue: " in message  # line 4: a blank line comes before it
    assert shown in message and "data.text_field" in message


def test_a_row_without_the_text_key_lists_its_keys(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"summary": "s", "id": 7}, GOOD])
    message = refused(path)
    assert "d.jsonl:2: dialogue: the row has no such key (data.text_field); its keys: summary, id" in message


def test_text_field_under_another_name(tmp_path):
    rows = [{"text": "hello there", "ref": "a"}, {"text": ["x"], "ref": "b"}, {"text": "fine", "ref": "c"}]
    path = jsonl(tmp_path / "d.jsonl", rows)
    message = refused(path, text_field="text", reference_field="ref", template="Say: {text}")
    assert "d.jsonl:2: text: expected text for data.text_field, got a list (1 item)" in message


def test_json_array_rows_are_named_by_their_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"dialogue": "hello there", "summary": "x"},\n\n  {"dialogue": 12, "summary": "y"}\n]\n')
    assert "d.json:4: dialogue: expected text for data.text_field, got a number (12)" in refused(path)


def test_csv_empty_and_numeric_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('dialogue,summary\nhello there,hi\n"two\nlines",ok\n,missing\n')
    assert "d.csv:5: dialogue: no text (null) for data.text_field" in refused(path)  # the quoted newline counts
    path.write_text("dialogue,summary\n1,a\n2,b\n")
    assert "d.csv:2: dialogue: expected text for data.text_field, got a number (1)" in refused(path)


def test_parquet_rows_are_named_by_number(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"dialogue": ["hello there", None, "fine"], "summary": ["a", "b", "c"]}), path)
    assert "d.parquet: row 2: dialogue: no text (null)" in refused(path)


def test_many_bad_rows_are_counted_not_all_listed(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD] + [{"dialogue": i, "summary": "s"} for i in range(20)])
    message = refused(path)
    assert message.count("expected text for data.text_field") == D.MAX_REPORTED
    assert f"... and {20 - D.MAX_REPORTED} more row(s) like these" in message


# ---------------------------------------------------------------- references

@pytest.mark.parametrize("row, shown", [({"dialogue": "a dialogue", "summary": None}, "no text (null)"),
                                        ({"dialogue": "a dialogue"}, "the row has no such key")])
def test_missing_reference_is_the_datas_fault_when_a_reward_needs_it(tmp_path, row, shown):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, row, GOOD])
    message = refused(path, needs_references=True)
    assert "d.jsonl:2: summary: " in message and shown in message
    assert "a reward in the recipe compares completions with references" in message
    assert "rouge" not in message.lower()


def test_null_reference_is_fine_when_no_reward_needs_it(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"dialogue": "another dialogue", "summary": None}, GOOD])
    assert D.check_local_source(section(path)) == []
    train, test = D.prepare(section(path), FakeTokenizer(), seed=0)
    assert sorted(train.references + test.references, key=str) == sorted([GOOD["summary"]] * 2 + [None], key=str)


@pytest.mark.parametrize("value, shown", [(5, "a number (5)"), (["a"], "a list"), ({"t": "x"}, "an object")])
def test_reference_that_is_not_text_is_refused_either_way(tmp_path, value, shown):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, {"dialogue": "a dialogue", "summary": value}])
    for needs in (False, True):
        message = refused(path, needs_references=needs)
        assert "d.jsonl:3: summary: expected text for data.reference_field, got " + shown in message


def test_only_rows_that_are_used_need_a_reference(tmp_path):
    short = {"dialogue": "hi", "summary": None}  # dropped by min_chars, so its reference does not matter
    path = jsonl(tmp_path / "d.jsonl", [GOOD, short, GOOD])
    assert D.check_local_source(section(path, min_chars=5), needs_references=True) == []
    D.prepare(section(path, min_chars=5), FakeTokenizer(), seed=0, needs_references=True)


# ---------------------------------------------------------------- empty files

@pytest.mark.parametrize("name, content, reason", [
    ("d.jsonl", "", "the file is empty"),
    ("d.jsonl", "\n \n\t\n", "the file is empty"),
    ("d.json", "", "the file is empty"),
    ("d.json", "[]", "the file has no rows"),
    ("d.json", "[ \n ]\n", "the file has no rows"),
    ("d.csv", "", "the file is empty"),
    ("d.csv", "dialogue,summary\n", "the file has a header but no rows"),
    ("d.parquet", "", "the file is empty"),
])
def test_empty_files_say_why(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_text(content)
    message = refused(path)
    assert f"{name}: {reason}" in message


# ---------------------------------------------------------------- missing columns

def test_missing_text_column_names_the_columns_there_are(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "hello there", "summary": "a", "id": 1}] * 3)
    message = refused(path)
    assert "d.jsonl: no column 'dialogue' (data.text_field); the columns are: text, summary, id" in message


def test_missing_reference_column_suggests_null(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("dialogue,label\nhello there,1\nhow are you,0\n")
    message = refused(path)
    assert "d.csv: no column 'summary' (data.reference_field); the columns are: dialogue, label" in message
    assert "data.reference_field: null" in message
    D.prepare(section(path, reference_field=None), FakeTokenizer(), seed=0)  # ...which works


def test_missing_column_check_names_the_recipe_key():
    found = D.check_local_source(section("asset:dialogues.jsonl", text_field="body", template="{body}"))
    assert found and found[0][0] == ("data", "text_field") and "no column 'body'" in found[0][1]


# ---------------------------------------------------------------- not valid JSON

@pytest.mark.parametrize("bad, problem", [
    ('{"dialogue": "x", "summary": "y"', "Expecting ',' delimiter"),
    ("{oops}", "Expecting property name"),
    ('{"dialogue": "x"} trailing', "Extra data"),
    ("dialogue,summary", "Expecting value"),
    ("{'dialogue': 'single quotes'}", "Expecting property name"),
])
def test_a_line_that_is_not_json_is_named(tmp_path, bad, problem):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, bad, GOOD])
    message = refused(path)
    assert "d.jsonl:3: not valid JSON (" + problem in message and "each line must hold one JSON object" in message


@pytest.mark.parametrize("value, shown", [("[1, 2]", "a list"), ('"text"', "a str"), ("7", "a number (7)"),
                                          ("null", "null")])
def test_a_line_that_is_json_but_not_an_object(tmp_path, value, shown):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, value, GOOD])
    assert f"d.jsonl:2: expected a JSON object" in (message := refused(path)) and shown in message


def test_every_bad_line_is_reported(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD, "{oops", GOOD, "[1]", "{x"])
    message = refused(path)
    assert "d.jsonl:2:" in message and "d.jsonl:4:" in message and "d.jsonl:5:" in message


def test_a_broken_json_array_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"dialogue": "hello", "summary": "x"},\n {"dialogue": "a" "summary": "y"}\n]\n')
    assert "d.json:3: not valid JSON (Expecting ',' delimiter" in refused(path)
    path.write_text('[\n {"dialogue": "hello", "summary": "x"},\n]\n')
    assert "d.json:3: not valid JSON" in refused(path)


def test_a_single_json_object_is_explained(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [GOOD, GOOD]}, indent=2))
    assert "d.json:1: the file holds a single JSON object (keys: data)" in refused(path)


def test_a_csv_row_with_too_many_fields_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("dialogue,summary\nhello there,hi\nhow, are you,ok\n")
    assert "d.csv:3: 3 fields, but the header has 2" in refused(path)


# ---------------------------------------------------------------- the source itself, and the split

def test_missing_file_is_found_by_validate(tmp_path):
    for name in ("nope.jsonl", "./nope", "sub/nope.csv", str(tmp_path / "abs.json")):
        found = D.check_local_source(section(name), tmp_path)
        assert found and found[0][0] == ("data", "source") and "no such data file" in found[0][1], name
    found = D.check_local_source(section("nope.jsonl"), tmp_path)
    assert str(tmp_path.resolve()) in found[0][1]


def test_sources_that_validate_leaves_alone(tmp_path):
    assert D.check_local_source(section("knkarthick/dialogsum")) == []  # a hub dataset name
    assert D.check_local_source(section("asset:dialogues.jsonl")) == []
    (tmp_path / "folder").mkdir()
    assert D.check_local_source(section("folder"), tmp_path) == []  # datasets reads a folder of files


def test_missing_asset_and_unsupported_type(tmp_path):
    found = D.check_local_source(section("asset:nothing.jsonl"))
    assert found and "asset 'asset:nothing.jsonl' not found" in found[0][1]
    (tmp_path / "rows.txt").write_text("hello\n")
    found = D.check_local_source(section("rows.txt"), tmp_path)
    assert found and "unsupported file type '.txt'" in found[0][1]


def test_unreadable_file(tmp_path, monkeypatch):
    path = Path(jsonl(tmp_path / "d.jsonl", [GOOD, GOOD]))
    real = Path.read_bytes

    def read_bytes(self):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert "d.jsonl: cannot read the file: Permission denied" in refused(path)


def test_large_files_get_the_cheap_check(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FULL_CHECK_BYTES", 10)
    path = tmp_path / "d.jsonl"
    path.write_bytes((json.dumps(GOOD) + "\n").encode() + b"\xff\n")
    assert "d.jsonl:2: not UTF-8 text" in D.check_local_source(section(path))[0][1]
    jsonl(path, [GOOD, {"dialogue": 1}])  # row problems are left to the run for a large file
    assert D.check_local_source(section(path)) == []


def test_too_few_rows_and_an_empty_split(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD])
    assert "only 1 of 1 rows pass the length filter" in refused(path)
    path = jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    message = refused(path, test_size=0.9)
    assert "data.test_size 0.9 of 2 rows leaves 0 for training" in message


def test_good_files_of_every_type_give_the_same_prompts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"dialogue": f"dialogue number {i} {{with braces}}", "summary": f"s{i}", "id": i} for i in range(6)]
    jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "d.csv").write_text("dialogue,summary,id\n" + "".join(f'"{r["dialogue"]}",{r["summary"]},{r["id"]}\n'
                                                                      for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    results = []
    for suffix in ("jsonl", "json", "csv", "parquet"):
        sec = section(tmp_path / f"d.{suffix}", shuffle=True)
        assert D.check_local_source(sec) == []
        train, test = D.prepare(sec, FakeTokenizer(), seed=3)
        results.append((train.prompts, train.references, train.metadata, test.prompts))
    assert all(r == results[0] for r in results)
    assert results[0][2][0]["id"] in range(6)  # metadata keeps its type


def test_a_folder_of_files_names_rows_by_number(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    jsonl(folder / "part.jsonl", [GOOD, {"dialogue": None, "summary": "b"}, GOOD])
    with pytest.raises(RecipeError) as info:
        D.prepare(section("folder"), FakeTokenizer(), seed=0, base_dir=tmp_path)
    assert "folder: row 2: dialogue: no text (null) for data.text_field" in str(info.value)
