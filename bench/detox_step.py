#!/usr/bin/env python3
"""One step of ``recipes/detox.yaml`` at real shapes, on the rehearsal cache: peak RSS and phase times.

Runs the real command, unchanged but for ``ppo.max_ppo_steps=1`` (batch 16,
mini-batch 4, bf16, LoRA r=32 on q,v, ``max_new_tokens`` drawn from
100..400), in a child process whose peak RSS (``ru_maxrss`` of the child) is
the step's, against the stand-ins of ``python -m rewardkit.rehearsal build``::

    python bench/detox_step.py --home /tmp/hf [--threads 2] [--set KEY=VALUE ...] [--out bench/results/NAME]

Writes ``NAME.json`` (metrics line, peak RSS, the command, the machine's
load) and ``NAME.md``. The phases are the run's own timings from
``metrics.jsonl``: ``time/generate_s`` (sampling with logprobs and values),
``time/score_s`` (decode + reward model), ``time/ref_s`` (reference
logprobs), ``time/update_s`` (the PPO mini-batch passes and optimizer steps)
and ``time/step_s``. Model loading is outside the step and not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("time/generate_s", "time/score_s", "time/ref_s", "time/update_s", "time/step_s")


def run_step(home: Path, recipe: str, threads: int, overrides: list[str], run_dir: Path) -> dict:
    """Run one step in a child process; returns the metrics line, peak RSS and wall time."""
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false")
    sets = ["--set", "ppo.max_ppo_steps=1"] + [a for kv in overrides for a in ("--set", kv)]
    cmd = [sys.executable, "-m", "rewardkit", "run", recipe, *sets, "--output-dir", str(run_dir), "--no-progress"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"step failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {"command": " ".join(["rewardkit", "run", recipe, *sets]), "threads": threads,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "wall_s_including_load": round(wall, 1), "load_avg_1min_before": round(load_before, 2),
            "load_avg_1min_after": round(os.getloadavg()[0], 2), "metrics": metrics,
            "phases_s": {k.split("/")[1][:-2]: round(metrics[k], 2) for k in PHASES if k in metrics},
            "logged_samples": len(samples),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}


def markdown(result: dict) -> str:
    """The short report."""
    m = result["metrics"]
    rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in result["phases_s"].items())
    return (f"# One detox step at real shapes on CPU\n\n`{result['command']}`, {result['threads']} torch threads, "
            f"{result['machine']['cpus']} CPUs (load average {result['load_avg_1min_before']} before, "
            f"{result['load_avg_1min_after']} after; other jobs may have shared the CPU).\n\n"
            f"| phase | seconds |\n|---|---|\n{rows}\n\n"
            f"- peak RSS of the run process: **{result['peak_rss_mib']:.0f} MiB** (models loaded, one step)\n"
            f"- response length mean {m.get('response_length_mean', float('nan')):.0f} tokens "
            f"(drawn from 100..400; random weights almost never sample `</s>`), "
            f"{m.get('tokens_per_s', float('nan')):.1f} generated tokens/s\n"
            f"- step 0: kl {m.get('kl')}, approx_kl {m.get('policy/approx_kl')}, clipfrac {m.get('policy/clipfrac')}\n")


def main(argv=None) -> int:
    """Parse arguments, run the step, write json + md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, required=True, help="HF_HOME built by python -m rewardkit.rehearsal build")
    ap.add_argument("--recipe", default="recipes/detox.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra overrides (a reduced step: say what was reduced)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "detox_step_cpu"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_step(args.home.resolve(), args.recipe, args.threads, args.overrides, Path(tmp) / "run")
    result["reduced"] = args.overrides
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
