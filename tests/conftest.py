"""Shared fixtures: one short quickstart run serves every slow end-to-end test."""

from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
#: PPO steps of the shared run: enough for the tiny policy to visibly detoxify, few enough for CI.
QUICKSTART_TEST_STEPS = 60


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """Train the quickstart recipe for :data:`QUICKSTART_TEST_STEPS` steps (seed fixed by the recipe)."""
    import torch
    from click.testing import CliRunner

    from rewardkit.cli import cli

    torch.set_num_threads(2)
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    result = CliRunner().invoke(cli, ["run", str(QUICKSTART), "--set", f"ppo.max_ppo_steps={QUICKSTART_TEST_STEPS}",
                                      "--output-dir", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    return run_dir
