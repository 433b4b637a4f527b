"""Step-0 KL, approx_kl and clipfrac of the quickstart in float32 and in bf16.

At step 0 the trained adapter equals the reference (LoRA B starts at zero) and
the ratio is evaluated before any optimizer step when the whole batch is one
mini-batch of one epoch, so all three numbers measure rounding only: they
should be ~0 in every precision. Two settings are reported:

- ``one update``: ``mini_batch_size = batch_size``, ``ppo_epochs: 1``, the
  numerics alone;
- ``quickstart``: the recipe as shipped (4 epochs x 4 mini-batches), where
  approx_kl and clipfrac also include the movement of the weights within the
  step, as in any PPO step.

Precisions: float32; bf16 autocast (``mixed_precision: bf16``, float32
weights); bf16 weights (``model.dtype: bfloat16``), each with the old logprobs
from the sampling pass and, as rewardkit does in reduced precision, from a
teacher-forced pass. Runs on CPU in about a minute::

    OMP_NUM_THREADS=2 python bench/precision_step0.py [--out bench/results/precision_step0.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "quickstart.yaml"
KEYS = ("kl", "policy/approx_kl", "policy/clipfrac")
PRECISIONS = {"float32": [], "bf16 autocast": ["mixed_precision=bf16"], "bf16 weights": ["model.dtype=bfloat16"]}
SETTINGS = {"one update": ["ppo.mini_batch_size=16", "ppo.ppo_epochs=1"], "quickstart": []}


def step0(overrides: list[str], recompute_old: bool | None) -> dict:
    """Run the quickstart for one step with ``overrides``; returns step 0's KEYS."""
    from rewardkit.recipe import load_recipe
    from rewardkit.runner import Runner

    loaded = load_recipe(RECIPE, ["ppo.max_ppo_steps=1", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(loaded, run_dir=Path(tmp) / "run", progress=False)
        if recompute_old is not None:
            runner.trainer.recompute_old = recompute_old
        runner.run()
        first = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[0])
    return {k: first[k] for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    from rewardkit.quiet import quiet_libraries

    quiet_libraries()
    rows = []
    for setting, extra in SETTINGS.items():
        for precision, sets in PRECISIONS.items():
            for old in ((None,) if precision == "float32" else (False, True)):
                label = {None: "sampling pass", False: "sampling pass", True: "teacher-forced (default)"}[old]
                row = {"setting": setting, "precision": precision, "old logprobs": label,
                       **step0([*sets, *extra], old)}
                rows.append(row)
                print(f"{setting:10s}  {precision:14s}  {label:25s}  "
                      + "  ".join(f"{k}={row[k]:+.3e}" for k in KEYS), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
