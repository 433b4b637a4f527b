#!/usr/bin/env python3
"""Why no torch work may run in a long-lived worker thread: the OpenMP spin cliff, measured.

A torch op run from a second thread gives that thread an OpenMP team of its
own. While that thread lives, the process has more OpenMP threads than
cores, and libgomp (PyTorch's OpenMP on Linux) stops spinning between
parallel regions in every team: each small op then pays a futex wake-up.
This script times the same small matmul + softmax loop in the main thread
before a worker thread ran torch, while it is alive, and after it exited,
and prints each time against the first. Usage::

    python bench/omp_threads.py [--threads 2] [--iters 3000]

It is the cause of the 2x slower PPO step after rewards began to run in a
thread pool (169493d), fixed by scoring a step's first synchronous reward in
the caller's thread and shutting the pool down after each call
(``rewardkit/scoring.py``, ``bench/results/omp_threads.md``).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3000)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    a, w = torch.randn(16, 256), torch.randn(256, 1024)

    def timed() -> float:
        for _ in range(200):  # warm-up
            a @ w
        start = time.perf_counter()
        for _ in range(args.iters):
            (a @ w).softmax(-1)
        return time.perf_counter() - start

    def torch_work():
        torch.randn(64, 512) @ torch.randn(512, 512)

    rows = [("main thread, no other thread has run torch", timed())]
    pool = ThreadPoolExecutor(1)
    pool.submit(torch_work).result()
    rows.append(("a pool worker that ran torch is alive (idle)", timed()))
    pool.shutdown(wait=True)
    rows.append(("that worker has exited", timed()))
    thread = threading.Thread(target=torch_work)
    thread.start()
    thread.join()
    rows.append(("after a short-lived thread ran torch and exited", timed()))
    base = rows[0][1]
    print(f"| {args.iters} x (16x256 @ 256x1024, softmax), {args.threads} torch threads | s | x first |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
