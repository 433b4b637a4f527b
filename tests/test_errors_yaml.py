"""A small recipe cannot take the memory or time of a huge one (issue 10, family 2).

Aliases that expand without bound ("billion laughs"), aliases inside their
own anchor and nesting without end are refused fast, with the line; the
ordinary uses of anchors, aliases and merge keys, and every shipped recipe,
still load.
"""

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.errors import RecipeError
from rewardkit.recipe.loader import parse_yaml, read_yaml
from rewardkit.recipe.validate import parse_assignment

REPO = Path(__file__).resolve().parent.parent
HEAD = "model: {name: asset:tiny-t5}\ndata: {source: asset:dialogues.jsonl}\n"


def laughs_lists(levels: int = 9, width: int = 9) -> str:
    """The classic: each level a list of ``width`` aliases of the one before."""
    text = HEAD + "l0: &l0 [" + ", ".join(['"lol"'] * width) + "]\n"
    for i in range(1, levels):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return text


def laughs_mappings(levels: int = 9) -> str:
    """The same with block mappings (one alias per line)."""
    text = HEAD + "m0: &m0 {a: lol, b: lol, c: lol, d: lol}\n"
    for i in range(1, levels):
        text += f"m{i}: &m{i}\n" + "".join(f"  k{k}: *m{i - 1}\n" for k in range(6))
    return text


def laughs_merge(levels: int = 12) -> str:
    """Merge keys that merge the level before under fresh keys."""
    text = HEAD + "g0: &g0 {a: 1, b: 2}\n"
    for i in range(1, levels):
        text += f"g{i}: &g{i} {{x{i}: *g{i - 1}, y{i}: *g{i - 1}, z{i}: *g{i - 1}, <<: *g{i - 1}}}\n"
    return text


def laughs_in_params(levels: int = 10) -> str:
    """Hidden where anything goes: a reward's free-form params."""
    text = HEAD + "rewards:\n  - name: length\n    params:\n      p0: &p0 [x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels):
        text += f"      p{i}: &p{i} [" + ", ".join([f"*p{i - 1}"] * 8) + "]\n"
    return text


@pytest.mark.parametrize("make", [laughs_lists, laughs_mappings, laughs_merge, laughs_in_params])
def test_billion_laughs_is_refused_fast_with_its_line(tmp_path, make):
    path = tmp_path / "laughs.yaml"
    path.write_text(make())
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        read_yaml(path)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"took {elapsed:.2f}s"
    [(where, message)] = info.value.errors
    assert where.startswith(f"{path}:") and where.split(":")[-1].isdigit()
    assert "aliases expand the recipe past 10000 values" in message and "billion laughs" in message


def test_the_line_is_the_alias_that_passes_the_budget():
    text = laughs_lists()
    with pytest.raises(RecipeError) as info:
        parse_yaml(text, "r.yaml")
    line = int(info.value.errors[0][0].split(":")[1])
    # l4 (line 7) holds 9^5 values: the first alias on that line passes 10000
    assert text.splitlines()[line - 1].startswith("l4:")
    assert "at *l3" in info.value.errors[0][1]


def test_billion_laughs_through_validate_has_no_traceback(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs_lists())
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert time.perf_counter() - start < 1.0
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"{path}:7: aliases expand the recipe past")


def test_billion_laughs_in_a_set_override():
    path, parsed = parse_assignment("ppo.x=[&a [a, b], *a, *a]")  # an alias in a value is fine
    assert parsed == [["a", "b"], ["a", "b"], ["a", "b"]]
    wide = "ppo.x=[&a [" + ", ".join(["lol"] * 200) + "], " + ", ".join(["*a"] * 60) + "]"
    with pytest.raises(RecipeError) as info:
        parse_assignment(wide)
    assert "aliases expand the recipe past" in str(info.value) and "--set ppo.x" in str(info.value)


def test_an_alias_inside_its_own_anchor():
    for text in ("a: &x [1, *x]\n", "a: &x\n  b: *x\n", "a: &x\n  - 1\n  - {c: *x}\n"):
        with pytest.raises(RecipeError) as info:
            parse_yaml(text, "r.yaml")
        [(where, message)] = info.value.errors
        assert where.startswith("r.yaml:") and "alias *x is inside the node it names" in message


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n",
    "a:\n" + "".join("  " * i + "-\n" for i in range(1, 500)),
])
def test_nesting_without_end(text):
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        parse_yaml(text, "r.yaml")
    assert time.perf_counter() - start < 1.0
    [(where, message)] = info.value.errors
    assert where.startswith("r.yaml:") and "nest more than 100 levels deep" in message


def test_a_chain_of_aliases_that_nests_deep():
    text = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200))
    with pytest.raises(RecipeError) as info:
        parse_yaml(text, "r.yaml")
    assert "alias *a97 nests the recipe more than 100 levels deep" in info.value.errors[0][1]
    assert info.value.errors[0][0] == "r.yaml:99"  # a98: [*a97]


def test_ordinary_anchors_aliases_and_merges_still_work():
    text = """\
        defaults: &defaults {r: 8, alpha: 16}
        lora:
          <<: *defaults
          dropout: 0.1
        judges: &judges [asset:tiny-hate-roberta, profanity-check]
        eval: {judge: *judges}
        again: [*defaults, *defaults, *judges]
        """
    doc = parse_yaml("\n".join(line[8:] for line in text.splitlines()))
    assert doc.data["lora"] == {"r": 8, "alpha": 16, "dropout": 0.1}
    assert doc.data["eval"]["judge"] == ["asset:tiny-hate-roberta", "profanity-check"]
    assert doc.data["again"][1] == {"r": 8, "alpha": 16}


def test_a_wide_but_honest_document_loads():
    # many aliases of a small section stay far under the budget
    text = "base: &b {weight: 1.0, normalize: true}\n" + "".join(f"k{i}: *b\n" for i in range(500))
    assert len(parse_yaml(text).data) == 501


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_still_loads(path):
    doc = read_yaml(path)
    assert "model" in doc.data and "data" in doc.data
