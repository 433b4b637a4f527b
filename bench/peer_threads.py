"""Run the peer's ``trl011_ppo.py`` unchanged, but on ``PEER_THREADS`` threads.

The peer hard-codes ``torch.set_num_threads(2)``. On a machine whose cores
are busy with other work, two OpenMP threads wait on each other and the
timings turn into noise (a tiny step took 15-25 s instead of 0.37 s here),
so ``bench/compare.py --threads 1`` compares both sides on one thread. This
shim replaces ``torch.set_num_threads`` before the script runs; nothing else
changes. Usage (with the peer's own virtualenv)::

    PEER_THREADS=1 $PEERBENCH_DIR/venv/bin/python bench/peer_threads.py PEER/trl011_ppo.py 10 --size tiny
"""

import os
import runpy
import sys

import torch

_threads = int(os.environ.get("PEER_THREADS", "1"))
_set = torch.set_num_threads
torch.set_num_threads = lambda _requested: _set(_threads)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
