"""The example third-party plugin, plugins/examples/rewardkit-profanity, installed as a user would.

The session fixture pip-installs the package into the test environment (it
stays installed: the test environment is where it belongs), and every test
then reaches the reward only through its ``rewardkit`` entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.compose import ComposedReward
from rewardkit.plugins import load_registry
from rewardkit.recipe.schema import RewardSpec
from rewardkit.testing import check_reward, make_batch, run_reward

EXAMPLE = Path(__file__).resolve().parent.parent / "plugins" / "examples" / "rewardkit-profanity"
CLEAN = "Thank you for helping me move the table."
PROFANE = "you are a fucking idiot"


@pytest.fixture(scope="session")
def profanity_installed():
    """Install the example package (no deps: alt-profanity-check is a test dependency of rewardkit)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(EXAMPLE)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    importlib.invalidate_caches()  # let this process see the new package and its entry point
    return importlib.metadata.distribution("rewardkit-profanity")


def test_entry_point_is_declared(profanity_installed):
    eps = [ep for ep in profanity_installed.entry_points if ep.group == "rewardkit"]
    assert [(ep.name, ep.value) for ep in eps] == [("profanity", "rewardkit_profanity")]


def test_found_through_its_entry_point(profanity_installed):
    info = load_registry().get("profanity")
    assert (info.plugin, info.version) == ("rewardkit-profanity", "0.1.0")
    assert info.cls.__module__ == "rewardkit_profanity"
    # Installed, not imported from the source tree.
    assert "site-packages" in sys.modules["rewardkit_profanity"].__file__


def test_scores_by_name(profanity_installed):
    clean, profane = run_reward("profanity", [CLEAN, PROFANE])
    # -p: the classifier is confident on both, so near 0 and near -1.
    assert -0.1 < clean <= 0.0 and -1.0 <= profane < -0.9
    # A 0.5 threshold turns those probabilities into exactly 0 and -1.
    assert run_reward("profanity", [CLEAN, PROFANE], params={"threshold": 0.5}) == [0.0, -1.0]


def test_keeps_the_contract(profanity_installed):
    results = check_reward("profanity", {"threshold": 0.7})
    assert [r.status for r in results] == ["PASS"] * len(results), results
    cli_result = CliRunner().invoke(cli, ["check-plugin", "profanity"])
    assert cli_result.exit_code == 0, cli_result.output
    assert cli_result.output.startswith(
        "Checking reward 'profanity' from plugin rewardkit-profanity 0.1.0 (rewardkit_profanity.Profanity)\n")


def test_composes_with_a_builtin(profanity_installed):
    specs = [RewardSpec(name="length", weight=0.5, params={"target_words": 5}),
             RewardSpec(name="profanity", weight=2.0, params={"threshold": 0.5})]
    composed = ComposedReward.from_specs(specs, load_registry())
    scores = composed(make_batch([PROFANE, CLEAN]))
    # PROFANE: 5 words (length 0) and profane (-1): 0.5*0 + 2*(-1) = -2.
    # CLEAN: 8 words, 3 over the target (length -3), clean (0): 0.5*(-3) + 2*0 = -1.5.
    assert scores.components == {"length": [0.0, -3.0], "profanity": [-1.0, 0.0]}
    assert scores.total == [-2.0, -1.5]


def test_its_own_tests_pass(profanity_installed):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "failed" not in result.stdout
