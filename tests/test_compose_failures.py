"""Failure policy per reward: on_error stop/skip/zero, timeouts, None per sample, the validity
mask, failure counts, max_skipped_frac, normalisers that ignore invalid samples, and the
settings validation refuses (rewardkit.compose, rewardkit.scoring)."""

from __future__ import annotations

import asyncio
import math
import time
import types

import pytest

import rewardkit
from rewardkit.compose import Component, ComposedReward
from rewardkit.errors import ModelNotFoundError, RecipeError, RewardError
from rewardkit.plugins import load_registry
from rewardkit.recipe import load_recipe
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch


class Echo(rewardkit.Reward):
    """The number each completion spells."""

    name = "echo"

    def score(self, batch):
        return [float(c) for c in batch.completions]


class Flaky(rewardkit.Reward):
    """Raises on any call whose batch holds the completion "7"; "none" gets None; "nan" gets NaN."""

    name = "flaky"
    max_batch_size = 2

    def score(self, batch):
        if "7" in batch.completions:
            raise ConnectionError("upstream went away")
        return [None if c == "none" else math.nan if c == "nan" else 1.0 for c in batch.completions]


class Slow(rewardkit.Reward):
    """An async reward that hangs on "hang" and scores 2.0 otherwise."""

    name = "slow"
    max_batch_size = 1
    max_concurrency = 8

    async def score(self, batch):
        if "hang" in batch.completions:
            await asyncio.sleep(30)
        return [2.0] * len(batch)


class Setup(rewardkit.Reward):
    """Fails the way a missing model does: a user error no policy fixes."""

    name = "setup"

    def score(self, batch):
        raise ModelNotFoundError("model 'x' is not cached")


def comp(cls, **spec) -> Component:
    spec = RewardSpec(name=cls.name, **spec)
    return Component(spec, cls(spec.params), "fake")


def batch(*items) -> Batch:
    return Batch.from_lists([str(i) for i in items])


def test_stop_is_the_default_and_names_the_reward():
    with pytest.raises(RewardError, match=r"reward 'flaky' \(plugin fake\): raised ConnectionError: upstream"):
        ComposedReward([comp(Flaky)])(batch(1, 7))


def test_skip_masks_every_sample_of_the_failed_call():
    # max_batch_size 2: chunks [1, 7] (raises) and [3, 4]; echo scores everything.
    reward = ComposedReward([comp(Echo), comp(Flaky, on_error="skip")])
    scores = reward(batch(1, 7, 3, 4))
    assert scores.valid == [False, False, True, True]
    assert scores.components["flaky"] == [None, None, 1.0, 1.0]
    assert scores.components["echo"] == [1.0, 7.0, 3.0, 4.0]
    # invalid samples hold 0.0, a placeholder, not echo's partial sum
    assert scores.total == [0.0, 0.0, 4.0, 5.0]
    stats = scores.failure_stats()
    assert stats["reward/flaky/skipped"] == 2 and stats["reward/flaky/zeroed"] == 0
    assert stats["reward/echo/skipped"] == 0 and stats["reward/valid_frac"] == 0.5
    assert "ConnectionError" in scores.failures["flaky"].first_error
    # logged means count only the samples with a score
    assert scores.stats()["reward/flaky_mean"] == 1.0
    assert scores.stats()["reward/total_mean"] == 4.5


def test_zero_scores_failed_samples_zero_and_keeps_them_valid():
    scores = ComposedReward([comp(Echo), comp(Flaky, on_error="zero", weight=3.0)])(batch(1, 7, 3, 4))
    assert scores.valid == [True] * 4
    assert scores.components["flaky"] == [0.0, 0.0, 1.0, 1.0]
    assert scores.total == [1.0, 7.0, 6.0, 7.0]  # echo + 3 x flaky, flaky 0 on the failed call
    assert scores.failure_stats()["reward/flaky/zeroed"] == 2


def test_none_is_never_an_error_and_masks_the_sample():
    # None under the default stop policy: no error, the sample is invalid, counted as none
    scores = ComposedReward([comp(Flaky)])(Batch.from_lists(["1", "none", "2"]))
    assert scores.valid == [True, False, True]
    assert scores.total == [1.0, 0.0, 1.0]
    assert scores.failure_stats()["reward/flaky/none"] == 1


