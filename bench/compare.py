#!/usr/bin/env python3
"""rewardkit's PPO against the peer (TRL 0.11's old PPOTrainer) on identical work.

Runs ``bench/rk_ppo.py`` and the peer's ``run.sh`` (``../shared/bench/peer``)
alternately, each measurement in its own process, and prints markdown tables:
medians over runs of the per-run medians, per phase (generate, score,
update, whole step), the ratio rewardkit/peer, and the peak RSS
(``ru_maxrss``). Optionally a scaling table (rewardkit step time against
batch size and generated length) and the framework overhead at small size.
Usage::

    python bench/compare.py --sizes tiny,small,base --runs tiny=5,small=3,base=3
    python bench/compare.py --sizes tiny --runs 5 --scaling --overhead small
    python bench/compare.py --threads 1 ...   # both sides on one thread, for a busy machine

The peer builds its own virtualenv and models on first use (``run.sh``);
rewardkit reads the models from the same directory. Prints nothing that
asserts: the numbers are for reading, on a machine you know is quiet
(the table header shows the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_PEER = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "peer"))
STEPS = {"tiny": 10, "small": 5, "base": 3}
PHASES = [("step", "median_step_s"), ("generate", "median_generate_s"), ("score", "median_reward_s"),
          ("update", "median_ppo_update_s")]


def load() -> str:
    """The 1-minute load average, as text."""
    return f"{os.getloadavg()[0]:.2f}"


def run_json(cmd: list[str], log: str | None, *, env: dict | None = None, cwd: str = ROOT) -> dict:
    """Run ``cmd`` (in ``cwd``, with ``env`` added to the environment); its last stdout line is the result JSON.
    Raises with stderr's tail on failure."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if log:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stderr}\n{proc.stdout}\n")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def rk_cmd(size: str, steps: int, extra: list[str] = (), threads: int = 2) -> list[str]:
    return [sys.executable, os.path.join(HERE, "rk_ppo.py"), str(steps), "--size", size, "--threads", str(threads),
            *extra]


