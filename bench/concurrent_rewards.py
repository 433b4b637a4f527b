"""How long one scoring step takes when its rewards wait: two rewards that each sleep 1 s.

Sequential scoring would take the sum (2 s); rewardkit runs the rewards of a
step at once, so a step should take about the longest (1 s). Three pairs:
two synchronous rewards (worker threads), two async ones (the event loop),
and one of each. Also an async reward with max_batch_size 4 and
max_concurrency 4 on 16 samples (4 chunks of 1 s each, all in flight).

    python bench/concurrent_rewards.py [--steps 3] [--out bench/results/concurrent_rewards.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import rewardkit
from rewardkit.compose import Component, ComposedReward
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch


class SleepSync(rewardkit.Reward):
    """Blocks for 1 s per call (a synchronous HTTP client, a slow local model)."""

    name = "sleep_sync"

    def score(self, batch):
        time.sleep(1.0)
        return [1.0] * len(batch)


class SleepAsync(rewardkit.Reward):
    """Awaits 1 s per call (an API judge with an async client)."""

    name = "sleep_async"

    async def score(self, batch):
        await asyncio.sleep(1.0)
        return [1.0] * len(batch)


class ChunkedAsync(SleepAsync):
    """1 s per call of at most 4 samples, 4 calls at once."""

    name = "chunked_async"
    max_batch_size = 4
    max_concurrency = 4


def _component(cls, name=None) -> Component:
    return Component(RewardSpec(name=name or cls.name), cls(), "bench")


def _time(reward: ComposedReward, batch: Batch, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        start = time.perf_counter()
        reward(batch)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    """Run every case and print (and write) the median seconds per step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="bench/results/concurrent_rewards.txt")
    args = parser.parse_args()
    batch = Batch.from_lists([f"sample {i}" for i in range(16)])

    class SleepSync2(SleepSync):
        name = "sleep_sync_2"

    class SleepAsync2(SleepAsync):
        name = "sleep_async_2"

    cases = [
        ("2 sync rewards x 1 s", [_component(SleepSync), _component(SleepSync2)], 2.0),
        ("2 async rewards x 1 s", [_component(SleepAsync), _component(SleepAsync2)], 2.0),
        ("1 sync + 1 async x 1 s", [_component(SleepSync), _component(SleepAsync)], 2.0),
        ("async, 16 samples in 4 chunks of 1 s, concurrency 4", [_component(ChunkedAsync)], 4.0),
    ]
    lines = [f"{'case':52} {'sequential s':>12} {'median s/step':>14} {'min':>7} {'max':>7}"]
    for label, components, sequential in cases:
        times = _time(ComposedReward(components), batch, args.steps)
        lines.append(f"{label:52} {sequential:12.1f} {statistics.median(times):14.3f} "
                     f"{min(times):7.3f} {max(times):7.3f}")
    text = "\n".join(lines) + f"\n({args.steps} steps each, batch of 16)\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
