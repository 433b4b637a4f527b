"""End to end: a short quickstart run, then ``rewardkit eval`` on it (minutes on 2 CPU cores).

The claim under test is the issue's: after a short PPO run the tuned policy
is less toxic than the base policy, by the reward model *and* by a judge the
policy never trained against (alt-profanity-check), and eval writes every file.
The quickstart recipe's ``eval.judge`` names both judges: the reward model's
own P(hate) and alt-profanity-check.
"""

import json
import struct

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli

#: Held-out prompts to evaluate.
SAMPLES = 64


@pytest.mark.slow
def test_quickstart_eval_shows_less_toxicity(quickstart_run, tmp_path):
    # evaluate into a folder of our own: the shared run directory stays as the runner left it
    run_dir = tmp_path / "eval"
    runner = CliRunner()
    # no --judge: the recipe's eval.judge lists the reward model's classifier and alt-profanity-check
    result = runner.invoke(cli, ["eval", str(quickstart_run), "--out", str(run_dir), "--num-samples", str(SAMPLES),
                                 "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)   # --json: stdout is exactly the summary
    print(json.dumps({"rewards": summary["rewards"], "judges": summary["judges"], "quality": summary["quality"]},
                     indent=1))

    # the reward model: its toxicity component is the tiny classifier's `nothate` logit, higher = less toxic,
    # and the same classifier's P(hate) as a (not independent) judge, lower = less toxic
    tox = summary["rewards"]["toxicity"]
    assert tox["after"]["mean"] > tox["before"]["mean"]
    hate = summary["judges"]["p-hate"]
    assert hate["independent"] is False
    assert hate["after"]["mean"] < hate["before"]["mean"]
    # the independent judge: alt-profanity-check's probability of profanity, lower = less toxic
    judge = summary["judges"]["profanity"]
    assert judge["independent"] is True
    assert judge["after"]["mean"] < judge["before"]["mean"]
    assert summary["headline"]["judge"]["key"] == "profanity"   # the lead judge is the independent one
    assert summary["headline"]["judge"]["improved"] is True
    assert summary["config"]["num_samples"] == SAMPLES
    assert "samples" not in summary     # the per-sample records stay in eval.json

    for name in ("report.md", "report.html", "eval.json", "training.png", "components.png", "distributions.png"):
        assert (run_dir / name).is_file(), name
    full = json.loads((run_dir / "eval.json").read_text())
    assert len(full["samples"]) == SAMPLES
    for plot in full["plots"]:
        data = (run_dir / plot["file"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (plot["width"], plot["height"])
