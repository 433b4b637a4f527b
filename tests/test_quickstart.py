"""The learning claim of the quickstart, on a shorter run with the recipe's fixed seed.

The full recipe (100 steps) cuts the tiny classifier's mean hate probability on
held-out prompts by about two thirds (-67%); this 60-step run must cut it by at least
40%, with the KL to the reference staying bounded and outputs not collapsing.
"""

import json

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl


@pytest.mark.slow
def test_quickstart_cuts_held_out_hate_probability(quickstart_run, tmp_path):
    result = CliRunner().invoke(cli, ["eval", str(quickstart_run), "--out", str(tmp_path), "--judge",
                                      "asset:tiny-hate-roberta", "--num-samples", "96", "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    hate = next(iter(summary["judges"].values()))
    before, after = hate["before"]["mean"], hate["after"]["mean"]
    print(f"held-out P(hate): {before:.4f} -> {after:.4f}")
    assert after <= 0.6 * before

    metrics = read_jsonl(quickstart_run / "metrics.jsonl")
    # the KL penalty keeps the policy near the reference: per-sequence KL stays in single digits
    assert max(m["kl"] for m in metrics) < 10.0
    # and it did not "detoxify" by writing nothing
    assert min(m["response_length_mean"] for m in metrics[-10:]) > 5
    assert summary["quality"]["empty"]["after"]["mean"] < 0.1
