"""Async rewards and concurrency: async score awaited, max_batch_size chunks, max_concurrency
honoured, the rewards of one step overlapping, and the synchronous API working from anywhere."""

from __future__ import annotations

import asyncio
import threading
import time

import rewardkit
from rewardkit.compose import Component, ComposedReward
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch
from rewardkit.testing import check_reward, run_reward


class AsyncLen(rewardkit.Reward):
    """Async: the completion's length; records the chunk sizes and the most calls in flight."""

    name = "async_len"
    deterministic = True
    max_batch_size = 3
    max_concurrency = 2

    def __init__(self, params=None, *, device="cpu"):
        super().__init__(params, device=device)
        self.sizes: list[int] = []
        self.in_flight = self.peak = 0

    async def score(self, batch):
        self.sizes.append(len(batch))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.05)
        self.in_flight -= 1
        return [float(len(c)) for c in batch.completions]


class SleepSync(rewardkit.Reward):
    """Sleeps ``seconds`` in a plain (blocking) score."""

    name = "sleep_sync"

    class Params(rewardkit.Params):
        seconds: float = 1.0

    def score(self, batch):
        time.sleep(self.params.seconds)
        return [1.0] * len(batch)


class SleepAsync(rewardkit.Reward):
    """Sleeps ``seconds`` in an async score."""

    name = "sleep_async"

    class Params(rewardkit.Params):
        seconds: float = 1.0

    async def score(self, batch):
        await asyncio.sleep(self.params.seconds)
        return [2.0] * len(batch)


def comp(cls, **spec):
    spec = RewardSpec(name=cls.name, **spec)
    return Component(spec, cls(spec.params), "fake")


def test_async_score_is_awaited_in_chunks_with_bounded_concurrency():
    c = comp(AsyncLen)
    scores = ComposedReward([c])(Batch.from_lists(["a", "bb", "ccc", "dddd", "e", "ff", "g"]))
    assert scores.components["async_len"] == [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 1.0]
    assert sorted(c.reward.sizes) == [1, 3, 3]  # max_batch_size 3
    assert c.reward.peak == 2  # max_concurrency 2, though 3 chunks were ready


def test_two_one_second_rewards_take_about_one_second():
    # A loose bound (sequential would be 2 s); bench/concurrent_rewards.py measures it properly.
    reward = ComposedReward([comp(SleepSync), comp(SleepAsync)])
    start = time.perf_counter()
    scores = reward(Batch.from_lists(["x", "y"]))
    assert time.perf_counter() - start < 1.8
    assert scores.total == [3.0, 3.0]


def test_sync_api_works_inside_a_running_event_loop_and_from_threads():
    reward = ComposedReward([comp(AsyncLen), comp(SleepSync, params={"seconds": 0.01})])

    async def inside():
        return reward(Batch.from_lists(["abc"])).total

    assert asyncio.run(inside()) == [4.0]
    out = []
    threads = [threading.Thread(target=lambda: out.append(reward(Batch.from_lists(["ab"])).total)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [[3.0]] * 3
    reward.close()
    assert reward(Batch.from_lists(["a"])).total == [2.0]  # starts again after close


def test_ascore_components_in_the_callers_loop():
    reward = ComposedReward([comp(AsyncLen)])
    raw = asyncio.run(reward.ascore_components(Batch.from_lists(["ab", "c"])))
    assert raw == {"async_len": [2.0, 1.0]}


def test_testing_kit_runs_async_rewards():
    assert run_reward(AsyncLen, ["abcd"]) == [4.0]
    results = check_reward(AsyncLen)
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


def test_cache_hits_for_repeated_completions():
    c = comp(AsyncLen, cache=True)
    reward = ComposedReward([c])
    reward(Batch.from_lists(["a", "bb"]))
    scores = reward(Batch.from_lists(["a", "bb", "ccc", "a"]))
    assert scores.components["async_len"] == [1.0, 2.0, 3.0, 1.0]
    # the second batch sends only "ccc" to the reward: both "a" and "bb" are cached
    assert sum(c.reward.sizes) == 2 + 1
    stats = scores.failure_stats()
    assert stats["reward/async_len/cache_hit_rate"] == 0.75
    assert c.cache.hit_rate == 3 / 6


def test_check_reward_refuses_unusable_declared_limits():
    class Bad(AsyncLen):
        name = "bad_limits"
        max_concurrency = 0

    results = {r.name: r for r in check_reward(Bad)}
    assert results["instantiate"].status == "FAIL"
    assert "max_concurrency = 0; it must be a positive integer" in results["instantiate"].detail


class WhereSync(rewardkit.Reward):
    """Synchronous: records the thread each call runs in."""

    name = "where_sync"

    def __init__(self, params=None, *, device="cpu"):
        super().__init__(params, device=device)
        self.threads: list[int] = []

    def score(self, batch):
        self.threads.append(threading.get_ident())
        return [float(len(c)) for c in batch.completions]


def _reward_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rewardkit-")]


def test_one_synchronous_reward_runs_in_the_callers_thread_and_starts_no_thread():
    # A torch reward scored from a worker thread slows every later torch op of the process
    # (libgomp stops spinning once there are more OpenMP threads than cores), so the usual case
    # -- one synchronous reward -- must not start any thread.
    c = comp(WhereSync)
    reward = ComposedReward([c])
    before = _reward_threads()
    assert reward(Batch.from_lists(["ab", "c"])).total == [2.0, 1.0]
    assert c.reward.threads == [threading.get_ident()]
    assert _reward_threads() == before


def test_second_synchronous_reward_runs_in_a_worker_that_does_not_outlive_the_call():
    first, second = comp(WhereSync), comp(SleepSync, params={"seconds": 0.01})
    reward = ComposedReward([first, second])
    assert reward(Batch.from_lists(["abc"])).total == [4.0]
    assert first.reward.threads == [threading.get_ident()]  # the first one still runs here
    assert not [t for t in _reward_threads() if t.name.startswith("rewardkit-reward_")]
    raw = asyncio.run(reward.ascore_components(Batch.from_lists(["ab"])))
    assert raw == {"where_sync": [2.0], "sleep_sync": [1.0]}
    assert first.reward.threads[-1] != threading.get_ident()  # through the loop: in a worker thread
    assert not [t for t in _reward_threads() if t.name.startswith("rewardkit-reward_")]
    reward.close()
