"""End-to-end runner plumbing on a random tiny T5: run directory, resume after a
kill, reward failures, and a two-process run whose ranks stay in sync."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
import tinymodels  # noqa: E402

#: keys that measure time, not learning: they differ between any two runs
TIMING = ("time/", "tokens_per_s")

SLOW_REWARD = '''
import time, rewardkit

class Slow(rewardkit.Reward):
    """Length-free reward that takes a while, so a test can interrupt a run mid-way."""
    name = "slow"
    def score(self, batch):
        time.sleep(0.25)
        return [float(len(c)) / 10 for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(Slow)
'''

FAILING_REWARD = '''
import math, rewardkit

CALLS = {"n": 0}

class Flaky(rewardkit.Reward):
    """Fine for three batches, then NaN on sample 1."""
    name = "flaky"
    def score(self, batch):
        CALLS["n"] += 1
        out = [1.0] * len(batch)
        if CALLS["n"] > 3:
            out[1] = math.nan
        return out

@rewardkit.hookimpl
def register_rewards(register):
    register(Flaky)
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tinymodels.build(tmp_path_factory.mktemp("tiny"))


def _with_reward(tiny: Path, tmp_path: Path, source: str, name: str, steps: int) -> Path:
    (tmp_path / f"{name}_reward.py").write_text(source)
    text = tiny.read_text().replace("  - name: length\n    params: {target_words: 6}\n", f"  - name: {name}\n")
    text = text.replace("model: {name: t5}", f"model: {{name: {tiny.parent / 't5'}}}")
    text = text.replace("source: data.jsonl", f"source: {tiny.parent / 'data.jsonl'}")
    text = text.replace("max_ppo_steps: 6", f"max_ppo_steps: {steps}")
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(text + f"plugins: [{name}_reward.py]\n")
    return recipe


def _learning_keys(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith(TIMING)}


def test_run_writes_a_complete_run_directory(tiny, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(tiny), "--output-dir", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"done: {out}" in result.output
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(6))
    for key in ("reward/total_mean", "reward/total_std", "reward/length_mean", "reward/length_std", "kl",
                "kl_coef", "policy/entropy", "loss/policy", "loss/value", "policy/clipfrac", "value/clipfrac",
                "policy/approx_kl", "response_length_mean", "time/generate_s", "time/score_s", "time/update_s",
                "tokens_per_s"):
        assert key in metrics[0], key
    # LoRA B starts at zero: the first rollout comes from the reference policy itself. float32 throughout (the
    # recipe's dtype): the KL is a sum over 8 tokens of sampled minus teacher-forced logprobs that agree to a few
    # float32 ulps at the logits' scale (~1e-6 each; 5e-6 in all here); a real mismatch is 0.1 or more
    assert abs(metrics[0]["kl"]) < 1e-4
    samples = read_jsonl(out / "samples.jsonl")
    assert {s["step"] for s in samples} == {0, 2, 4} and "length" in samples[0]["components"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001", "step-000003", "step-000005"]
    env = json.loads((out / "env.json").read_text())
    assert env["plugins"] == [{"reward": "length", "plugin": "rewardkit", "version": env["versions"]["rewardkit"]}]
    assert (out / "recipe.yaml").is_file() and (out / "recipe.source.yaml").read_text() == tiny.read_text()

    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    base = AutoModelForSeq2SeqLM.from_pretrained(tiny.parent / "t5")
    tuned = PeftModel.from_pretrained(base, out / "final" / "adapter")
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in tuned.named_parameters())
    assert (out / "final" / "value_head.safetensors").is_file()


def test_resume_after_sigterm_reproduces_the_uninterrupted_run(tiny, tmp_path):
    recipe = _with_reward(tiny, tmp_path, SLOW_REWARD, "slow", steps=10)
    base_cmd = [sys.executable, "-m", "rewardkit", "run", str(recipe), "--no-progress", "--output-dir"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = tmp_path / "full"
    subprocess.run(base_cmd + [str(full)], check=True, capture_output=True, env=env, timeout=300)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(base_cmd + [str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 120
    while len(read_jsonl(cut / "metrics.jsonl")) < 3 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert f"Resume with: rewardkit run --resume {cut}" in err
    stopped_at = len(read_jsonl(cut / "metrics.jsonl")) - 1
    assert stopped_at < 9, "the run finished before the signal arrived; make the reward slower"
    assert (cut / "checkpoints" / f"step-{stopped_at:06d}" / "checkpoint.json").is_file()

    resumed = subprocess.run([sys.executable, "-m", "rewardkit", "run", "--resume", str(cut), "--no-progress"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_jsonl(full / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(10))
    # same seed, same data order, same RNG and optimizer state: the numbers match exactly
    assert [_learning_keys(r) for r in a] == [_learning_keys(r) for r in b]


def test_a_reward_returning_nan_stops_the_run_and_keeps_the_state(tiny, tmp_path):
    recipe = _with_reward(tiny, tmp_path, FAILING_REWARD, "flaky", steps=6)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output-dir", str(out), "--no-progress"])
    assert result.exit_code == 1
    assert "reward 'flaky'" in result.output and "sample 1" in result.output
    # steps 0..2 succeeded; the failing step 3 leaves a checkpoint of the state after step 2
    assert len(read_jsonl(out / "metrics.jsonl")) == 3
    assert (out / "checkpoints" / "step-000002" / "checkpoint.json").is_file()
    assert "state after step 2 is saved" in result.output


def test_a_run_whose_completions_collapse_warns_on_the_first_step_and_then_every_ten(tiny, tmp_path):
    # one new token and EOS allowed at once: every completion is empty or one word, the collapse the warning is for
    out = tmp_path / "run"
    sets = ["generation.max_new_tokens=1", "generation.min_length=0", "ppo.max_ppo_steps=12",
            "output.checkpoint_every=0"]
    result = CliRunner().invoke(cli, ["run", str(tiny), "--output-dir", str(out), "--no-progress",
                                      *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    assert [m["response_short_frac"] for m in read_jsonl(out / "metrics.jsonl")] == [1.0] * 12
    warned = [line for line in result.output.splitlines() if line.startswith("warning: step")]
    assert [line.split(":")[1] for line in warned] == [" step 0", " step 10"], result.output
    assert "100% of completions are empty or under 2 words" in warned[0] and "reward hacking" in warned[0]


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_weights(tiny, tmp_path):
    out = tmp_path / "ddp"
    # accelerate's multi-process launcher (torchrun underneath); with no GPU rewardkit joins over gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rewardkit", "run", str(tiny),
           "--output-dir", str(out), "--no-progress", "--set", "ppo.max_ppo_steps=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tiny.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fingerprints = json.loads((out / "final" / "weights_by_rank.json").read_text())["sha256"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    env = json.loads((out / "env.json").read_text())
    assert env["world_size"] == 2
    assert len(read_jsonl(out / "metrics.jsonl")) == 3


def test_the_run_checks_the_lean_t5_passes_once_on_its_first_batch(tiny, tmp_path, monkeypatch):
    from rewardkit.ppo import t5fast

    calls = []
    real = t5fast.check_fast_path

    def spy(model, input_ids, attention_mask, *args, **kwargs):
        calls.append(tuple(input_ids.shape))
        return real(model, input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(t5fast, "check_fast_path", spy)
    result = CliRunner().invoke(cli, ["run", str(tiny), "--output-dir", str(tmp_path / "run"), "--no-progress",
                                      "--set", "ppo.max_ppo_steps=2"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0][0] > 0
