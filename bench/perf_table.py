#!/usr/bin/env python3
"""README's Performance table, generated from the newest side-by-side results, never typed by hand.

Reads ``bench/results/compare_2threads.json`` (written by ``python
bench/compare.py --json ...``), computes each size's medians and ratios
exactly as ``compare.py`` prints them, and renders the table that stands in
README.md between the ``perf-table`` markers. ``tests/test_readme.py``
checks that README's table is this rendering of the committed results, so
a number in README is always one that was measured. Usage::

    python bench/perf_table.py                  # print the table
    python bench/perf_table.py --write-readme   # replace README's table with it
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "compare_2threads.json"
README = ROOT / "README.md"
START, END = "<!-- perf-table:start (bench/perf_table.py --write-readme) -->", "<!-- perf-table:end -->"
LABELS = {"tiny": "tiny (0.4M)", "small": "small (flan-t5-small shapes)", "base": "base (flan-t5-base shapes)"}
PHASES = {"step": "median_step_s", "generate": "median_generate_s", "score": "median_reward_s",
          "update": "median_ppo_update_s", "rss": "peak_rss_mib"}


def summary(raw: dict) -> list[dict]:
    """Per size: runs, each phase's median (over runs of the per-run medians) on both sides, and the ratios."""
    rows = []
    for size in ("tiny", "small", "base"):
        sides = raw["compare"].get(size)
        if not sides:
            continue
        rk, peer = sides["rewardkit"], sides["peer"]
        row = {"size": size, "runs": min(len(rk), len(peer)), "steps": rk[0]["steps_timed"]}
        for name, key in PHASES.items():
            a, b = statistics.median(r[key] for r in rk), statistics.median(r[key] for r in peer)
            row[name] = (a, b, a / b)
        rows.append(row)
    return rows


def render(raw: dict) -> str:
    """The markdown table (with the markers) for ``raw``, a ``compare.py --json`` result."""
    lines = [START,
             "| size | runs x steps | rewardkit s/step | TRL 0.11 s/step | step ratio | generate | score | update "
             "| peak RSS (rewardkit / TRL) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary(raw):
        a, b, ratio = row["step"]
        ra, rb, rr = row["rss"]
        lines.append(f"| {LABELS[row['size']]} | {row['runs']} x {row['steps']} | {a:.3g} | {b:.3g} | **{ratio:.2f}** "
                     f"| {row['generate'][2]:.2f} | {row['score'][2]:.2f} | **{row['update'][2]:.2f}** "
                     f"| {ra:,.0f} / {rb:,.0f} MiB ({rr:.2f}) |")
    lines.append("")
    lines.append(f"Measured {raw.get('started', '?')} to {raw.get('finished', '?')} on a {raw.get('nproc', '?')}-CPU "
                 f"machine, {raw['compare'].get('threads', 2)} torch threads a side; ratios are rewardkit / TRL.")
    lines.append(END)
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The block between the markers in README's text (markers included)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0:
        raise ValueError(f"README.md has no {START} ... {END} block")
    return text[start:end + len(END)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--write-readme", action="store_true", help="replace README.md's table with the rendering")
    args = ap.parse_args(argv)
    with open(args.results) as f:
        table = render(json.load(f))
    if not args.write_readme:
        print(table)
        return 0
    text = README.read_text()
    README.write_text(text.replace(readme_table(text), table))
    print(f"README.md: Performance table written from {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