def test_a_non_finite_sample_is_skipped_alone():
    scores = ComposedReward([comp(Flaky, on_error="skip")])(Batch.from_lists(["1", "nan", "2"]))
    assert scores.valid == [True, False, True]
    assert "sample 1: returned nan" in scores.failures["flaky"].first_error
    with pytest.raises(RewardError, match="sample 1: returned nan"):
        ComposedReward([comp(Flaky)])(Batch.from_lists(["1", "nan", "2"]))


def test_setup_errors_stop_under_every_policy():
    for policy in ("skip", "zero"):
        with pytest.raises(ModelNotFoundError):
            ComposedReward([comp(Setup, on_error=policy)])(batch(1))


def test_timeout_under_skip_counts_timed_out_and_does_not_wait():
    reward = ComposedReward([comp(Slow, on_error="skip", timeout=0.2)])
    start = time.perf_counter()
    scores = reward(Batch.from_lists(["a", "hang", "b"]))
    assert time.perf_counter() - start < 5  # the hung call is cancelled, not awaited for 30 s
    assert scores.valid == [True, False, True]
    counts = scores.failures["slow"]
    assert (counts.timed_out, counts.skipped) == (1, 1)
    assert "timed out after 0.2 s" in counts.first_error


def test_timeout_under_stop_is_an_error_naming_the_reward():
    with pytest.raises(RewardError, match=r"reward 'slow' \(plugin fake\): timed out after 0.2 s"):
        ComposedReward([comp(Slow, timeout=0.2)])(Batch.from_lists(["hang"]))


def test_normaliser_ignores_invalid_and_zeroed_samples():
    reward = ComposedReward([comp(Echo, normalize=True), comp(Flaky, on_error="skip")])
    # sample 1 ("7") is skipped by flaky: echo's statistics see only 1 and 3 (chunk [3] alone is fine)
    reward(Batch.from_lists(["1", "7", "3"]))
    stats = reward.components[0].normalizer
    assert stats.count == 3  # echo itself scored all three: invalidity comes from flaky, not echo
    reward2 = ComposedReward([comp(Flaky, on_error="zero", normalize=True)])
    out = reward2(Batch.from_lists(["1", "7", "2", "none"]))
    # chunks [1, 7] -> zeroed, [2, none] -> 1.0 and None: only one real score reaches the statistics
    assert reward2.components[0].normalizer.count == 1
    assert out.total[:2] == [0.0, 0.0] and out.valid == [True, True, True, False]


def test_normaliser_with_gather_gets_nan_for_samples_that_do_not_count():
    seen = []

    def gather(values):
        seen.append(list(values))
        return values + [10.0]  # "the other process"

    reward = ComposedReward([comp(Flaky, on_error="skip", normalize=True)])
    reward.combine(reward.score_components(Batch.from_lists(["1", "none"])), gather=gather)
    assert seen[0][0] == 1.0 and math.isnan(seen[0][1])
    assert reward.components[0].normalizer.count == 2  # 1.0 and the other process's 10.0


def test_max_skipped_frac_names_the_reward_and_the_first_error():
    reward = ComposedReward([comp(Echo, max_skipped_frac=0.0), comp(Flaky, on_error="skip", max_skipped_frac=0.25)])
    scores = reward(batch(1, 7, 3, 4))
    with pytest.raises(RewardError, match=r"reward 'flaky' \(plugin fake\): 2 of 4 samples \(50%\) got no score "
                                          r"this step \(2 skipped after errors, 0 returned None\), over "
                                          r"rewards\[1\].max_skipped_frac = 0.25; first error: raised ConnectionError"):
        reward.check_skipped_frac(scores)
    reward.check_skipped_frac(reward(batch(1, 3, 4, 5)))  # nothing skipped: no error
    # counts summed over processes, judged against the samples of all of them
    total = scores.failures["flaky"] + scores.failures["flaky"]
    reward.check_skipped_frac(scores, failures={"flaky": total}, n=100)


