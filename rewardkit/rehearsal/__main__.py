"""``python -m rewardkit.rehearsal build --out DIR``: see :mod:`rewardkit.rehearsal.build`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    """Parse the command line and build the cache."""
    parser = argparse.ArgumentParser(prog="python -m rewardkit.rehearsal",
                                     description="Build an offline Hugging Face cache of stand-ins for the "
                                                 "seed's models and dataset, under their real ids.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the cache (an HF_HOME) into --out")
    b.add_argument("--out", type=Path, required=True, help="directory to become HF_HOME (created)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1, help="torch threads (weights differ by thread count)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} is not empty; choose a new directory", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    from rewardkit.rehearsal.build import build

    manifest = build(out, args.seed, threads=args.threads)
    print(f"built in {manifest['seconds']}s. Use it with:\n"
          f"  export HF_HOME={out} HF_HUB_OFFLINE=1\n"
          f"  rewardkit run recipes/detox.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
