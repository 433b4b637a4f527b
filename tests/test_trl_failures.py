"""rewardkit.trl under a failure policy: a sample without a score reaches TRL as None, never as 0.0."""

from __future__ import annotations

import types

import rewardkit
from rewardkit.plugins import load_registry
from rewardkit.trl import reward_funcs


class Picky(rewardkit.Reward):
    """None for an empty completion; raises on "boom"; else the word count."""

    name = "picky"
    max_batch_size = 1

    def score(self, batch):
        (c,) = batch.completions
        if c == "boom":
            raise RuntimeError("upstream")
        return [None if not c else float(len(c.split()))]


def test_none_and_skipped_samples_reach_trl_as_none():
    plugin = types.ModuleType("picky_plugin")
    plugin.register_rewards = rewardkit.hookimpl(lambda register: register(Picky))
    registry = load_registry(entry_points=False, extra_plugins=[plugin])
    funcs = reward_funcs([{"name": "picky", "on_error": "skip"}], registry=registry)
    logged = {}
    out = funcs[0](prompts=["p"] * 3, completions=["a b", "", "boom"], completion_ids=[[1]] * 3,
                   log_metric=lambda key, value: logged.setdefault(key, value))
    assert out == [2.0, None, None]
    combined = reward_funcs([{"name": "picky", "on_error": "skip"}], registry=registry, combine=True)
    assert combined[0](prompts=["p"] * 2, completions=["", "a"], completion_ids=[[1]] * 2,
                       log_metric=lambda key, value: logged.__setitem__(key, value)) == [None, 1.0]
    assert logged["rewardkit/picky"] == 1.0  # the mean over samples with a score