def test_errors_in_two_rewards_raise_the_first_in_recipe_order():
    class Other(Flaky):
        name = "other"

    with pytest.raises(RewardError, match="reward 'flaky'"):
        ComposedReward([comp(Flaky), comp(Other)])(batch(7))


# --- what validation refuses ------------------------------------------------------------------

@pytest.fixture
def registry():
    plugin = types.ModuleType("fake_failures")

    @rewardkit.hookimpl
    def register_rewards(register):
        for cls in (Echo, Flaky, Slow):
            register(cls)

    plugin.register_rewards = register_rewards
    return load_registry(entry_points=False, extra_plugins=[plugin])


def test_from_specs_refuses_timeout_on_sync_and_cache_on_nondeterministic(registry):
    specs = [RewardSpec(name="echo", timeout=1.0), RewardSpec(name="slow", timeout=1.0),
             RewardSpec(name="flaky", cache=True)]
    with pytest.raises(RecipeError) as info:
        ComposedReward.from_specs(specs, registry)
    assert [loc for loc, _ in info.value.errors] == ["rewards[0].timeout", "rewards[2].cache"]
    assert "synchronous score(), which cannot be interrupted" in info.value.errors[0][1]
    assert "does not declare itself deterministic" in info.value.errors[1][1]


def test_validate_refuses_them_with_the_line(tmp_path, registry):
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: asset:tiny-t5}\ndata: {source: asset:dialogues.jsonl}\nrewards:\n"
                    "  - name: echo\n    timeout: 2\n  - name: slow\n    timeout: 2\n    on_error: skip\n"
                    "    max_skipped_frac: 0.5\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    assert len(info.value.errors) == 1
    loc, msg = info.value.errors[0]
    assert loc.endswith("r.yaml:5: rewards[0].timeout") and "cannot be interrupted" in msg
    path.write_text(path.read_text().replace("  - name: echo\n    timeout: 2\n", ""))
    loaded = load_recipe(path, registry=registry)
    assert loaded.recipe.rewards[0].on_error == "skip" and loaded.recipe.rewards[0].timeout == 2


@pytest.mark.parametrize("field, value", [("on_error", "retry"), ("timeout", 0), ("max_skipped_frac", 1.5)])
def test_out_of_range_policy_values_are_refused(tmp_path, registry, field, value):
    path = tmp_path / "r.yaml"
    path.write_text(f"model: {{name: asset:tiny-t5}}\ndata: {{source: asset:dialogues.jsonl}}\nrewards:\n"
                    f"  - name: slow\n    {field}: {value}\n")
    with pytest.raises(RecipeError, match=rf"rewards\[0\]\.{field}"):
        load_recipe(path, registry=registry)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


class Scripted(rewardkit.Reward):
    """Scores "n:<x>" as x, "none" as None, "nan" as NaN, and raises on "boom" (one sample per call)."""

    name = "scripted"
    max_batch_size = 1

    def score(self, batch):
        (c,) = batch.completions
        if c == "boom":
            raise RuntimeError("boom")
        return [None if c == "none" else math.nan if c == "nan" else float(c[2:])]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.sampled_from(["none", "nan", "boom"]),
                          st.integers(-5, 5).map(lambda i: f"n:{i}")), min_size=1, max_size=8),
       st.sampled_from(["skip", "zero"]), st.booleans())
def test_mask_and_total_for_any_pattern_of_failures(items, policy, normalize):
    reward = ComposedReward([comp(Scripted, on_error=policy, normalize=normalize)])
    scores = reward(Batch.from_lists(items))
    failed = [c in ("nan", "boom") for c in items]
    for i, c in enumerate(items):
        no_score = c == "none" or (failed[i] and policy == "skip")
        assert scores.valid[i] is (not no_score)
        if no_score or (failed[i] and policy == "zero"):
            assert scores.total[i] == 0.0  # a placeholder or the zero policy, never a made-up number
        elif not normalize:
            assert scores.total[i] == float(c[2:])
    counts = scores.failures["scripted"]
    assert counts.none == items.count("none")
    assert (counts.skipped if policy == "skip" else counts.zeroed) == sum(failed)
    stats = reward.components[0].normalizer
    if stats is not None:  # only real scores reach the statistics
        assert stats.count == sum(c.startswith("n:") for c in items)
