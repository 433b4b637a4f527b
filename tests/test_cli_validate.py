"""``rewardkit validate`` and ``rewardkit schema`` through click's CliRunner."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_rewards import installed, standard_plugins
from rewardkit.cli import cli

REPO = Path(__file__).resolve().parent.parent

RECIPE = """\
model:
  name: asset:tiny-t5
data:
  source: asset:dialogues.jsonl
rewards:
  - name: toxicity
  - name: shouting
    weight: 0.2
ppo:
  batch_size: 16
  max_ppo_steps: 60
"""


@pytest.fixture
def fakes():
    with installed(*standard_plugins()):
        yield


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def write(tmp_path, text, name="r.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_valid_recipe_prints_a_summary(tmp_path, fakes):
    path = write(tmp_path, RECIPE)
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"{path}: valid — model asset:tiny-t5, rewards toxicity×1.0 + shouting×0.2, "
                             f"60 PPO steps × batch 16\n")
    assert result.stderr == ""


def test_invalid_recipe_prints_every_error_and_exits_2(tmp_path, fakes):
    path = write(tmp_path, RECIPE.replace("- name: shouting", "- name: shoutin")
                 .replace("batch_size: 16", "batch_size: 16\n  learning_rate: 0"))
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"{path}:7: rewards[1].name: unknown reward 'shoutin'; did you mean 'shouting'?\n"
        f"{path}:11: ppo.learning_rate: Input should be greater than 0 (got 0)\n"
        f"{path}: not valid (2 errors)\n")


def test_set_overrides(tmp_path, fakes):
    path = write(tmp_path, RECIPE)
    result = invoke("validate", path, "--set", "ppo.max_ppo_steps=5", "--set", "rewards.1.weight=0.5")
    assert result.exit_code == 0, result.output
    assert "rewards toxicity×1.0 + shouting×0.5, 5 PPO steps × batch 16" in result.stdout
    result = invoke("validate", path, "--set", "ppo.max_ppo_steps=none")
    assert result.exit_code == 2
    assert result.stderr == ("--set ppo.max_ppo_steps=none: ppo.max_ppo_steps: expected an integer (got 'none')\n"
                             f"{path}: not valid (1 error)\n")


def test_missing_and_empty_files(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    result = invoke("validate", missing)
    assert (result.exit_code, result.stderr) == (2, f"{missing}: no such recipe file\n{missing}: not valid (1 error)\n")
    empty = write(tmp_path, "")
    result = invoke("validate", empty)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{empty}: the recipe is empty")


def test_malformed_yaml_has_no_traceback(tmp_path):
    path = write(tmp_path, "model: [\n")
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"{path}:2: malformed YAML: ")


@pytest.mark.parametrize("name", ["quickstart.yaml", "detox.yaml", "detox-composed.yaml"])
def test_shipped_recipes(name, monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("validate", f"recipes/{name}")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"recipes/{name}: valid — model ")


def test_quickstart_summary(monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("validate", "recipes/quickstart.yaml")
    assert result.stdout == ("recipes/quickstart.yaml: valid — model asset:tiny-t5, "
                             "rewards toxicity×1.0 + length×0.2, 100 PPO steps × batch 16\n")


def test_schema_is_the_recipe_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Recipe"
    assert schema["required"] == ["model", "data"]
    assert schema["additionalProperties"] is False  # unknown keys are errors in editors too
    assert set(schema["properties"]) >= {"model", "data", "rewards", "ppo", "generation", "lora"}
    assert schema["$defs"]["PPOSection"]["properties"]["learning_rate"]["default"] == 1.41e-5
