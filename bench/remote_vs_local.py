"""The quickstart's composed reward with its toxicity term served by ``rewardkit serve``, vs in-process.

Starts ``rewardkit serve toxicity --param model=asset:tiny-hate-roberta --port 0``
on 127.0.0.1, scores the same batch (the shipped summaries plus a few rude,
empty and degenerate completions) both ways, and prints the largest
difference per component and in the total, and the seconds per batch.

    python bench/remote_vs_local.py [--out bench/results/remote_vs_local.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Serve, score both ways, print and write the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/remote_vs_local.txt")
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()

    from rewardkit.compose import ComposedReward
    from rewardkit.plugins import load_registry
    from rewardkit.recipe import load_recipe
    from rewardkit.recipe.schema import RewardSpec
    from rewardkit.reward import Batch

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    server = subprocess.Popen([sys.executable, "-m", "rewardkit", "serve", "toxicity", "--param",
                               "model=asset:tiny-hate-roberta", "--port", "0"], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        url = re.search(r" on (http://\S+): ", server.stdout.readline()).group(1)
        registry = load_registry()
        specs = load_recipe(ROOT / "recipes" / "quickstart.yaml", registry=registry).recipe.rewards
        remote_specs = [RewardSpec(name="remote", weight=s.weight, params={"url": url + "/score"})
                        if s.name == "toxicity" else s for s in specs]
        local, remote = ComposedReward.from_specs(specs, registry), ComposedReward.from_specs(remote_specs, registry)
        rows = [json.loads(line) for line in (ROOT / "rewardkit" / "assets" / "dialogues.jsonl").open()]
        completions = [r["summary"] for r in rows[:args.samples - 8]] + [
            "", "you are an idiot", "shut up, stupid", "THANK YOU SO MUCH", "ok", "the the the", "...", " "]
        batch = Batch.from_lists(completions)
        local(batch), remote(batch)  # warm up both (model load, connection)
        t0 = time.perf_counter()
        a = local(batch)
        t1 = time.perf_counter()
        b = remote(batch)
        t2 = time.perf_counter()
    finally:
        server.terminate()
        server.wait(timeout=30)

    def diff(x, y):
        return max(abs(p - q) for p, q in zip(x, y))

    lines = [f"{len(batch)} samples, quickstart rewards (toxicity x 1.0 + length x 0.2), toxicity served at {url}",
             f"max |local - remote| toxicity: {diff(a.components['toxicity'], b.components['remote']):.3g}",
             f"max |local - remote| length:   {diff(a.components['length'], b.components['length']):.3g}",
             f"max |local - remote| total:    {diff(a.total, b.total):.3g}",
             f"identical totals: {a.total == b.total}",
             f"seconds per batch: local {t1 - t0:.3f}, remote {t2 - t1:.3f}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
