"""Every knob works or is refused: each field of the recipe schema, set off its default.

For every leaf field of :class:`rewardkit.recipe.schema.Recipe` the matrix
below holds either a short run with a non-default value (whose logged numbers
and final weights must all be finite) or a ``rewardkit validate`` refusal
with its reason. A field added to the schema without an entry here fails
:func:`test_every_schema_field_is_in_the_matrix`.

Knobs whose *effect* needs more than finiteness to show (sampling filters,
dropout, the scheduler, the starting adapter, precision) have their own tests
below and in ``tests/test_ppo_knobs.py``.
"""

import json
import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from rewardkit.cli import cli
from rewardkit.recipe.schema import Recipe
from rewardkit.rundir import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
import tinymodels  # noqa: E402

PLUGIN = '''
import rewardkit

class Words(rewardkit.Reward):
    """Number of words, scaled."""
    name = "words"
    def score(self, batch):
        return [len(c.split()) / 10 for c in batch.completions]

class SlowWords(Words):
    """The same, from an async score (so a timeout can cancel it)."""
    name = "slow_words"
    async def score(self, batch):
        return [len(c.split()) / 10 for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(Words)
    register(SlowWords)
'''

#: field -> ``--set`` overrides of a short run that sets it off its default
RUNS: dict[str, list[str]] = {
    "seed": ["seed=7"],
    "model.name": [],  # every run names the tiny model (the recipe's model: t5)
    "model.dtype": ["model.dtype=bfloat16"],
    "model.trust_remote_code": ["model.trust_remote_code=true"],
    "model.adapter": ["model.adapter=sft"],
    "lora.r": ["lora.r=2"],
    "lora.alpha": ["lora.alpha=2"],
    "lora.dropout": ["lora.dropout=0.3"],
    "lora.target_modules": ["lora.target_modules=[q, k, v, o, wi_0, wi_1, wo]"],
    "data.source": [],  # every run reads data.jsonl
    "data.text_field": ["data.text_field=text", "data.template='Summarise: {text}'", "data.source=data_text.jsonl"],
    "data.reference_field": ["data.reference_field=null"],
    "data.min_chars": ["data.min_chars=150"],
    "data.max_chars": ["data.max_chars=null"],
    "data.template": ["data.template='Shorten this.\n{dialogue}\nShort: '"],
    "data.test_size": ["data.test_size=0.5"],
    "data.shuffle": ["data.shuffle=true"],
    "data.max_prompt_tokens": ["data.max_prompt_tokens=12"],
    "data.limit": ["data.limit=20"],
    "rewards.name": ["rewards.0={name: words}"],
    "rewards.weight": ["rewards.0.weight=-0.5"],
    "rewards.params": ["rewards.0.params.target_words=2"],
    "rewards.normalize": ["rewards.0.normalize=true"],
    "rewards.clip": ["rewards.0.clip=0.5"],
    "rewards.on_error": ["rewards.0.on_error=skip"],
    "rewards.timeout": ["rewards.1={name: slow_words, timeout: 30}"],  # an async reward: timeout applies
    "rewards.max_skipped_frac": ["rewards.0.max_skipped_frac=0.5"],
    "rewards.cache": ["rewards.0.cache=true"],  # length declares itself deterministic
    "plugins": ["rewards.1.name=words"],  # the recipe's plugins: [words.py] provides the reward
    "generation.max_new_tokens": ["generation.max_new_tokens={min: 3, max: 9}"],
    "generation.min_length": ["generation.min_length=6"],
    "generation.top_k": ["generation.top_k=3"],
    "generation.top_p": ["generation.top_p=0.6"],
    "generation.temperature": ["generation.temperature=1.5"],
    "ppo.learning_rate": ["ppo.learning_rate=0.01"],
    "ppo.batch_size": ["ppo.batch_size=6"],
    "ppo.mini_batch_size": ["ppo.mini_batch_size=1"],
    "ppo.ppo_epochs": ["ppo.ppo_epochs=3"],
    "ppo.max_ppo_steps": ["ppo.max_ppo_steps=3"],
    "ppo.init_kl_coef": ["ppo.init_kl_coef=0.0"],
    "ppo.adap_kl_ctrl": ["ppo.adap_kl_ctrl=false"],
    "ppo.target": ["ppo.target=0.01", "ppo.horizon=10"],
    "ppo.horizon": ["ppo.horizon=10"],
    "ppo.gamma": ["ppo.gamma=0.5"],
    "ppo.lam": ["ppo.lam=0.0"],
    "ppo.cliprange": ["ppo.cliprange=0.01"],
    "ppo.cliprange_value": ["ppo.cliprange_value=0.01"],
    "ppo.vf_coef": ["ppo.vf_coef=2.0"],
    "ppo.max_grad_norm": ["ppo.max_grad_norm=null"],
    "ppo.whiten_advantages": ["ppo.whiten_advantages=false"],
    "ppo.value_head_dropout": ["ppo.value_head_dropout=0.0"],
    "ppo.weight_decay": ["ppo.weight_decay=0.1"],
    "ppo.lr_scheduler": ["ppo.lr_scheduler=cosine"],
    "output.dir": [],  # see test_output_dir_template
    "output.checkpoint_every": ["output.checkpoint_every=1"],
    "output.sample_every": ["output.sample_every=0"],
    "output.samples_per_log": ["output.samples_per_log=1"],
    "output.trackers": ["output.trackers=[tensorboard]"],
    "output.eval_every": ["output.eval_every=1", "eval.judge=length"],
    "output.eval_samples": ["output.eval_every=2", "output.eval_samples=3", "eval.judge=length"],
    "mixed_precision": ["mixed_precision=bf16"],
    "algorithm": ["algorithm=rloo"],
    "grpo.group_size": ["algorithm=grpo", "grpo.group_size=2"],
    "grpo.scale_rewards": ["algorithm=grpo", "grpo.scale_rewards=none"],
    "grpo.beta": ["algorithm=grpo", "grpo.beta=0.0"],
    "grpo.kl": ["algorithm=grpo", "grpo.kl=reward"],
    "grpo.loss_type": ["algorithm=grpo", "grpo.loss_type=dr_grpo"],
    "grpo.epsilon_low": ["algorithm=grpo", "grpo.epsilon_low=0.05"],
    "grpo.epsilon_high": ["algorithm=grpo", "grpo.epsilon_high=0.28"],
    "grpo.num_iterations": ["algorithm=grpo", "grpo.num_iterations=3"],
}

