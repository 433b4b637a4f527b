"""pytest fixtures for reward authors, loaded automatically once rewardkit is installed.

rewardkit declares this module under the ``pytest11`` entry point, so any
test in an environment with rewardkit can ask for these fixtures without a
``conftest.py``::

    def test_scores(reward_runner):
        assert reward_runner("shouting", ["HELLO"]) == [-1.0]

    def test_contract(reward_contract):
        reward_contract("shouting", {"threshold": 0.5})

    def test_batch(reward_batch):
        batch = reward_batch(["a", "b"], prompts=["p", "q"])

The module is imported by every pytest run in the environment, so it imports
nothing heavy (not even rewardkit's plugins) until a fixture is used.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def reward_registry():
    """Every installed reward plugin, loaded once per test session (:func:`rewardkit.plugins.load_registry`)."""
    from rewardkit.plugins import load_registry

    return load_registry()


@pytest.fixture
def reward_batch():
    """A factory for batches from plain lists: ``reward_batch(completions, prompts=, references=, metadata=)``.

    It is :func:`rewardkit.testing.make_batch`.
    """
    from rewardkit.testing import make_batch

    return make_batch


@pytest.fixture
def reward_runner(request):
    """Score completions with one reward: ``reward_runner(name_or_class, completions, params=..., ...)``.

    It is :func:`rewardkit.testing.run_reward`; reward names are looked up in
    the session's :func:`reward_registry`.
    """
    from rewardkit.testing import run_reward

    def run(name_or_class, completions, **kwargs):
        if isinstance(name_or_class, str) and kwargs.get("registry") is None:
            kwargs["registry"] = request.getfixturevalue("reward_registry")
        return run_reward(name_or_class, completions, **kwargs)

    return run


@pytest.fixture
def reward_contract(request):
    """Run every contract check on a reward and fail the test listing each check that did not pass.

    ``reward_contract(name_or_class, params=None, *, references=None, device="cpu", seed=0)``
    returns the :class:`rewardkit.testing.CheckResult` list when all pass.
    """
    from rewardkit.testing import check_reward

    def run(name_or_class, params=None, **kwargs):
        if isinstance(name_or_class, str) and kwargs.get("registry") is None:
            kwargs["registry"] = request.getfixturevalue("reward_registry")
        results = check_reward(name_or_class, params, **kwargs)
        failed = [r for r in results if not r.passed]
        if failed:
            lines = "\n".join(f"  {r.status} {r.name}: {r.detail}" for r in failed)
            pytest.fail(f"{len(failed)} of {len(results)} contract checks did not pass:\n{lines}", pytrace=False)
        return results

    return run
