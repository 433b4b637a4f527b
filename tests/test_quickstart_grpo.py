"""The learning claim of recipes/quickstart-grpo.yaml, on a shorter run with the recipe's fixed seed.

The full recipe (100 steps) cuts the tiny classifier's mean hate probability on
held-out prompts by about 86% (bench/results/algorithms.md); this 40-step run
must cut it by at least 40%, keep ROUGE-L within 0.1 of the base policy's and
not collapse to empty outputs.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart-grpo.yaml"


@pytest.mark.slow
def test_grpo_quickstart_cuts_held_out_hate_probability(tmp_path):
    import torch

    torch.set_num_threads(2)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(RECIPE), "--set", "ppo.max_ppo_steps=40", "--output-dir", str(run),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["eval", str(run), "--out", str(tmp_path / "eval"), "--judge",
                                      "asset:tiny-hate-roberta", "--num-samples", "96", "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    hate = next(iter(summary["judges"].values()))
    before, after = hate["before"]["mean"], hate["after"]["mean"]
    print(f"held-out P(hate): {before:.4f} -> {after:.4f}")
    assert after <= 0.6 * before
    rouge = summary["quality"]["rougeL"]
    assert rouge["after"]["mean"] > rouge["before"]["mean"] - 0.1
    assert summary["quality"]["empty"]["after"]["mean"] < 0.1
    metrics = read_jsonl(run / "metrics.jsonl")
    assert all("groups/all_equal_frac" in m for m in metrics)
