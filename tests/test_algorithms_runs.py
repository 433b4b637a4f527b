"""GRPO and RLOO end to end on the tiny random T5: group sampling, no critic, resume, validation, eval."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
import tinymodels  # noqa: E402

TIMING = ("time/", "tokens_per_s")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tinymodels.build(tmp_path_factory.mktemp("tiny"))


def _run(recipe, out, *sets):
    args = ["run", str(recipe), "--output-dir", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(cli, args)


def _learning(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_a_critic_free_run_has_no_value_head_and_logs_group_statistics(tiny, tmp_path, algorithm):
    out = tmp_path / "run"
    result = _run(tiny, out, f"algorithm={algorithm}", "ppo.batch_size=8", "grpo.group_size=4",
                  "ppo.max_ppo_steps=3")
    assert result.exit_code == 0, result.output
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for key in ("groups/all_equal_frac", "groups/reward_std_mean", "loss/policy", "loss/kl", "policy/clipfrac",
                "policy/approx_kl", "policy/entropy", "kl", "kl_coef", "lr"):
        assert key in metrics[0], key
    assert not any(k.startswith(("loss/value", "value/", "values_", "returns_")) for k in metrics[0])
    assert not (out / "final" / "value_head.safetensors").exists()
    # on-policy first pass: the ratio is 1 before the first optimizer step, so nothing is clipped at step 0
    # (the first mini-batch); later mini-batches see moved weights, so only a bound holds for the mean
    assert metrics[0]["policy/approx_kl"] < 0.05
    # and the reference is the starting policy: step-0 KL is rounding only
    assert abs(metrics[0]["kl"]) < 1e-4


def test_each_prompt_is_encoded_once_for_its_whole_group(tiny, monkeypatch):
    from rewardkit.policy import build_policy
    from rewardkit.ppo import decoding
    from rewardkit.ppo.rollout import Sampling, sample
    from rewardkit.recipe.schema import LoraSection, ModelSection

    policy, tok = build_policy(ModelSection(name=str(tiny.parent / "t5")), LoraSection(r=4, alpha=8),
                               value_head_dropout=None, device=torch.device("cpu"))
    assert policy.v_head is None
    rows_encoded = []
    real = decoding.encode

    def spy(model, ids, mask, *a, **k):
        rows_encoded.append(ids.size(0))
        return real(model, ids, mask, *a, **k)

    monkeypatch.setattr(decoding, "encode", spy)
    ids = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    mask = (ids != 0).long()
    mask[0, 3] = 1
    sampling = Sampling(eos_token_id=1, pad_token_id=0, decoder_start_token_id=0)
    rollout = sample(policy, ids, mask, torch.full((6,), 5), sampling, torch.Generator().manual_seed(0),
                     group_size=3)
    assert rows_encoded == [2]  # two prompts, not six rows
    assert rollout.response_ids.shape[0] == 6 and rollout.values is None
    # the group's rows carry their prompt
    assert torch.equal(rollout.query_ids, ids.repeat_interleave(3, dim=0))


def test_beta_zero_runs_no_reference_pass(tiny, tmp_path, monkeypatch):
    from rewardkit.algorithms.update import Updater

    calls = []
    real = Updater.reference_logprobs
    monkeypatch.setattr(Updater, "reference_logprobs", lambda self, r: calls.append(1) or real(self, r))
    result = _run(tiny, tmp_path / "run", "algorithm=grpo", "grpo.beta=0", "ppo.max_ppo_steps=2")
    assert result.exit_code == 0, result.output
    assert calls == []
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert "loss/kl" not in metrics[0] and metrics[0]["kl_coef"] == 0.0


QUICKSTART_GRPO = Path(__file__).resolve().parents[1] / "recipes" / "quickstart-grpo.yaml"


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_every_loss_aggregation_trains(tmp_path, loss_type):
    # the shipped tiny T5 writes real, varied summaries (the random one above writes nothing, so its groups'
    # rewards are all equal and teach nothing)
    out = tmp_path / "run"
    result = _run(QUICKSTART_GRPO, out, f"grpo.loss_type={loss_type}", "ppo.max_ppo_steps=1", "ppo.batch_size=8",
                  "grpo.num_iterations=1")
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics[0]["groups/all_equal_frac"] < 1.0
    weights = load_file(str(out / "final" / "adapter" / "adapter_model.safetensors"))
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)  # the adapter moved


def test_a_resumed_grpo_run_reproduces_the_uninterrupted_one(tiny, tmp_path):
    full = tmp_path / "full"
    result = _run(tiny, full, "algorithm=rloo", "ppo.max_ppo_steps=4", "grpo.num_iterations=2")
    assert result.exit_code == 0, result.output
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step-000003")  # as if stopped after step 1's checkpoint
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(cut), "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert _learning(read_jsonl(cut / "metrics.jsonl")) == _learning(read_jsonl(full / "metrics.jsonl"))
    a = (full / "final" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert (cut / "final" / "adapter" / "adapter_model.safetensors").read_bytes() == a


@pytest.mark.parametrize("sets, words", [
    (["algorithm=grpo", "ppo.ppo_epochs=2"], "ppo.ppo_epochs is PPO-only and does nothing under algorithm: grpo; "
                                              "use grpo.num_iterations"),
    (["algorithm=rloo", "ppo.vf_coef=0.5"], "ppo.vf_coef is PPO-only and does nothing under algorithm: rloo"),
    (["grpo.beta=0.1"], "grpo.beta applies to algorithm grpo or rloo, not ppo"),
    (["algorithm=rloo", "grpo.scale_rewards=none"], "grpo.scale_rewards applies to grpo only"),
    (["algorithm=grpo", "ppo.batch_size=6", "ppo.mini_batch_size=2"],
     "must be a multiple of grpo.group_size (4)"),
])
def test_fields_of_the_other_algorithm_are_refused(tiny, sets, words):
    args = ["validate", str(tiny)]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and words in result.output, result.output


def test_eval_reads_a_critic_free_run(tiny, tmp_path):
    out = tmp_path / "run"
    assert _run(tiny, out, "algorithm=grpo", "ppo.max_ppo_steps=1").exit_code == 0
    result = CliRunner().invoke(cli, ["eval", str(out), "--out", str(tmp_path / "eval"), "--num-samples", "4",
                                      "--judge", "length", "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval" / "eval.json").is_file()
