"""Small training helpers shared by the tiny T5 and the tiny classifier.

Everything is seeded and single-process, so that the same seed and the same
number of torch threads give bit-identical weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence


def n_params(model) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters())


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped into batches of similar length, batches in random order.

    Sorting by length before batching cuts padding (and so time) several fold
    for dialogues of 150-1000 characters; shuffling within a window first
    keeps the batches from being the same every epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model, lr: float, total: int, warmup: int):
    """AdamW with :func:`warmup_cosine`; returns ``(optimizer, scheduler)``."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    factor: Callable[[int], float] = lambda s: warmup_cosine(s, total, warmup)  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