#: field -> (``--set`` override, words the refusal must contain)
REFUSED: dict[str, tuple[str, str]] = {
    "model.revision": ("model.revision=main", "applies to hub ids only"),
    "lora.bias": ("lora.bias=all", "does not revert trained biases"),
    "data.split": ("data.split=validation", "a local file has a single split"),
    "generation.do_sample": ("generation.do_sample=false", "generation.do_sample"),
}

#: fields of ``eval:``, which only ``rewardkit eval`` reads: one evaluation sets them all (test_eval_knobs)
EVAL = {"eval.num_samples", "eval.batch_size", "eval.judge", "eval.judge_label", "eval.judge_params",
        "eval.judge_text", "eval.seed"}


def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names of every leaf field; lists of sections (``rewards``) are entered too."""
    import typing

    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        inner = typing.get_args(ann)[0] if typing.get_origin(ann) is list and typing.get_args(ann) else ann
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out += leaf_fields(inner, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_schema_field_is_in_the_matrix():
    fields = set(leaf_fields(Recipe))
    covered = set(RUNS) | set(REFUSED) | EVAL
    assert fields - covered == set(), "give each new recipe field a run or a refusal here"
    assert covered - fields == set(), "the matrix names fields the schema no longer has"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The tiny model and recipe, a plugin file, a text-field variant of the data and a starting adapter."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    recipe = tinymodels.build(tmp_path_factory.mktemp("knobs"))
    root = recipe.parent
    (root / "words.py").write_text(PLUGIN)
    recipe.write_text(recipe.read_text().replace("max_ppo_steps: 6", "max_ppo_steps: 2")
                      + "plugins: [words.py]\n")
    rows = [json.loads(line) for line in (root / "data.jsonl").read_text().splitlines()]
    (root / "data_text.jsonl").write_text("".join(json.dumps({"text": r["dialogue"], "summary": r["summary"]}) + "\n"
                                                  for r in rows))
    torch.manual_seed(0)
    sft = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(root / "t5"),
                         LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM))
    for name, p in sft.named_parameters():
        if "lora_B" in name:  # a starting adapter that really differs from the base model
            p.data.normal_(0, 0.3)
    sft.save_pretrained(root / "sft")
    return recipe


def run(recipe: Path, out: Path, overrides: list[str]):
    args = ["run", str(recipe), "--output-dir", str(out), "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    return CliRunner().invoke(cli, args)


def assert_finite_run(out: Path) -> list[dict]:
    """Every logged number and every final weight of the run in ``out`` is finite."""
    from safetensors.torch import load_file

    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics
    for record in metrics:
        bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"step {record['step']}: {bad}"
    files = [out / "final" / "adapter" / "adapter_model.safetensors"]
    if (out / "final" / "value_head.safetensors").exists():  # PPO's critic (GRPO and RLOO have none)
        files.append(out / "final" / "value_head.safetensors")
    for file in files:
        for name, tensor in load_file(str(file)).items():
            assert tensor.isfinite().all(), f"{file.name}: {name}"
    return metrics


@pytest.mark.parametrize("field", sorted(k for k, v in RUNS.items() if v))
def test_knob_off_its_default_trains_finitely(workdir, tmp_path, field):
    result = run(workdir, tmp_path / "run", RUNS[field])
    assert result.exit_code == 0, result.output
    metrics = assert_finite_run(tmp_path / "run")
    if field == "output.trackers":  # the tracker wrote its event file into the run directory
        assert list((tmp_path / "run" / "trackers").rglob("events.out.tfevents.*"))
    if field == "ppo.max_ppo_steps":
        assert len(metrics) == 3


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_knob_that_cannot_work_is_refused_by_validate(workdir, field):
    override, reason = REFUSED[field]
    result = CliRunner().invoke(cli, ["validate", str(workdir), "--set", override])
    assert result.exit_code == 2, result.output
    assert field in result.output and reason in result.output, result.output


def test_output_dir_template(workdir, tmp_path):
    result = CliRunner().invoke(cli, ["run", str(workdir), "--no-progress", "--set",
                                      f"output.dir={tmp_path}/runs/{{recipe}}-{{time}}"])
    assert result.exit_code == 0, result.output
    (made,) = list((tmp_path / "runs").iterdir())
    assert made.name.startswith("recipe-")
    assert_finite_run(made)


# -- knobs whose effect is checked, not only their finiteness ---------------------------------------------------

def test_linear_schedule_logs_the_rate_of_each_step(workdir, tmp_path):
    result = run(workdir, tmp_path / "run", ["ppo.lr_scheduler=linear", "ppo.max_ppo_steps=4", "ppo.ppo_epochs=2"])
    assert result.exit_code == 0, result.output
    metrics = assert_finite_run(tmp_path / "run")
    # 4 steps x 2 epochs x (batch 4 / mini-batch 2) = 16 updates; "lr" is logged after each step's 4 updates
    lr0, total = 1e-3, 16
    assert [m["lr"] for m in metrics] == pytest.approx([lr0 * (1 - 4 * (k + 1) / total) for k in range(4)],
                                                       rel=1e-9, abs=1e-15)


def test_a_run_from_an_adapter_starts_at_zero_kl(workdir, tmp_path):
    result = run(workdir, tmp_path / "run", ["model.adapter=sft"])
    assert result.exit_code == 0, result.output
    first = assert_finite_run(tmp_path / "run")[0]
    # the reference is the starting adapter, not the base model (which is far from it: lora_B ~ N(0, 0.3))
    assert abs(first["kl"]) < 1e-4, first["kl"]
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "final" / "adapter" / "adapter_model.safetensors"))
    assert saved and not any("reference" in k for k in saved)  # only the trained adapter is saved


def test_an_adapter_run_refuses_lora_settings_it_would_ignore(workdir):
    result = CliRunner().invoke(cli, ["validate", str(workdir), "--set", "model.adapter=sft"])
    # the tiny recipe's lora: {r: 4, alpha: 8} matches the adapter: valid
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["validate", str(workdir), "--set", "model.adapter=sft", "--set", "lora.r=16"])
    assert result.exit_code == 2
    assert "lora.r" in result.output and "the starting adapter" in result.output and "has 4" in result.output


@pytest.mark.parametrize("override", ["rewards.0.weight=.nan", "rewards.0.weight=.inf", "ppo.learning_rate=.nan",
                                      "ppo.cliprange=.inf", "rewards.0.params.tolerance=.nan",
                                      "rewards.0.clip=.inf"])
def test_non_finite_numbers_are_refused(workdir, override):
    result = CliRunner().invoke(cli, ["validate", str(workdir), "--set", override])
    assert result.exit_code == 2, result.output
    assert override.split("=")[0].replace(".0.", "[0].") in result.output and "finite" in result.output


def test_a_tracker_without_its_package_is_refused(workdir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    result = CliRunner().invoke(cli, ["validate", str(workdir), "--set", "output.trackers=[wandb]"])
    assert result.exit_code == 2
    assert "output.trackers[0]" in result.output and "pip install wandb" in result.output


@pytest.mark.slow
def test_eval_knobs(workdir, tmp_path):
    result = run(workdir, tmp_path / "run", [])
    assert result.exit_code == 0, result.output
    sets = ["eval.num_samples=4", "eval.batch_size=3", "eval.judge=[asset:tiny-hate-roberta, length]",
            "eval.judge_label=nothate", "eval.judge_params={target_words: 3}", "eval.judge_text=prompt+completion",
            "eval.seed=9"]
    args = ["eval", str(tmp_path / "run"), "--json", "--no-progress", "--out", str(tmp_path / "eval")]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert len(report["samples"]) == 4
    text = json.dumps(report)
    assert "nothate" in text and "length" in text
