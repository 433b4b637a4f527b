"""Two processes over gloo (no GPU needed): the same learning-rate schedule as one process, reward
normalisers shared so a resumed run reproduces an uninterrupted one, and a reward that fails on one
process ends every process instead of hanging the others."""

import json
import shutil
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

#: keys that measure time, not learning
TIMING = ("time/", "tokens_per_s")

ONE_RANK_FAILS = '''
import os, rewardkit

CALLS = {"n": 0}

class RankFlaky(rewardkit.Reward):
    """Fine everywhere, except on process 1 from its second batch on."""
    name = "rankflaky"
    def score(self, batch):
        CALLS["n"] += 1
        if os.environ.get("RANK") == "1" and CALLS["n"] >= 2:
            raise RuntimeError("the scoring server went away")
        return [len(c.split()) / 10 for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(RankFlaky)
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    recipe = tinymodels.build(tmp_path_factory.mktemp("mp"))
    (recipe.parent / "rankflaky.py").write_text(ONE_RANK_FAILS)
    return recipe


def launch(recipe: Path, out: Path, *sets: str, resume: bool = False, timeout: int = 300):
    """``accelerate launch`` two CPU processes running ``rewardkit run``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rewardkit", "run"]
    cmd += ["--resume", str(out)] if resume else [str(recipe), "--output-dir", str(out)]
    cmd.append("--no-progress")
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=recipe.parent,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def learning(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_lr_schedule(tiny, tmp_path):
    sets = ("ppo.lr_scheduler=linear", "ppo.max_ppo_steps=4")
    proc = launch(tiny, tmp_path / "two", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = ["run", str(tiny), "--output-dir", str(tmp_path / "one"), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    two = [m["lr"] for m in read_jsonl(tmp_path / "two" / "metrics.jsonl")]
    one = [m["lr"] for m in read_jsonl(tmp_path / "one" / "metrics.jsonl")]
    # 4 steps x 2 updates: the rate falls by 1e-3 / 8 per update, to 0 after the last step, with 1 or 2 processes
    assert one == pytest.approx([1e-3 * (1 - 2 * (k + 1) / 8) for k in range(4)], rel=1e-9, abs=1e-15)
    assert two == pytest.approx(one, rel=1e-12, abs=1e-15)


@pytest.mark.slow
def test_a_resumed_two_process_run_with_normalised_rewards_reproduces_the_uninterrupted_one(tiny, tmp_path):
    sets = ("rewards.0.normalize=true", "ppo.max_ppo_steps=4", "output.checkpoint_every=2")
    whole = tmp_path / "whole"
    proc = launch(tiny, whole, *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the same run, as if it had stopped after its checkpoint at step 1
    part = tmp_path / "part"
    shutil.copytree(whole, part)
    shutil.rmtree(part / "checkpoints" / "step-000003")
    shutil.rmtree(part / "final")
    proc = launch(tiny, part, resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout + proc.stderr
    assert learning(read_jsonl(part / "metrics.jsonl")) == learning(read_jsonl(whole / "metrics.jsonl"))
    a = json.loads((whole / "final" / "weights_by_rank.json").read_text())["sha256"]
    b = json.loads((part / "final" / "weights_by_rank.json").read_text())["sha256"]
    assert a == b and a[0] == a[1]


@pytest.mark.slow
def test_a_reward_failing_on_one_process_ends_every_process(tiny, tmp_path):
    out = tmp_path / "run"
    start = time.monotonic()
    proc = launch(tiny, out, "rewards.0={name: rankflaky}", "plugins=[rankflaky.py]", "ppo.max_ppo_steps=4",
                  "output.checkpoint_every=0", timeout=240)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "rankflaky" in text and "the scoring server went away" in text
    assert "on process 1" in text  # what process 0 reports about its peer
    # step 0 finished on both; the state after it is kept
    assert (out / "checkpoints" / "step-000000" / "checkpoint.json").is_file()
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [0]
    assert elapsed < 120, f"took {elapsed:.0f} s: a process waited for its failed peer"


@pytest.mark.slow
def test_two_process_grpo_keeps_whole_groups_and_identical_weights(tiny, tmp_path):
    # 8 completions per process = 2 prompts x group of 4 on each process: groups are formed per process
    out = tmp_path / "grpo"
    proc = launch(tiny, out, "algorithm=grpo", "ppo.batch_size=8", "ppo.max_ppo_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1] and all("groups/all_equal_frac" in m for m in metrics)
    sha = json.loads((out / "final" / "weights_by_rank.json").read_text())["sha256"]
    assert len(sha) == 2 and sha[0] == sha[1]
    assert not (out / "final" / "value_head.safetensors").exists()
