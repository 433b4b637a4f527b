"""The optimizer every algorithm steps: AdamW over the trainable (LoRA and value-head) parameters.

One place, so ``rewardkit run`` and the benchmarks build the same one.
"""

from __future__ import annotations

import torch


def build_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where torch has it for these parameters' device and dtype.

    A LoRA adapter is many small tensors (two per adapted projection), and
    torch's default AdamW on CPU updates them one at a time: at the
    benchmark's tiny size that was about 2 ms of Python and small ops per
    optimizer step; the fused kernel takes about 0.4 ms (same update to
    float rounding). Where the fused kernel does not exist (an older torch,
    another device or dtype) this is the default AdamW.
    """
    params = list(params)
    devices = {p.device.type for p in params}
    if len(devices) == 1 and devices <= {"cpu", "cuda"}:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this torch, device or dtype
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
