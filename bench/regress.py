#!/usr/bin/env python3
"""The speed guard: this working tree against a git ref, phase by phase, on identical work.

Checks the ref out into a temporary git worktree, then runs each tree's own
``bench/rk_ppo.py`` (the peer benchmark's work: same models, prompts,
batches, LoRA, 32 new tokens) in alternating processes, each run in a fresh
process with ``PYTHONPATH`` pointing at its tree, so both sides use this
virtualenv's packages and differ only in rewardkit's code. Prints, per phase
(whole step, generate, score, update) and for the peak RSS, the median of
the per-run medians on each side and the ratio working tree / ref, and
flags every phase more than ``--tolerance`` slower. Usage::

    python bench/regress.py                      # against main, tiny, 3 runs a side (about 1.5 minutes)
    python bench/regress.py --against HEAD~5 --runs 5 --size small
    python bench/regress.py --json bench/out/regress.json

Run it before calling a change to the loop, the model passes or the reward
runtime done (README, "Development"); a phase more than 5% slower says why
in the commit. Exit status: 0, or 1 when a phase is slower than the
tolerance (so it can gate a script), 2 on a usage or setup problem. It
needs the peer's tiny models once: ``bash ../shared/bench/peer/run.sh 1``
(about two minutes; ``--size small`` / ``base`` for the larger T5s).

Numbers only mean something on a quiet machine: the load average before and
after is printed; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from compare import run_json  # bench/ is this script's directory, so first on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "peer"))
WORK = os.environ.get("PEERBENCH_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "peerbench")
T5_SUBDIR = {"tiny": "t5", "small": "t5-small", "base": "t5-base"}
#: (label, key of rk_ppo.py's result JSON)
PHASES = [("step", "median_step_s"), ("generate", "median_generate_s"), ("score", "median_reward_s"),
          ("update", "median_ppo_update_s"), ("peak RSS MiB", "peak_rss_mib")]


def git(*args: str) -> str:
    """Run git in the project root; its stdout, stripped. Exits 2 with git's message on failure."""
    proc = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"regress.py: git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def run_side(tree: str, args) -> dict:
    """One ``bench/rk_ppo.py`` run of ``tree`` in a fresh process, its rewardkit first on the path; its result JSON."""
    cmd = [sys.executable, os.path.join(tree, "bench", "rk_ppo.py"), str(args.steps), "--size", args.size,
           "--threads", str(args.threads), "--tiny-dir", args.tiny_dir,
           "--batches", os.path.join(args.peer_dir, "batches_seed0.json")]
    return run_json(cmd, args.log, env={"PYTHONPATH": os.pathsep.join([tree, os.path.join(tree, "plugins")])},
                    cwd=tree)


def table(new: list[dict], old: list[dict], tolerance: float) -> tuple[list[str], list[str]]:
    """Markdown rows (phase, working tree, ref, ratio, spread) and the names of the phases over tolerance."""
    rows = ["| phase | working tree | ref | tree/ref | tree min..max | ref min..max |",
            "|---|---|---|---|---|---|"]
    slower = []
    for name, key in PHASES:
        a, b = statistics.median(r[key] for r in new), statistics.median(r[key] for r in old)
        ratio = a / b if b else float("nan")
        flag = ""
        if ratio > 1 + tolerance:
            flag = " (slower)" if key != "peak_rss_mib" else " (more)"
            slower.append(name)
        spread = [f"{min(r[key] for r in side):.4g}..{max(r[key] for r in side):.4g}" for side in (new, old)]
        rows.append(f"| {name} | {a:.4g} | {b:.4g} | **{ratio:.3f}**{flag} | {spread[0]} | {spread[1]} |")
    return rows, slower


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", default="main", help="git ref to compare with (default: main)")
    ap.add_argument("--size", choices=sorted(T5_SUBDIR), default="tiny")
    ap.add_argument("--runs", type=int, default=3, help="runs per side, alternating who goes first")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the benchmark's setting is 2)")
    ap.add_argument("--tolerance", type=float, default=0.05, help="flag phases slower than this fraction")
    ap.add_argument("--tiny-dir", default=os.environ.get("TINY_DIR") or os.path.join(WORK, "tiny"))
    ap.add_argument("--peer-dir", default=PEER_DIR)
    ap.add_argument("--json", help="write both sides' result JSONs and the table here")
    ap.add_argument("--log", help="append every run's stderr/stdout here")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.steps < 1:
        ap.error("--runs and --steps must be at least 1")
    model_dir = os.path.join(args.tiny_dir, T5_SUBDIR[args.size])
    if not os.path.isdir(model_dir):
        print(f"regress.py: {model_dir} is missing; build the peer's models once with "
              f"`bash {os.path.join(args.peer_dir, 'run.sh')} 1 --size {args.size}`", file=sys.stderr)
        return 2
    commit = git("rev-parse", "--verify", "--quiet", f"{args.against}^{{commit}}")
    head = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    with tempfile.TemporaryDirectory(prefix="rk-regress-") as tmp:
        ref_tree = os.path.join(tmp, "ref")
        git("worktree", "add", "--detach", "--force", ref_tree, commit)
        try:
            if not os.path.exists(os.path.join(ref_tree, "bench", "rk_ppo.py")):
                print(f"regress.py: {args.against} has no bench/rk_ppo.py to run", file=sys.stderr)
                return 2
            load_before = os.getloadavg()[0]
            new, old = [], []
            for i in range(args.runs):
                sides = [("tree", ROOT, new), ("ref", ref_tree, old)]
                for who, tree, out in (sides if i % 2 == 0 else sides[::-1]):
                    result = run_side(tree, args)
                    out.append(result)
                    print(f"  run {i + 1} {who}: {result['median_step_s']:.4f} s/step "
                          f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            load_after = os.getloadavg()[0]
        finally:
            git("worktree", "remove", "--force", ref_tree)
    rows, slower = table(new, old, args.tolerance)
    title = (f"## working tree ({head}{', uncommitted changes' if dirty else ''}) against {args.against} "
             f"({commit[:7]}): {args.size}, {args.runs} runs x {args.steps} steps a side, {args.threads} "
             f"thread(s), load {load_before:.2f} / {load_after:.2f}")
    print("\n".join([title, "", *rows, ""]))
    if slower:
        print(f"slower than {args.against} by more than {args.tolerance:.0%}: {', '.join(slower)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"against": args.against, "commit": commit, "head": head, "dirty": dirty,
                       "size": args.size, "threads": args.threads, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "load": [load_before, load_after], "tree": new, "ref": old, "table": rows,
                       "slower": slower}, f, indent=1)
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
