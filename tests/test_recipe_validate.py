"""Recipe validation: every error path, located as file:line: key.path, all at once.

Recipes here are validated against a registry of fake rewards (see
``fake_rewards.py``) so these tests do not depend on the built-in plugins;
the last tests check the shipped recipes against the real registry.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fake_rewards import Exploding, FakeToxicity, Overlap, Shouting, make_plugin
from rewardkit.errors import RecipeError
from rewardkit.plugins import load_registry
from rewardkit.recipe import LoadedRecipe, apply_overrides, format_errors, load_recipe
from rewardkit.recipe.schema import LengthRange, Recipe

REPO = Path(__file__).resolve().parent.parent

# Line numbers in the assertions below count lines of this text (after dedent).
BASE = """\
model:
  name: asset:tiny-t5
data:
  source: asset:dialogues.jsonl
rewards:
  - name: toxicity
  - name: shouting
    weight: 0.5
    params:
      threshold: 0.8
ppo:
  batch_size: 8
  mini_batch_size: 4
"""


@pytest.fixture
def registry():
    return load_registry(entry_points=False, extra_plugins=[
        make_plugin("fake_rewards_plugin", FakeToxicity, Shouting, Overlap, Exploding)])


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors(path, registry, overrides=()) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides, registry=registry)
    return info.value.errors


def test_valid_recipe(tmp_path, registry):
    path = write(tmp_path, BASE)
    loaded = load_recipe(path, registry=registry)
    assert isinstance(loaded, LoadedRecipe)
    assert loaded.path == path and loaded.base_dir == tmp_path.resolve()
    assert loaded.registry is registry
    assert loaded.source_text == path.read_text()
    assert loaded.recipe.ppo.batch_size == 8
    # One validated Params per reward, in recipe order, defaults filled in.
    assert [type(p) for p in loaded.reward_params] == [FakeToxicity.Params, Shouting.Params]
    assert loaded.reward_params[1] == Shouting.Params(threshold=0.8, mode="share")
    assert loaded.summary() == ("model asset:tiny-t5, rewards toxicity×1.0 + shouting×0.5, "
                                "10 PPO steps × batch 8")  # 10 steps: the seed's default
    assert loaded.lines[("ppo", "batch_size")] == 12


def test_rewards_default_to_toxicity(tmp_path, registry):
    path = write(tmp_path, "model: {name: t5}\ndata: {source: hub-org/dialogues}\n")
    loaded = load_recipe(path, registry=registry)
    assert [r.name for r in loaded.recipe.rewards] == ["toxicity"]
    assert loaded.reward_params == [FakeToxicity.Params()]


def test_validation_loads_no_model(tmp_path, registry):
    # Exploding raises if instantiated; validation must only use its Params.
    path = write(tmp_path, BASE.replace("  - name: toxicity", "  - name: exploding\n    params: {size: 3}"))
    assert load_recipe(path, registry=registry).reward_params[0] == Exploding.Params(size=3)


def test_unknown_keys_get_did_you_mean(tmp_path, registry):
    path = write(tmp_path, BASE.replace("  batch_size: 8", "  batch_size: 8\n  learning_rat: 0.1")
                 + "generaton: {top_k: 0}\n")
    assert errors(path, registry) == [
        (f"{path}:13: ppo.learning_rat", "unknown key 'learning_rat'; did you mean 'learning_rate'?"),
        (f"{path}:15: generaton", "unknown key 'generaton'; did you mean 'generation'?"),
    ]


def test_unknown_key_without_close_match_lists_known_keys(tmp_path, registry):
    path = write(tmp_path, BASE.replace("  name: asset:tiny-t5", "  name: asset:tiny-t5\n  colour: red"))
    assert errors(path, registry) == [
        (f"{path}:3: model.colour",
         "unknown key 'colour'; known keys: name, dtype, trust_remote_code, revision, adapter")]


def test_missing_required_key_points_at_its_section(tmp_path, registry):
    path = write(tmp_path, BASE.replace("  name: asset:tiny-t5", "  dtype: auto"))
    assert errors(path, registry) == [(f"{path}:1: model.name", "missing required key 'name'")]


def test_missing_section(tmp_path, registry):
    path = write(tmp_path, BASE.replace("data:\n  source: asset:dialogues.jsonl\n", ""))
    # No line: the section is nowhere in the file.
    assert errors(path, registry) == [(f"{path}: data", "missing required key 'data'")]


def test_wrong_types_and_out_of_range_values(tmp_path, registry):
    text = (BASE.replace("  batch_size: 8", "  batch_size: eight\n  learning_rate: -1")
            + "lora: {r: 0, target_modules: q}\n"
            + "generation: {top_p: 1.5, do_sample: false}\n")
    path = write(tmp_path, text)
    assert errors(path, registry) == [
        (f"{path}:12: ppo.batch_size", "expected an integer (got 'eight')"),
        (f"{path}:13: ppo.learning_rate", "Input should be greater than 0 (got -1)"),
        (f"{path}:15: lora.r", "Input should be greater than or equal to 1 (got 0)"),
        (f"{path}:15: lora.target_modules", "expected a list (got 'q')"),
        (f"{path}:16: generation.top_p", "Input should be less than or equal to 1 (got 1.5)"),
        (f"{path}:16: generation.do_sample", "Input should be True (got false)"),
    ]


def test_section_that_is_not_a_mapping(tmp_path, registry):
    path = write(tmp_path, BASE + "lora: 16\n")
    assert errors(path, registry) == [(f"{path}:14: lora", "expected a mapping (got 16)")]


def test_max_new_tokens_union(tmp_path, registry):
    # int | {min, max}: a value that fits neither says which shapes would do;
    # a mapping gets the range's own checks, without the "not an integer" noise.
    path = write(tmp_path, BASE + "generation: {max_new_tokens: lots}\n")
    assert errors(path, registry) == [
        (f"{path}:14: generation.max_new_tokens", "expected an integer or a mapping (got 'lots')")]
    path = write(tmp_path, BASE + "generation:\n  max_new_tokens: {min: 400, max: 100}\n")
    assert errors(path, registry) == [
        (f"{path}:15: generation.max_new_tokens", "generation.max_new_tokens.max (100) must be >= .min (400)")]
    path = write(tmp_path, BASE + "generation:\n  max_new_tokens: {max: 100, mx: 1}\n")
    assert errors(path, registry) == [
        (f"{path}:15: generation.max_new_tokens.min", "missing required key 'min'"),
        (f"{path}:15: generation.max_new_tokens.mx", "unknown key 'mx'; did you mean 'max'?"),
    ]
    assert LengthRange(min=100, max=400).max == 400


def test_cross_field_rules_name_both_keys(tmp_path, registry):
    path = write(tmp_path, BASE.replace("batch_size: 8", "batch_size: 10"))
    # 10 is not a multiple of 4: the rule belongs to the ppo section (line 11).
    assert errors(path, registry) == [
        (f"{path}:11: ppo", "ppo.batch_size (10) must be a multiple of ppo.mini_batch_size (4)")]
    path = write(tmp_path, BASE.replace("  source: asset:dialogues.jsonl",
                                        "  source: asset:dialogues.jsonl\n  min_chars: 500\n  max_chars: 400"))
    assert errors(path, registry) == [
        (f"{path}:3: data", "data.max_chars (400) must be greater than data.min_chars (500)")]


def test_a_reward_listed_twice(tmp_path, registry):
    path = write(tmp_path, BASE.replace("  - name: shouting", "  - name: toxicity\n  - name: shouting"))
    # A rule of the whole recipe has no key of its own, hence no line; the message names the key.
    assert errors(path, registry) == [(str(path), "rewards: each reward may appear once; repeated: toxicity")]


def test_unknown_reward_gets_did_you_mean(tmp_path, registry):
    path = write(tmp_path, BASE.replace("- name: shouting", "- name: shoutin"))
    assert errors(path, registry) == [(f"{path}:7: rewards[1].name", "unknown reward 'shoutin'; did you mean 'shouting'?")]


def test_bad_reward_params_are_located_in_the_recipe(tmp_path, registry):
    path = write(tmp_path, BASE.replace("      threshold: 0.8", "      threshold: 1.8\n      mood: loud"))
    assert errors(path, registry) == [
        (f"{path}:10: rewards[1].params.threshold",
         "reward 'shouting': Input should be less than or equal to 1 (got 1.8)"),
        (f"{path}:11: rewards[1].params.mood", "reward 'shouting': unknown key 'mood'; did you mean 'mode'?"),
    ]


def test_reward_needing_references_without_a_reference_field(tmp_path, registry):
    path = write(tmp_path, BASE.replace("  source: asset:dialogues.jsonl",
                                        "  source: asset:dialogues.jsonl\n  reference_field: null")
                 .replace("- name: toxicity", "- name: overlap"))
    assert errors(path, registry) == [
        (f"{path}:7: rewards[0].name",
         "reward 'overlap' compares completions with references, but data.reference_field is null; "
         "set data.reference_field to the column holding the references")]


def test_every_error_is_reported_at_once_in_line_order(tmp_path, registry):
    text = (BASE.replace("  name: asset:tiny-t5", "  nam: asset:tiny-t5")
            .replace("- name: toxicity", "- name: toxicty")
            .replace("threshold: 0.8", "threshold: high")
            .replace("batch_size: 8", "batch_size: 0"))
    path = write(tmp_path, text)
    assert errors(path, registry) == [
        (f"{path}:1: model.name", "missing required key 'name'"),
        (f"{path}:2: model.nam", "unknown key 'nam'; did you mean 'name'?"),
        (f"{path}:6: rewards[0].name", "unknown reward 'toxicty'; did you mean 'toxicity'?"),
        (f"{path}:10: rewards[1].params.threshold", "reward 'shouting': expected a number (got 'high')"),
        (f"{path}:12: ppo.batch_size", "Input should be greater than or equal to 1 (got 0)"),
    ]
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    assert str(info.value) == format_errors(info.value.errors)
    assert str(info.value).count("\n") == 4


def test_yaml_problems_come_through_load_recipe(tmp_path, registry):
    path = write(tmp_path, BASE + "ppo: {}\n")
    assert errors(path, registry) == [(f"{path}:14: ppo", "duplicate key 'ppo' (first at line 11)")]
    assert errors(tmp_path / "missing.yaml", registry) == [(str(tmp_path / "missing.yaml"), "no such recipe file")]


def test_plugin_that_fails_to_import(tmp_path):
    path = write(tmp_path, BASE + "plugins: [no_such_plugin_module_xyz]\n")
    [(where, message)] = [e for e in errors(path, None) if "plugins" in e[0]]
    assert where == f"{path}:14: plugins"
    assert message.startswith("plugin 'no_such_plugin_module_xyz' failed to import: ModuleNotFoundError")


# --- overrides -------------------------------------------------------------

def test_apply_overrides():
    data = {"ppo": {"batch_size": 8}, "rewards": [{"name": "toxicity"}]}
    out = apply_overrides(data, ["ppo.batch_size=16", "ppo.learning_rate=1e-4", "rewards.0.weight=2",
                                 "rewards.1={name: length, params: {target_words: 30}}",
                                 "lora.target_modules=[q, k, v]", "data.reference_field=null"])
    assert out == {"ppo": {"batch_size": 16, "learning_rate": 1e-4},
                   "rewards": [{"name": "toxicity", "weight": 2},
                               {"name": "length", "params": {"target_words": 30}}],
                   "lora": {"target_modules": ["q", "k", "v"]}, "data": {"reference_field": None}}
    assert data == {"ppo": {"batch_size": 8}, "rewards": [{"name": "toxicity"}]}  # input untouched


@pytest.mark.parametrize("override, message", [
    ("ppo.batch_size", "expected KEY=VALUE (KEY may be a dotted path, VALUE is read as YAML)"),
    ("=3", "expected KEY=VALUE (KEY may be a dotted path, VALUE is read as YAML)"),
    ("ppo..batch_size=3", "empty part in key path 'ppo..batch_size'"),
    ("ppo.batch_size=[1", "the value is not valid YAML: expected ',' or ']', but got '<stream end>'; "
                          "quote it to pass a string"),
    ("ppo.batch_size.x=1", "cannot set 'x' inside ppo.batch_size, which is 8, not a mapping"),
    ("rewards.5.weight=1", "index 5 is out of range: rewards has 1 item(s)"),
    ("rewards.weight=1", "rewards is a list; use an index such as rewards.0"),
])
def test_bad_overrides(override, message):
    with pytest.raises(RecipeError) as info:
        apply_overrides({"ppo": {"batch_size": 8}, "rewards": [{"name": "t"}]}, [override])
    assert info.value.errors == [(f"--set {override}", message)]


def test_overrides_are_validated_and_located(tmp_path, registry):
    path = write(tmp_path, BASE)
    loaded = load_recipe(path, ["ppo.batch_size=16", "rewards.1.params.mode=binary"], registry=registry)
    assert loaded.recipe.ppo.batch_size == 16
    assert loaded.reward_params[1].mode == "binary"
    # A bad value that came from --set is located at the override, not the file.
    assert errors(path, registry, ["ppo.learning_rate=-1", "rewards.1.params.threshold=2"]) == [
        ("--set ppo.learning_rate=-1: ppo.learning_rate", "Input should be greater than 0 (got -1)"),
        ("--set rewards.1.params.threshold=2: rewards[1].params.threshold",
         "reward 'shouting': Input should be less than or equal to 1 (got 2)"),
    ]


# --- the shipped recipes, against the real plugins --------------------------

SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_recipes_are_valid(path):
    loaded = load_recipe(path)  # the installed built-ins, as a user gets them
    assert loaded.source_text.startswith("#"), "a recipe opens with a comment saying what it does"
    assert "rewardkit run recipes/" + path.name in loaded.source_text


def test_shipped_recipe_names():
    assert {p.name for p in SHIPPED} >= {"quickstart.yaml", "detox.yaml", "detox-composed.yaml"}


def test_detox_recipe_is_the_seed():
    r = load_recipe(REPO / "recipes" / "detox.yaml").recipe
    # Every number from shared/seed/SEED-FACTS.md.
    assert (r.model.name, r.model.dtype) == ("google/flan-t5-base", "bfloat16")
    assert (r.data.source, r.data.split, r.data.min_chars, r.data.max_chars) == ("knkarthick/dialogsum", "train",
                                                                                  200, 1000)
    assert r.data.template == "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
    assert (r.data.test_size, r.data.shuffle, r.seed) == (0.2, False, 42)
    assert (r.lora.r, r.lora.alpha, r.lora.target_modules, r.lora.dropout) == (32, 32, ["q", "v"], 0.05)
    p = r.ppo
    assert (p.learning_rate, p.batch_size, p.mini_batch_size, p.ppo_epochs, p.max_ppo_steps) == (1.41e-5, 16, 4, 1, 10)
    assert (p.init_kl_coef, p.adap_kl_ctrl, p.target, p.horizon) == (0.2, True, 6, 10000)
    assert (p.gamma, p.lam, p.cliprange, p.cliprange_value, p.vf_coef) == (1, 0.95, 0.2, 0.2, 0.1)
    g = r.generation
    assert (g.max_new_tokens.min, g.max_new_tokens.max, g.min_length, g.top_k, g.top_p) == (100, 400, 5, 0, 1.0)
    [tox] = r.rewards
    assert tox.name == "toxicity"
    assert tox.params == {"model": "facebook/roberta-hate-speech-dynabench-r4-target", "label": "nothate",
                          "output": "logit", "text": "prompt+completion"}


def test_schema_and_validation_agree_on_defaults():
    # Sanity: a recipe with only the required keys is valid and fills in the seed's numbers.
    r = Recipe.model_validate({"model": {"name": "m"}, "data": {"source": "s"}})
    assert (r.ppo.learning_rate, r.lora.r) == (1.41e-5, 32)


def test_keys_that_yaml_does_not_read_as_strings(tmp_path, registry):
    # YAML 1.1 reads a bare `on:` as the boolean true, and `1:` as a number.
    path = write(tmp_path, BASE + "generation:\n  on: 1\n")
    hint = "put it in quotes (YAML reads bare on/off/yes/no as true/false, and numbers as numbers)"
    assert errors(path, registry) == [(f"{path}:14: generation", f"key true is not a string; {hint}")]
    path = write(tmp_path, BASE.replace("threshold: 0.8", "1: 0.8"))
    assert errors(path, registry) == [(f"{path}:9: rewards[1].params", f"key 1 is not a string; {hint}")]
