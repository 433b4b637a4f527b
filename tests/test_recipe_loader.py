"""Reading recipe YAML: key lines, duplicate keys, and every way a file can be unreadable."""

from __future__ import annotations

import textwrap

import pytest

from rewardkit.errors import RecipeError
from rewardkit.recipe.loader import format_path, line_of, locate, parse_yaml, read_yaml


def write(tmp_path, text: str, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(call, *args):
    with pytest.raises(RecipeError) as info:
        call(*args)
    return info.value.errors


def test_lines_of_keys_and_list_items(tmp_path):
    path = write(tmp_path, """\
        model:
          name: t5
        rewards:
          - name: toxicity
          - name: rouge
            params:
              metric: rougeL
        """)
    doc = read_yaml(path)
    assert doc.data == {"model": {"name": "t5"},
                        "rewards": [{"name": "toxicity"}, {"name": "rouge", "params": {"metric": "rougeL"}}]}
    # Lines are 1-based and counted in the dedented file above; a list item's
    # line is the line of its first key ("- name: rouge" is line 5).
    assert doc.lines == {
        ("model",): 1, ("model", "name"): 2,
        ("rewards",): 3, ("rewards", 0): 4, ("rewards", 0, "name"): 4,
        ("rewards", 1): 5, ("rewards", 1, "name"): 5, ("rewards", 1, "params"): 6,
        ("rewards", 1, "params", "metric"): 7,
    }
    assert doc.text == path.read_text()


def test_exponent_without_dot_is_a_number():
    # PyYAML (YAML 1.1) reads 1e-4 as a string; recipes mean a number.
    doc = parse_yaml("a: 1e-4\nb: 1.41e-5\nc: -2E3\nd: '1e-4'\ne: 12\n")
    assert doc.data == {"a": 1e-4, "b": 1.41e-5, "c": -2000.0, "d": "1e-4", "e": 12}
    assert isinstance(doc.data["e"], int)


def test_duplicate_keys_at_every_depth_are_all_reported():
    text = textwrap.dedent("""\
        ppo:
          learning_rate: 1.0e-4
          batch_size: 16
          learning_rate: 2.0e-4
        rewards:
          - name: rouge
            params: {metric: rougeL, metric: rouge1}
        ppo: {}
        """)
    assert errors_of(parse_yaml, text, "r.yaml") == [
        ("r.yaml:4: ppo.learning_rate", "duplicate key 'learning_rate' (first at line 2)"),
        ("r.yaml:7: rewards[0].params.metric", "duplicate key 'metric' (first at line 7)"),
        ("r.yaml:8: ppo", "duplicate key 'ppo' (first at line 1)"),
    ]


def test_merge_keys_are_not_duplicates():
    doc = parse_yaml("base: &b {r: 8}\nlora:\n  <<: *b\n  alpha: 16\n")
    assert doc.data["lora"] == {"r": 8, "alpha": 16}


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert errors_of(read_yaml, path) == [(str(path), "no such recipe file")]


def test_directory_is_not_a_recipe(tmp_path):
    assert errors_of(read_yaml, tmp_path) == [(str(tmp_path), "is a directory, not a recipe file")]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    assert errors_of(read_yaml, path) == [
        (str(path), "the recipe is empty; it needs at least a model: and a data: section")]


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("just text\n", "the single value 'just text'")])
def test_root_must_be_a_mapping(text, kind):
    assert errors_of(parse_yaml, text, "r.yaml") == [
        ("r.yaml:1", f"the recipe must be a mapping of sections (model:, data:, ...), not {kind}")]


def test_malformed_yaml_names_its_line():
    text = "model:\n  name: t5\ndata:\n  source: [a, b\n"
    # The unclosed flow list opens on line 4; the parser notices at the end of the file (line 5).
    assert errors_of(parse_yaml, text, "r.yaml") == [
        ("r.yaml:5", "malformed YAML: expected ',' or ']', but got '<stream end>' "
                     "(while parsing a flow sequence, line 4)")]


def test_bad_indentation_names_its_line():
    [(where, message)] = errors_of(parse_yaml, "model:\n  name: t5\n    dtype: auto\n", "r.yaml")
    assert where == "r.yaml:3"
    assert message == "malformed YAML: mapping values are not allowed here"


def test_two_documents_are_an_error():
    [(where, message)] = errors_of(parse_yaml, "a: 1\n---\nb: 2\n", "r.yaml")
    assert where == "r.yaml:2"
    assert message.startswith("malformed YAML: found another document")


def test_python_tags_are_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    text = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    [(where, message)] = errors_of(parse_yaml, text, "r.yaml")
    assert where == "r.yaml:1"
    assert "could not determine a constructor for the tag" in message
    assert not marker.exists()


def test_not_utf8(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"model:\n  name: caf\xe9\n")
    # \xe9 (a latin-1 e-acute) follows "model:\n" (7 bytes) and "  name: caf" (11 bytes): offset 18.
    assert errors_of(read_yaml, path) == [(str(path), "not UTF-8 text (byte 0xe9 at offset 18)")]


def test_control_character():
    assert errors_of(parse_yaml, "a: 1\nb: \x07\n", "r.yaml") == [
        ("r.yaml:2", "malformed YAML: character 0x0007 is not allowed in YAML text")]


def test_format_path_and_locate():
    assert format_path(("rewards", 1, "params", "metric")) == "rewards[1].params.metric"
    assert format_path(()) == ""
    lines = {("ppo",): 10, ("ppo", "batch_size"): 11}
    assert line_of(lines, ("ppo", "batch_size")) == 11
    # A key that is not in the file (e.g. a missing required one) points at its section.
    assert line_of(lines, ("ppo", "learning_rate")) == 10
    assert line_of(lines, ("model", "name")) is None
    assert locate("r.yaml", lines, ("ppo", "learning_rate")) == "r.yaml:10: ppo.learning_rate"
    assert locate("r.yaml", lines, ("model", "name")) == "r.yaml: model.name"
    assert locate("r.yaml", lines, ()) == "r.yaml"
