"""A sample some reward could not score (``None``, or skipped) gets no gradient, in PPO, GRPO and RLOO.

Its total is a placeholder (0.0 from the composed reward): the update must
come out the same whatever number stands there.
"""

import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_ppo_knobs import _rollout, make_trainer, weights
from test_ppo_rollout import tiny_policy

from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
import tinymodels  # noqa: E402

VALID = torch.tensor([True, False, True])


def _ppo_weights_after(placeholder: float):
    torch.manual_seed(0)
    policy = tiny_policy(lora_b_zero=False)
    rollout, sampling = _rollout(policy)
    trainer = make_trainer(policy, sampling)
    trainer.step(rollout, torch.tensor([1.0, placeholder, -0.5]), generator=torch.Generator().manual_seed(0),
                 valid=VALID)
    return weights(policy)


def test_ppo_ignores_the_placeholder_of_an_unscored_sample():
    a, b = _ppo_weights_after(0.0), _ppo_weights_after(1e6)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_group_algorithms_ignore_the_placeholder_and_leave_it_out_of_the_baseline(algorithm):
    from rewardkit.algorithms import group

    scores = torch.tensor([1.0, 5.0, 3.0, 2.0, 2.0, 4.0], dtype=torch.float64)
    valid = torch.tensor([True, False, True, True, True, True])
    fn = group.rloo_advantages if algorithm == "rloo" else (lambda s, g, v: group.group_advantages(s, g, "none", v))
    adv = fn(scores, 3, valid)
    other = scores.clone()
    other[1] = -1e6  # a different placeholder
    torch.testing.assert_close(fn(other, 3, valid), adv, rtol=0, atol=0)
    assert adv[1] == 0
    # group 0's baseline is over its two valid members only
    if algorithm == "rloo":
        torch.testing.assert_close(adv[:3], torch.tensor([1 - 3.0, 0.0, 3 - 1.0], dtype=torch.float64))
    else:
        torch.testing.assert_close(adv[:3], torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    # with every sample valid, the masked formula is the plain one
    all_valid = torch.ones(6, dtype=torch.bool)
    plain = group.rloo_advantages(scores, 3) if algorithm == "rloo" else group.group_advantages(scores, 3, "none")
    torch.testing.assert_close(fn(scores, 3, all_valid), plain, rtol=1e-12, atol=1e-12)


HALF_NONE = '''
import rewardkit

class Picky(rewardkit.Reward):
    """Scores every other sample of a batch; None for the rest (as a judge that cannot parse some outputs)."""
    name = "picky"
    def score(self, batch):
        return [float(len(c)) if i % 2 == 0 else None for i, c in enumerate(batch.completions)]

@rewardkit.hookimpl
def register_rewards(register):
    register(Picky)
'''


@pytest.fixture(scope="module")
def picky(tmp_path_factory):
    recipe = tinymodels.build(tmp_path_factory.mktemp("picky"))
    (recipe.parent / "picky.py").write_text(HALF_NONE)
    text = recipe.read_text().replace("  - name: length\n    params: {target_words: 6}\n",
                                      "  - name: picky\n  - name: length\n    params: {target_words: 6}\n")
    recipe.write_text(text + "plugins: [picky.py]\n")
    return recipe


@pytest.mark.parametrize("algorithm", ["ppo", "grpo", "rloo"])
def test_runs_with_unscored_samples_train_and_log_them(picky, tmp_path, algorithm):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(picky), "--output-dir", str(out), "--no-progress", "--set",
                                      f"algorithm={algorithm}", "--set", "ppo.max_ppo_steps=2"])
    assert result.exit_code == 0, result.output
    for m in read_jsonl(out / "metrics.jsonl"):
        assert m["reward/valid_frac"] == 0.5 and m["reward/picky/none"] == 2  # 2 of the batch's 4
        assert all(v == v for v in m.values() if isinstance(v, float))  # no NaN logged


def test_max_skipped_frac_stops_the_run_naming_the_reward(picky, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(picky), "--output-dir", str(out), "--no-progress", "--set",
                                      "rewards.0.max_skipped_frac=0.0", "--set", "ppo.max_ppo_steps=3"])
    assert read_jsonl(out / "metrics.jsonl") == []  # stopped at step 0, before its update
    assert result.exit_code == 1 and "reward 'picky'" in result.output and "max_skipped_frac" in result.output


def test_eval_leaves_unscored_pairs_out(picky, tmp_path):
    import json

    out = tmp_path / "run"
    assert CliRunner().invoke(cli, ["run", str(picky), "--output-dir", str(out), "--no-progress", "--set",
                                    "ppo.max_ppo_steps=1"]).exit_code == 0
    result = CliRunner().invoke(cli, ["eval", str(out), "--out", str(tmp_path / "eval"), "--num-samples", "6",
                                      "--judge", "length", "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert data["rewards"]["picky"]["before"]["n"] == 3  # every other sample of 6 has a score
    assert data["rewards"]["length"]["before"]["n"] == 6
    assert (tmp_path / "eval" / "report.md").is_file()
