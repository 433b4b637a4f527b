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
``time/score_s`` (decode + reward model), ``time/update_s`` (reference
logprobs, advantages, the PPO mini-batch passes and optimizer steps; its
part ``time/ref_s`` is the reference pass) and ``time/step_s``. Model loading
is outside the step and not counted in the times. The child's RSS is
sampled every 0.2 s, so each phase's peak is reported too.
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("time/generate_s", "time/score_s", "time/ref_s", "time/update_s", "time/step_s")


class RssSampler(threading.Thread):
    """Polls a process's VmRSS every ``interval`` s, and notes when ``marker`` (metrics.jsonl) appears."""

    def __init__(self, pid: int, marker: Path, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.marker, self.interval = pid, marker, interval
        self.samples: list[tuple[float, int]] = []  # (perf_counter, KiB)
        self.marker_at: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                break
            now = time.perf_counter()
            self.samples.append((now, kib))
            # the run creates metrics.jsonl early; its first line is written when step 0 ends
            if self.marker_at is None and self.marker.exists() and self.marker.stat().st_size > 0:
                self.marker_at = now
            time.sleep(self.interval)

    def peak_between(self, t0: float, t1: float) -> float | None:
        """Peak RSS in MiB among the samples taken in [t0, t1]."""
        inside = [kib for t, kib in self.samples if t0 <= t <= t1]
        return round(max(inside) / 1024, 1) if inside else None


def phase_peaks(sampler: RssSampler, metrics: dict) -> dict:
    """Peak RSS per phase, the phases placed back from the step's end (when metrics.jsonl appeared)."""
    if sampler.marker_at is None:
        return {}
    end = sampler.marker_at
    start = end - metrics["time/step_s"]
    gen_end = start + metrics["time/generate_s"]
    score_end = gen_end + metrics["time/score_s"]
    return {"before_step (model loading)": sampler.peak_between(0, start),
            "generate": sampler.peak_between(start, gen_end), "score": sampler.peak_between(gen_end, score_end),
            "update (ref + PPO passes)": sampler.peak_between(score_end, end + 0.5),
            "after step (saving)": sampler.peak_between(end + 0.5, float("inf"))}


def run_step(home: Path, recipe: str, threads: int, overrides: list[str], run_dir: Path) -> dict:
    """Run one step in a child process; returns the metrics line, peak RSS and wall time."""
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false")
    sets = ["--set", "ppo.max_ppo_steps=1"] + [a for kv in overrides for a in ("--set", kv)]
    cmd = [sys.executable, "-m", "rewardkit", "run", recipe, *sets, "--output-dir", str(run_dir), "--no-progress"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        sampler = RssSampler(proc.pid, run_dir / "metrics.jsonl")
        sampler.start()
        returncode = proc.wait()
        sampler.done.set()
        sampler.join()
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - start
    if returncode != 0:
        raise SystemExit(f"step failed ({returncode}):\n{stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {"command": " ".join(["rewardkit", "run", recipe, *sets]), "threads": threads,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "wall_s_including_load": round(wall, 1), "load_avg_1min_before": round(load_before, 2),
            "load_avg_1min_after": round(os.getloadavg()[0], 2), "metrics": metrics,
            "phases_s": {k.split("/")[1][:-2]: round(metrics[k], 2) for k in PHASES if k in metrics},
            "phase_peak_rss_mib": phase_peaks(sampler, metrics),
            # one sample a second: seconds since the command started, RSS MiB
            "rss_series": [[round(t - start, 1), round(kib / 1024)] for t, kib in sampler.samples[::5]],
            "logged_samples": len(samples),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}


def markdown(result: dict) -> str:
    """The short report."""
    m = result["metrics"]
    names = {"generate": "generate (sampling + logprobs/values)", "score": "score (decode + RoBERTa)",
             "ref": "&nbsp;&nbsp;of which reference logprobs", "update": "update (reference + PPO passes + optimizer)",
             "step": "**whole step**"}
    order = ["generate", "score", "update", "ref", "step"]
    rows = "\n".join(f"| {names[k]} | {result['phases_s'][k]:.1f} |" for k in order if k in result["phases_s"])
    peaks = "\n".join(f"| {k} | {v:.0f} |" for k, v in result.get("phase_peak_rss_mib", {}).items() if v)
    return (f"# One detox step at real shapes on CPU\n\n`{result['command']}`, {result['threads']} torch threads, "
            f"{result['machine']['cpus']} CPUs (load average {result['load_avg_1min_before']} before, "
            f"{result['load_avg_1min_after']} after; other jobs may have shared the CPU).\n\n"
            f"| phase | seconds |\n|---|---|\n{rows}\n\n"
            f"Peak RSS by phase (sampled every 0.2 s; phases placed back from the step's end):\n\n"
            f"| phase | peak RSS MiB |\n|---|---|\n{peaks}\n\n"
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