def peer_cmd(peer_dir: str, size: str, steps: int, threads: int = 2) -> list[str]:
    """The peer's ``run.sh``; for another thread count, its script through ``bench/peer_threads.py``."""
    if threads == 2:
        return ["bash", os.path.join(peer_dir, "run.sh"), str(steps), "--size", size]
    work = os.environ.get("PEERBENCH_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "peerbench")
    python = os.path.join(os.environ.get("VENV") or os.path.join(work, "venv"), "bin", "python")
    if not os.path.exists(python):
        raise SystemExit(f"{python} is missing: run `bash {os.path.join(peer_dir, 'run.sh')} 1 --size {size}` once")
    return ["env", f"PEER_THREADS={threads}", python, os.path.join(HERE, "peer_threads.py"),
            os.path.join(peer_dir, "trl011_ppo.py"), str(steps), "--size", size,
            "--tiny-dir", os.environ.get("TINY_DIR") or os.path.join(work, "tiny")]


def med(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def runs_per_size(spec: str, sizes: list[str], ap) -> dict[str, int]:
    """``--runs``: ``"3"`` (every size) or ``"tiny=5,small=3"`` (sizes not named get 3)."""
    try:
        if "=" not in spec:
            return {size: int(spec) for size in sizes}
        named = {k.strip(): int(v) for k, v in (part.split("=") for part in spec.split(",") if part.strip())}
    except ValueError:
        ap.error(f"--runs: expected a number or size=N pairs, got {spec!r}")
    return {size: named.get(size, 3) for size in sizes}


def compare(sizes, runs, peer_dir, log, threads=2, save=None) -> tuple[str, dict]:
    """Alternate rewardkit and peer runs per size; returns the markdown table and the raw results.

    ``runs`` maps each size to its number of runs per side.

    ``save(raw)`` is called after every run, so an interrupted comparison keeps what it measured.
    """
    raw: dict = {}
    rows = []
    raw["threads"] = threads
    for size in sizes:
        steps = STEPS[size]
        rk, peer = [], []
        load_before = load()
        for i in range(runs[size]):
            order = [("rk", rk_cmd(size, steps, threads=threads)), ("peer", peer_cmd(peer_dir, size, steps, threads))]
            for who, cmd in (order if i % 2 == 0 else order[::-1]):  # alternate who goes first
                result = run_json(cmd, log)
                (rk if who == "rk" else peer).append(result)
                raw[size] = {"rewardkit": rk, "peer": peer}
                if save:
                    save(raw)
                print(f"  {size} run {i + 1} {who}: {result['median_step_s']:.3f} s/step, "
                      f"peak RSS {result['peak_rss_mib']:.0f} MiB (load {load()})", file=sys.stderr, flush=True)
        raw[size] = {"rewardkit": rk, "peer": peer, "load": [load_before, load()]}
        for name, key in PHASES:
            a, b = med(rk, key), med(peer, key)
            rows.append(f"| {size} | {name} | {a:.4g} | {b:.4g} | **{a / b:.2f}** |")
        a, b = med(rk, "peak_rss_mib"), med(peer, "peak_rss_mib")
        rows.append(f"| {size} | peak RSS MiB | {a:.0f} | {b:.0f} | **{a / b:.2f}** |")
        rows.append(f"| {size} | (runs x timed steps; load before/after) | {runs[size]} x {steps} | {runs[size]} x {steps} | "
                    f"{load_before} / {load()} |")
    table = ["| size | phase | rewardkit s | peer s | rewardkit/peer |", "|---|---|---|---|---|", *rows]
    return "\n".join(table), raw


def scaling(runs, steps, log, threads=2) -> tuple[str, dict]:
    """rewardkit step time at tiny size against batch size and generated length (EOS blocked)."""
    raw = {"batch": {}, "tokens": {}}
    rows = []
    base_b = base_t = None
    for batch in (8, 16, 32, 64):
        res = [run_json(rk_cmd("tiny", steps, ["--batch-size", str(batch), "--force-len", "yes"], threads), log)
               for _ in range(runs)]
        raw["batch"][batch] = res
        s = med(res, "median_step_s")
        base_b = base_b or (s, batch)
        rows.append(f"| batch {batch}, 32 tokens | {s:.3f} | {med(res, 'median_generate_s'):.3f} | "
                    f"{med(res, 'median_ppo_update_s'):.3f} | {s / base_b[0]:.2f} | {batch / base_b[1]:.0f} |")
        print(f"  scaling batch {batch}: {s:.3f} s/step", file=sys.stderr, flush=True)
    for tokens in (16, 32, 64, 128):
        res = [run_json(rk_cmd("tiny", steps, ["--max-new-tokens", str(tokens), "--force-len", "yes"], threads), log)
               for _ in range(runs)]
        raw["tokens"][tokens] = res
        s = med(res, "median_step_s")
        base_t = base_t or (s, tokens)
        rows.append(f"| batch 16, {tokens} tokens | {s:.3f} | {med(res, 'median_generate_s'):.3f} | "
                    f"{med(res, 'median_ppo_update_s'):.3f} | {s / base_t[0]:.2f} | {tokens / base_t[1]:.0f} |")
        print(f"  scaling tokens {tokens}: {s:.3f} s/step", file=sys.stderr, flush=True)
    table = [f"| tiny, {threads} thread(s) | s/step | generate s | update s | time x | work x |",
             "|---|---|---|---|---|---|", *rows]
    return "\n".join(table), raw


def overhead(size, runs, log, threads=2) -> tuple[str, dict]:
    """Where rewardkit's update time goes at ``size``; overhead = step - generate - score - model fwd/bwd."""
    res = [run_json(rk_cmd(size, STEPS[size], ["--overhead"], threads), log) for _ in range(runs)]
    step = med(res, "median_step_s")
    parts = [("generate (sampling loop incl. its model calls)", med(res, "median_generate_s")),
             ("reward scoring (decode + classifier)", med(res, "median_reward_s")),
             ("update: model forward (reference + policy)", med(res, "median_update_forward_s")),
             ("update: backward", med(res, "median_update_backward_s")),
             ("update: everything else = framework overhead", med(res, "median_overhead_s"))]
    rows = [f"| {name} | {s:.3f} | {100 * s / step:.1f} % |" for name, s in parts]
    table = [f"| {size}, {threads} thread(s) | s | share of step |", "|---|---|---|", *rows,
             f"| whole step | {step:.3f} | 100 % |"]
    return "\n".join(table), {"runs": res}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="tiny,small,base", help="comma-separated: tiny, small, base")
    ap.add_argument("--runs", default="3",
                    help="alternating runs of each side per size: a number, or per size (tiny=5,small=3,base=3)")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads for both sides (the benchmark's setting is 2; 1 gives steadier numbers on a "
                         "machine whose cores are busy; the peer then runs through bench/peer_threads.py)")
    ap.add_argument("--scaling", action="store_true", help="also the batch-size / length scaling table (tiny)")
    ap.add_argument("--scaling-runs", type=int, default=1)
    ap.add_argument("--overhead", metavar="SIZE", help="also the overhead breakdown at this size (e.g. small)")
    ap.add_argument("--overhead-runs", type=int, default=1)
    ap.add_argument("--no-compare", action="store_true", help="skip the side-by-side runs")
    ap.add_argument("--json", help="write every run's result JSON here")
    ap.add_argument("--log", help="append every command's stderr/stdout here")
    args = ap.parse_args(argv)
    raw = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "nproc": os.cpu_count()}
    out = []
    if not args.no_compare:
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        unknown = [s for s in sizes if s not in STEPS]
        if unknown:
            ap.error(f"--sizes: unknown size(s) {', '.join(unknown)}; use tiny, small, base")
        def save(partial):
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({**raw, "compare": partial, "partial": True}, f, indent=1)

        table, raw["compare"] = compare(sizes, runs_per_size(args.runs, sizes, ap), args.peer_dir, args.log,
                                        args.threads, save)
        out += [f"## rewardkit vs peer (medians over runs; {args.threads} thread(s), fp32)", "", table, ""]
    if args.scaling:
        table, raw["scaling"] = scaling(args.scaling_runs, 5, args.log, args.threads)
        out += ["## rewardkit scaling (tiny; EOS blocked so every response has the asked length)", "", table, ""]
    if args.overhead:
        table, raw["overhead"] = overhead(args.overhead, args.overhead_runs, args.log, args.threads)
        out += [f"## Where a rewardkit step goes ({args.overhead})", "", table, ""]
    raw["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    print("\n".join(out))


if __name__ == "__main__":
    main()
