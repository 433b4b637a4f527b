"""The reward-hacking demo, both recipes, several seeds, in one run of this script.

recipes/hacking-demo.yaml trains the shipped tiny T5 on the tiny hate-speech
classifier alone (learning rate 1e-3, weak KL, EOS allowed from the first
token); recipes/hacking-demo-composed.yaml is the same run with the
toxicity term capped and length and ROUGE-L terms added. For each seed, both
recipes are trained with ``--set seed=S`` and evaluated with ``rewardkit
eval`` (96 held-out prompts; base = the starting policy). The table gives
the reward's classifier, the independent judge, ROUGE-L against the
references, words per summary, the share of empty summaries, and the first
step at which the run warned that half its completions were empty or under
2 words (the runner's collapse warning, read back from ``response_short_frac``
in metrics.jsonl).

Usage (about 12 minutes on 2 cores for 3 seeds)::

    OMP_NUM_THREADS=2 python bench/hacking_demo.py [--seeds 42 7 8] [--out bench/results/hacking_demo.json]
        [--set ppo.learning_rate=3e-3 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from algorithms import _child  # noqa: E402  (the same child-process runner as the algorithms bench)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"toxicity alone": ROOT / "recipes" / "hacking-demo.yaml",
           "composed": ROOT / "recipes" / "hacking-demo-composed.yaml"}
#: the runner warns when at least this share of a step's completions is empty or under 2 words
COLLAPSE_WARN = 0.5


def train_and_eval(label: str, seed: int, work: Path, sets: list[str]) -> dict:
    """Train one recipe at one seed and evaluate it; the table row."""
    out = work / f"{RECIPES[label].stem}-{seed}"
    overrides = [a for s in [f"seed={seed}", *sets] for a in ("--set", s)]
    wall, _ = _child([sys.executable, "-m", "rewardkit", "run", str(RECIPES[label]), "--output-dir", str(out),
                      "--no-progress", *overrides])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    _child([sys.executable, "-m", "rewardkit", "eval", str(out), "--no-progress", "--json"])
    summary = json.loads((out / "eval.json").read_text())
    judges, quality = summary["judges"], summary["quality"]
    warned = [m["step"] for m in metrics if m["response_short_frac"] >= COLLAPSE_WARN]
    pair = lambda d: (d["before"]["mean"], d["after"]["mean"])  # noqa: E731
    return {
        "recipe": label, "seed": seed, "steps": len(metrics), "train_wall_s": wall,
        "toxicity": pair(summary["rewards"]["toxicity"]), "p_hate": pair(judges["p-hate"]),
        "profane": pair(judges["profanity"]), "rougeL": pair(quality["rougeL"]),
        "words": pair(quality["words"]), "empty": pair(quality["empty"]),
        "first_warning_step": warned[0] if warned else None,
        "last_sample": json.loads((out / "samples.jsonl").read_text().splitlines()[-1])["completion"],
    }


def markdown(rows: list[dict], sets: list[str]) -> str:
    """Per-seed rows, then the mean over seeds of each recipe."""
    head = (f"Settings: the recipes as shipped{', with ' + ', '.join(sets) if sets else ''}.\n\n"
            "| recipe | seed | toxicity reward (raw logit) | P(hate) | P(profane) | ROUGE-L | words | empty | "
            "first collapse warning |\n|---|---|---|---|---|---|---|---|---|\n")
    base = rows[0]
    lines = [f"| base (starting policy) | - | {base['toxicity'][0]:.2f} | {base['p_hate'][0]:.3f} | "
             f"{base['profane'][0]:.3f} | {base['rougeL'][0]:.3f} | {base['words'][0]:.1f} | "
             f"{base['empty'][0]:.0%} | - |"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['toxicity'][1]:.2f} | {r['p_hate'][1]:.3f} | "
                     f"{r['profane'][1]:.3f} | {r['rougeL'][1]:.3f} | {r['words'][1]:.1f} | {r['empty'][1]:.0%} | "
                     f"{'step ' + str(r['first_warning_step']) if r['first_warning_step'] is not None else 'none'} |")
    for label in RECIPES:
        mine = [r for r in rows if r["recipe"] == label]
        mean = lambda key: statistics.fmean(r[key][1] for r in mine)  # noqa: E731
        warned = sum(r["first_warning_step"] is not None for r in mine)
        lines.append(f"| **{label}, mean of {len(mine)}** | | {mean('toxicity'):.2f} | {mean('p_hate'):.3f} | "
                     f"{mean('profane'):.3f} | **{mean('rougeL'):.3f}** | {mean('words'):.1f} | "
                     f"{mean('empty'):.0%} | {warned} of {len(mine)} runs warned |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 8])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a value of both recipes (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hacking_demo.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for label in RECIPES:
                rows.append(train_and_eval(label, seed, Path(tmp), args.sets))
                print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows, args.sets)
    args.out.write_text(json.dumps({"threads": os.environ.get("OMP_NUM_THREADS"), "sets": args.sets,
                                    "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
