"""output.eval_every: the recipe's judges on held-out prompts during training, without changing the training."""

import sys
from pathlib import Path

from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
import tinymodels  # noqa: E402


def _run(recipe, out, *sets):
    args = ["run", str(recipe), "--output-dir", str(out), "--no-progress", "--set", "ppo.max_ppo_steps=4",
            "--set", "eval.judge=length"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return read_jsonl(out / "metrics.jsonl")


def test_held_out_checks_are_logged_every_n_steps_and_change_no_training_number(tmp_path):
    recipe = tinymodels.build(tmp_path / "tiny")
    plain = _run(recipe, tmp_path / "plain")
    checked = _run(recipe, tmp_path / "checked", "output.eval_every=2", "output.eval_samples=5")
    with_eval = [m for m in checked if any(k.startswith("eval/") for k in m)]
    assert [m["step"] for m in with_eval] == [1, 3]
    for m in with_eval:
        assert set(k for k in m if k.startswith("eval/")) >= {"eval/words", "eval/empty_frac"}
        assert any(k.startswith("eval/") and "length" in k for k in m)
    # the check draws from its own generators: every training number is what it was without it
    timing = ("time/", "tokens_per_s", "eval/")
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(timing)} for r in rows]  # noqa: E731
    assert strip(checked) == strip(plain)
