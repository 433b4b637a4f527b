#!/usr/bin/env python3
"""A few steps of ``recipes/detox.yaml`` on the rehearsal cache, in this process, with peak GPU memory.

Runs ``rewardkit run`` in-process (so ``torch.cuda.max_memory_allocated``
sees the whole run), then prints one JSON line: s/step of each step, the
step-0 ``kl``, ``policy/approx_kl`` and ``policy/clipfrac``, peak GPU memory
(allocated and reserved) and the device. ``HF_HOME`` must point at a cache
built by ``python -m rewardkit.rehearsal build``::

    HF_HOME=/tmp/hf HF_HUB_OFFLINE=1 python bench/gpu_rehearsal.py --steps 3 --out-dir /tmp/run [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    """Run the steps, print and return the summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="recipes/detox.yaml")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from rewardkit.cli import cli

    argv_run = ["run", args.recipe, "--set", f"ppo.max_ppo_steps={args.steps}",
                *[a for kv in args.overrides for a in ("--set", kv)], "--output-dir", str(args.out_dir),
                "--no-progress"]
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        cli.main(argv_run, prog_name="rewardkit", standalone_mode=False)
    except SystemExit as exc:  # click may still exit on errors
        if exc.code:
            raise
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in (args.out_dir / "metrics.jsonl").read_text().splitlines()]
    first = lines[0]
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
        "command": "rewardkit " + " ".join(argv_run), "steps": len(lines), "wall_s_including_load": round(wall, 1),
        "s_per_step": [round(m["time/step_s"], 2) for m in lines],
        "phases_step0_s": {k.split("/")[1]: round(v, 2) for k, v in first.items() if k.startswith("time/")},
        "step0": {"kl": first.get("kl"), "approx_kl": first.get("policy/approx_kl"),
                  "clipfrac": first.get("policy/clipfrac"), "response_length_mean": first.get("response_length_mean")},
    }
    if cuda:
        result["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
