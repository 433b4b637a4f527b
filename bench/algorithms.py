"""PPO, GRPO and RLOO side by side on the quickstart task, in one run of this script.

Each algorithm trains the shipped tiny T5 with the quickstart's rewards
(recipes/quickstart.yaml for PPO, recipes/quickstart-grpo.yaml for GRPO and,
with ``algorithm: rloo``, for RLOO), then ``rewardkit eval`` compares the
trained adapter with the starting policy on the held-out prompts with the
recipe's judges: the tiny hate classifier (the reward model itself) and
alt-profanity-check (independent), plus ROUGE-L against the references.

Two budgets:

- *equal completions*: every algorithm samples ``steps x 16`` completions
  (PPO: 16 prompts a step; GRPO/RLOO: 4 prompts x group of 4);
- *equal wall clock*: GRPO and RLOO get as many steps as fit in PPO's
  measured training time (from their own seconds per step).

Each run is its own process, so its peak RSS (``os.wait4``) is its own.
Usage (about 15 minutes on 2 cores)::

    OMP_NUM_THREADS=2 python bench/algorithms.py [--steps 100] [--out bench/results/algorithms.json] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"ppo": ROOT / "recipes" / "quickstart.yaml", "grpo": ROOT / "recipes" / "quickstart-grpo.yaml",
           "rloo": None}  # RLOO: quickstart-grpo.yaml with algorithm: rloo (see rloo_recipe)


def rloo_recipe(work: Path) -> Path:
    """quickstart-grpo.yaml as an RLOO recipe: ``algorithm: rloo``, without GRPO's scale_rewards."""
    text = RECIPES["grpo"].read_text().replace("algorithm: grpo", "algorithm: rloo")
    lines = [line for line in text.splitlines() if not line.strip().startswith("scale_rewards:")]
    path = work / "quickstart-rloo.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _child(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; returns ``(wall seconds, peak RSS in MiB)`` of that process alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def train_and_eval(name: str, steps: int, work: Path) -> dict:
    """Train ``name`` for ``steps`` steps and evaluate it; the table row."""
    recipe = RECIPES[name] or rloo_recipe(work)
    out = work / f"{name}-{steps}"
    sets = [a for s in [f"ppo.max_ppo_steps={steps}", "output.checkpoint_every=0"] for a in ("--set", s)]
    wall, rss = _child([sys.executable, "-m", "rewardkit", "run", str(recipe), "--output-dir", str(out),
                        "--no-progress", *sets])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ev = work / f"{name}-{steps}-eval"
    _child([sys.executable, "-m", "rewardkit", "eval", str(out), "--out", str(ev), "--no-progress", "--json"])
    summary = json.loads((ev / "eval.json").read_text())
    judges = summary["judges"]
    hate, prof = judges["p-hate"], judges["profanity"]
    rouge = summary["quality"]["rougeL"]
    train_s = sum(m["time/step_s"] for m in metrics)
    return {
        "algorithm": name, "steps": steps, "completions": steps * 16,
        "p_hate_before": hate["before"]["mean"], "p_hate_after": hate["after"]["mean"],
        "p_hate_change": hate["relative_change"],
        "profane_before": prof["before"]["mean"], "profane_after": prof["after"]["mean"],
        "rougeL_before": rouge["before"]["mean"], "rougeL_after": rouge["after"]["mean"],
        "train_s": train_s, "s_per_step": train_s / steps, "wall_s": wall, "peak_rss_mib": rss,
        "final_kl": metrics[-1]["kl"],
    }


def markdown(rows: list[dict]) -> str:
    head = ("| budget | algorithm | steps | completions | P(hate) before → after (change) | P(profane) "
            "before → after | ROUGE-L before → after | train s | s/step | peak RSS MiB |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        lines.append(f"| {r['budget']} | {r['algorithm']} | {r['steps']} | {r['completions']} | "
                     f"{r['p_hate_before']:.4f} → {r['p_hate_after']:.4f} ({r['p_hate_change']:+.0%}) | "
                     f"{r['profane_before']:.3f} → {r['profane_after']:.3f} | "
                     f"{r['rougeL_before']:.3f} → {r['rougeL_after']:.3f} | {r['train_s']:.0f} | "
                     f"{r['s_per_step']:.2f} | {r['peak_rss_mib']:.0f} |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "algorithms.json")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse rows already measured (OUT with suffix .rows.jsonl) instead of running them again")
    args = parser.parse_args()
    done_file = args.out.with_suffix(".rows.jsonl")
    done = {}
    if args.reuse and done_file.exists():
        done = {(r["algorithm"], r["steps"]): r for r in map(json.loads, done_file.read_text().splitlines())}
    elif done_file.exists():
        done_file.unlink()

    def row(budget: str, name: str, steps: int, work: Path) -> dict:
        measured = done.get((name, steps))
        if measured is None:
            measured = train_and_eval(name, steps, work)
            with open(done_file, "a") as f:
                f.write(json.dumps(measured) + "\n")
        print(json.dumps(measured), flush=True)
        return {"budget": budget, **measured}

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in RECIPES:
            rows.append(row("equal completions", name, args.steps, work))
        ppo_s = rows[0]["train_s"]
        for equal in rows[1:3]:
            steps = max(1, int(ppo_s / equal["s_per_step"]))
            if steps != equal["steps"]:
                rows.append(row("equal wall clock", equal["algorithm"], steps, work))
    args.out.write_text(json.dumps({"threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
