#!/usr/bin/env python3
"""RSS of the rollout (sampling) phase alone, at the detox step's shapes, on the rehearsal cache.

Loads flan-t5-base (bf16, LoRA r=32 on q,v, value head) as ``rewardkit run``
does, takes the first ``--batch`` training prompts of the detox recipe, and
samples ``--new-tokens`` tokens for every row with :func:`rewardkit.ppo.rollout.sample`,
polling RSS every 0.1 s. Prints RSS after loading, the peak while sampling
and RSS afterwards, so that memory the sampling loop holds (or malloc keeps)
is told apart from the models'::

    HF_HOME=/tmp/hf python bench/gen_memory.py --batch 16 --new-tokens 100
    MALLOC_ARENA_MAX=1 HF_HOME=/tmp/hf python bench/gen_memory.py ...   # one malloc arena
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main(argv=None) -> int:
    """Measure and print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from rewardkit.data import prepare
    from rewardkit.policy import build_policy
    from rewardkit.ppo.rollout import sample, sampling_for
    from rewardkit.recipe.validate import load_recipe

    torch.set_num_threads(args.threads)
    recipe = load_recipe("recipes/detox.yaml").recipe
    policy, tokenizer = build_policy(recipe.model, recipe.lora, value_head_dropout=0.0, device=torch.device("cpu"))
    train, _ = prepare(recipe.data, tokenizer, seed=recipe.seed)
    ids = train.input_ids[:args.batch]
    width = max(len(r) for r in ids)
    query = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in ids])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])
    sampling = sampling_for(recipe.generation, tokenizer, policy.config)
    after_load = rss_mib()
    peak = [after_load]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    start = time.perf_counter()
    rollout = sample(policy, query, mask, torch.full((args.batch,), args.new_tokens), sampling,
                     torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    stop.set()
    t.join()
    print(json.dumps({"batch": args.batch, "prompt_tokens_max": width, "new_tokens": args.new_tokens,
                      "response_tokens": int(rollout.mask.sum()), "seconds": round(seconds, 1),
                      "rss_after_load_mib": round(after_load), "rss_peak_sampling_mib": round(peak[0]),
                      "rss_after_sampling_mib": round(rss_mib()),
                      "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
