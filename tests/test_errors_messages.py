"""An unknown key lists every key its section knows, taken from the schema (issue 10, family 3)."""

from pathlib import Path

import pydantic
import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.recipe.messages import _model_in, describe_validation_error, field_names, known_keys
from rewardkit.recipe.schema import PPOSection, Recipe

REPO = Path(__file__).resolve().parent.parent
UNRELATED = "zzqx_nothing_like_it"  # close to no field name, so the message lists them all


def sections(model=Recipe, path=()):
    """Every section of the schema, as ``(key path, model)``, found by walking ``model_fields``."""
    yield path, model
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        if inner is not None:
            is_list = getattr(field.annotation, "__origin__", None) is list
            yield from sections(inner, path + ((name, 0) if is_list else (name,)))


SECTIONS = list(sections())


def test_the_walk_finds_every_section():
    names = {".".join(str(p) for p in path) for path, _ in SECTIONS}
    assert {"", "model", "lora", "data", "rewards.0", "generation", "generation.max_new_tokens", "ppo", "output",
            "eval"} <= names


def _recipe_with_unknown_key(path) -> dict:
    data = {"model": {"name": "t5"}, "data": {"source": "d.jsonl"}}
    node = data
    for i, seg in enumerate(path):
        nxt = path[i + 1] if i + 1 < len(path) else None
        if isinstance(seg, int):
            continue
        if isinstance(nxt, int):
            node[seg] = [{"name": "length"}]
            node = node[seg][0]
        else:
            node = node.setdefault(seg, {"min": 1, "max": 2} if seg == "max_new_tokens" else {})
    node[UNRELATED] = 1
    return data


@pytest.mark.parametrize("path, model", SECTIONS, ids=lambda x: ".".join(map(str, x)) if isinstance(x, tuple) else "")
def test_every_section_lists_all_its_keys(path, model):
    data = _recipe_with_unknown_key(path)
    with pytest.raises(pydantic.ValidationError) as info:
        Recipe.model_validate(data)
    found = dict(describe_validation_error(info.value, Recipe, data))
    message = found[path + (UNRELATED,)]
    assert message == f"unknown key '{UNRELATED}'; known keys: {', '.join(model.model_fields)}"


def test_ppo_lists_the_keys_added_late():
    message = dict(_errors({"ppo": {UNRELATED: 1}}))[("ppo", UNRELATED)]
    for key in ("weight_decay", "lr_scheduler", "value_head_dropout", "whiten_advantages", "max_grad_norm"):
        assert key in message
    assert field_names(Recipe, ("ppo",)) == list(PPOSection.model_fields)


@pytest.mark.parametrize("typo, meant", [("weight_decy", "weight_decay"), ("lr_schedular", "lr_scheduler"),
                                         ("value_head_dropot", "value_head_dropout"), ("scheduler", "lr_scheduler")])
def test_typos_of_late_keys_get_did_you_mean(typo, meant):
    message = dict(_errors({"ppo": {typo: 1}}))[("ppo", typo)]
    assert message == f"unknown key '{typo}'; did you mean '{meant}'?"


def test_known_keys_use_aliases():
    class Aliased(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        from_: int = pydantic.Field(0, alias="from")
        to: int = 0

    assert known_keys(Aliased) == ["from", "to"]
    with pytest.raises(pydantic.ValidationError) as info:
        Aliased.model_validate({"zzqx": 1})
    assert describe_validation_error(info.value, Aliased, {"zzqx": 1}) == [
        (("zzqx",), "unknown key 'zzqx'; known keys: from, to")]


def test_reward_params_list_their_own_keys():
    from rewardkit.plugins import load_registry

    registry = load_registry([])
    for name, info in registry.rewards.items():
        params = {UNRELATED: 1}
        with pytest.raises(pydantic.ValidationError) as exc:
            info.cls.Params.model_validate(params)
        # (a reward with required params, such as remote's url, also reports them missing)
        unknown = [m for _, m in describe_validation_error(exc.value, info.cls.Params, params)
                   if m.startswith("unknown key")]
        assert unknown == [f"unknown key '{UNRELATED}'" + (
            f"; known keys: {', '.join(info.cls.Params.model_fields)}" if info.cls.Params.model_fields else "")], name


@pytest.mark.parametrize("section", ["model", "lora", "data", "generation", "ppo", "output", "eval", "rewards.0",
                                     "generation.max_new_tokens"])
def test_validate_shows_the_full_list(section, monkeypatch):
    monkeypatch.chdir(REPO)
    sets = ["--set", f"{section}.{UNRELATED}=1"]
    if section == "generation.max_new_tokens":
        sets = ["--set", "generation.max_new_tokens={min: 2, max: 4}"] + sets
    result = CliRunner().invoke(cli, ["validate", "recipes/quickstart.yaml", *sets])
    assert result.exit_code == 2 and "Traceback" not in result.output
    model = dict((".".join(map(str, p)), m) for p, m in SECTIONS)[section]
    assert f"unknown key '{UNRELATED}'; known keys: {', '.join(model.model_fields)}" in result.stderr


def _errors(data):
    data = {"model": {"name": "t5"}, "data": {"source": "d.jsonl"}, **data}
    with pytest.raises(pydantic.ValidationError) as info:
        Recipe.model_validate(data)
    return describe_validation_error(info.value, Recipe, data)
