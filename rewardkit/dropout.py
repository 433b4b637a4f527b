"""Dropout that draws only the dropped positions: the same distribution, a twentieth of the random numbers.

``nn.Dropout`` on CPU draws one random number per element, and that draw is
most of its cost: in the PPO update of a FLAN-T5-small-shaped policy, LoRA's
dropout (p 0.05 on the input of every adapted projection) took 7% of the
update, more than all the norms and the GELUs together (``bench/results/``).
At small ``p`` almost every element is kept, so :class:`SparseDropout`
draws the *gaps* between dropped elements instead: in a row of independent
Bernoulli(p) trials the gaps between successes are independent geometric
variables, so drawing ``N * p`` of them (one uniform number each) gives a
mask with exactly ``nn.Dropout``'s distribution (every element dropped
independently with probability ``p``, the kept ones scaled by ``1 / (1 - p)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Above this ``p`` (or off the CPU, where the fused kernel is cheap) :class:`SparseDropout` is ``nn.Dropout``.
SPARSE_MAX_P = 0.2


def dropped_positions(n: int, p: float, *, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The positions, among ``n`` independent Bernoulli(``p``) trials, that came up 1, in increasing order.

    Gaps between successive successes (and from the start to the first) are
    geometric: ``P(gap = g) = (1 - p) ** (g - 1) * p``, drawn by inversion as
    ``floor(log(U) / log(1 - p)) + 1`` with ``U`` uniform on ``(0, 1]``.
    """
    if n <= 0 or p <= 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    log_keep = math.log1p(-p)
    parts: list[torch.Tensor] = []
    start = -1  # position of the last success so far
    while True:
        expected = (n - 1 - start) * p
        k = int(expected + 6 * math.sqrt(expected) + 16)  # almost always enough at once
        u = 1.0 - torch.rand(k, dtype=torch.float64, device=device, generator=generator)
        gaps = torch.floor(torch.log(u) / log_keep).long() + 1
        positions = start + gaps.cumsum(0)
        inside = positions[positions < n]
        parts.append(inside)
        if inside.numel() < positions.numel():  # the last draw went past the end: done
            return torch.cat(parts) if len(parts) > 1 else inside
        start = int(positions[-1])


class _DropPositions(torch.autograd.Function):
    """``x * scale`` with the elements at ``positions`` (flat indices) zeroed; backward does the same to the
    gradient. Only the positions are kept for backward (a twentieth of the elements at p 0.05, as int64),
    not a full-size mask: ``nn.Dropout`` keeps a 1-byte mask per element, a float mask would keep 4."""

    @staticmethod
    def forward(ctx, x, positions, scale):
        out = (x * scale).contiguous()
        out.view(-1)[positions] = 0.0
        ctx.save_for_backward(positions)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        (positions,) = ctx.saved_tensors
        grad = (grad * ctx.scale).contiguous()
        grad.view(-1)[positions] = 0.0
        return grad, None, None


class SparseDropout(nn.Dropout):
    """``nn.Dropout`` that, on CPU at ``p <= SPARSE_MAX_P``, draws only the dropped positions.

    Same distribution as ``nn.Dropout`` (see the module docstring), same
    ``p``, ``train()``/``eval()`` behaviour and state dict (none); a
    different random stream, so not the same mask for the same seed.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each element zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)``."""
        if not self.training or self.p == 0:
            return x
        if self.p > SPARSE_MAX_P or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        return _DropPositions.apply(x, dropped_positions(x.numel(), self.p, device=x.device), 1.0 / (1.0 - self.p))
