"""The math of the critic-free algorithms (GRPO, Dr. GRPO, RLOO) as small pure functions.

Shapes, as in :mod:`rewardkit.ppo.core`:

- ``(n,)``: one scalar per completion; completions of one prompt are
  consecutive, ``group_size`` of them (rows ``g * G .. g * G + G - 1`` are
  group ``g``), so ``n = prompts * G``.
- ``(n, resp_len)``: one value per response token, right-padded; ``mask`` is
  1 on real tokens.

Padding never affects a result (values are selected with ``torch.where``
before arithmetic), and nothing here knows which reward produced a score.

References:
    [GRPO]    Shao et al. (2024), "DeepSeekMath: Pushing the Limits of
              Mathematical Reasoning in Open Language Models",
              arXiv:2402.03300 (group-relative advantages, eq. 3 and 4 of
              section 4.1; KL in the loss with the k3 estimator).
    [DrGRPO]  Liu et al. (2025), "Understanding R1-Zero-Like Training: A
              Critical Perspective", arXiv:2503.20783 (no std scaling, no
              per-sequence length normalisation).
    [DAPO]    Yu et al. (2025), "DAPO: An Open-Source LLM Reinforcement
              Learning System at Scale", arXiv:2503.14476 (token-level loss,
              separate low/high clip ranges, "clip-higher").
    [RLOO]    Ahmadian et al. (2024), "Back to Basics: Revisiting
              REINFORCE-Style Optimization for Learning from Human Feedback
              in LLMs", arXiv:2402.14740 (leave-one-out baseline).
    [k3]      Schulman (2020), "Approximating KL Divergence",
              http://joschu.net/blog/kl-approx.html.
"""

from __future__ import annotations

import torch

#: How :func:`group_advantages` scales the centred rewards.
SCALE_REWARDS = ("group", "batch", "none")

#: How :func:`aggregate` turns per-token losses into one loss (named as in the papers).
LOSS_TYPES = ("grpo", "dapo", "dr_grpo")

#: Added to a standard deviation before dividing, so a group whose rewards are all equal gives zeros, not NaN.
STD_EPS = 1e-4


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(n,)`` -> ``(n / G, G)``; ValueError when ``n`` is not a multiple of ``G``."""
    if scores.dim() != 1 or scores.numel() % group_size:
        raise ValueError(f"scores of shape {tuple(scores.shape)} do not split into groups of {group_size}")
    return scores.view(-1, group_size)


def _valid_groups(scores: torch.Tensor, valid: torch.Tensor | None, group_size: int):
    """``(rewards, 0/1 mask, count of valid members)`` per group; ``valid=None`` means every sample has a score."""
    g = _groups(scores, group_size)
    m = torch.ones_like(g) if valid is None else valid.to(scores.dtype).view(-1, group_size)
    return g, m, m.sum(dim=1, keepdim=True)


def group_advantages(scores: torch.Tensor, group_size: int, scale: str = "group",
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """GRPO's advantage of each completion: its reward minus its group's mean, optionally scaled.

    ``A_i = (r_i - mean(r_group)) / (std(r_group) + eps)`` ([GRPO] eq. 4 of
    its outcome supervision), with ``scale``:

    - ``"group"``: divide by the group's standard deviation ([GRPO]);
    - ``"batch"``: divide by the standard deviation of all rewards of the batch;
    - ``"none"``: do not divide ([DrGRPO], which shows the division
      up-weights groups that are nearly all right or all wrong).

    The standard deviation is the sample one (``n - 1``), as in the paper's
    implementation; ``eps`` is :data:`STD_EPS`.

    :param scores: ``(n,)`` rewards, groups consecutive.
    :param valid: ``(n,)`` bool, False for a sample without a score: it is
        left out of its group's mean and std and gets advantage 0.
    :returns: ``(n,)`` advantages.
    """
    if scale not in SCALE_REWARDS:
        raise ValueError(f"scale must be one of {SCALE_REWARDS}, not {scale!r}")
    g, m, count = _valid_groups(scores, valid, group_size)
    centred = (g - (g * m).sum(dim=1, keepdim=True) / count.clamp(min=1)) * m
    if scale == "group":
        std = (centred.square().sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
        centred = centred / (std + STD_EPS)
    elif scale == "batch":
        scored = scores[m.reshape(-1) > 0]
        centred = centred / (scored.std() + STD_EPS) if scored.numel() > 1 else centred
    return centred.reshape(-1)


def rloo_advantages(scores: torch.Tensor, group_size: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """RLOO's advantage: each reward minus the mean of the *other* rewards of its group ([RLOO] eq. 7).

    ``A_i = r_i - (sum_j r_j - r_i) / (G - 1)``, which equals
    ``G / (G - 1) * (r_i - mean(r_group))``: an unbiased baseline, since it
    does not depend on sample ``i`` itself.

    :param scores: ``(n,)`` rewards, groups consecutive; ``G >= 2``.
    :param valid: ``(n,)`` bool, False for a sample without a score: it is
        nobody's baseline and gets advantage 0, as does a sample with no
        other valid member in its group.
    :returns: ``(n,)`` advantages.
    """
    if group_size < 2:
        raise ValueError("RLOO needs at least two completions per prompt (group_size >= 2)")
    g, m, count = _valid_groups(scores, valid, group_size)
    others_n = count - m
    others = ((g * m).sum(dim=1, keepdim=True) - g * m) / others_n.clamp(min=1)
    return torch.where((m > 0) & (others_n > 0), g - others, torch.zeros_like(g)).reshape(-1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy ([k3]; used in [GRPO] eq. 4).

    ``k3 = exp(ref - logp) - (ref - logp) - 1``: unbiased, never negative,
    lower variance than ``logp - ref``.

    :returns: ``(n, resp_len)``, 0 on padding.
    """
    keep = mask.bool()
    d = torch.where(keep, ref_logprobs - logprobs, torch.zeros_like(logprobs))
    return torch.where(keep, torch.exp(d) - d - 1.0, torch.zeros_like(logprobs))


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(n,)`` KL of each sequence to the reference, ``sum_t logp - ref`` (the k1 estimator), for the reward."""
    keep = mask.bool()
    return torch.where(keep, logprobs - ref_logprobs, torch.zeros_like(logprobs)).sum(dim=1)


def clipped_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, epsilon_low: float, epsilon_high: float
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token clipped policy-gradient loss with separate clip ranges ([GRPO] eq. 3; [DAPO] eq. 10).

    ``ratio = exp(logp - logp_old)``;
    ``loss_t = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)``.

    :param advantages: ``(n,)`` one per sequence (broadcast over its tokens)
        or ``(n, resp_len)``.
    :returns: ``(per-token loss (n, resp_len), stats)``: 0 on padding; stats
        (detached, token means): ``"clipfrac"`` (tokens whose clipped term
        is the smaller, so they give no gradient) and ``"approx_kl"``
        (``0.5 * (logp - logp_old)^2``, as PPO logs).
    """
    keep = mask.bool()
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    zero = torch.zeros_like(logprobs)
    log_ratio = torch.where(keep, logprobs - old_logprobs, zero)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high) * advantages
    per_token = torch.where(keep, -torch.minimum(unclipped, clipped), zero)
    with torch.no_grad():
        denom = mask.sum().clamp(min=1)
        stats = {"clipfrac": torch.where(keep, (clipped < unclipped).float(), 0.0).sum() / denom,
                 "approx_kl": torch.where(keep, 0.5 * log_ratio.square(), 0.0).sum() / denom}
    return per_token, stats


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, *, rows: int, tokens: float,
              max_length: int) -> torch.Tensor:
    """One loss from per-token losses, as the papers aggregate them.

    The normalisers are those of the whole mini-batch, so the losses of its
    pieces (micro-batches) add up to exactly the mini-batch's loss:

    - ``"grpo"``: mean over each sequence's tokens, then mean over the
      sequences ([GRPO] eq. 3): ``sum_i (sum_t l_it / |o_i|) / rows``;
    - ``"dapo"``: mean over every token of the mini-batch ([DAPO] eq. 8):
      ``sum_it l_it / tokens``; long sequences count in proportion to length;
    - ``"dr_grpo"``: sum over tokens divided by a constant, ``rows *
      max_length`` ([DrGRPO]), so no sequence's length rescales its gradient.

    :param per_token: ``(m, resp_len)`` (0 on padding), a piece of the mini-batch.
    :param rows: sequences in the whole mini-batch.
    :param tokens: real tokens in the whole mini-batch.
    :param max_length: the longest response the run allows (``max_new_tokens``).
    :returns: 0-dim tensor.
    """
    if loss_type == "grpo":
        lengths = mask.sum(dim=1).clamp(min=1)
        return (per_token.sum(dim=1) / lengths).sum() / rows
    if loss_type == "dapo":
        return per_token.sum() / max(tokens, 1.0)
    if loss_type == "dr_grpo":
        return per_token.sum() / (rows * max_length)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {loss_type!r}")


def all_equal_fraction(scores: torch.Tensor, group_size: int, valid: torch.Tensor | None = None) -> float:
    """Share of groups whose (valid) rewards are all equal: their advantages are 0 and they teach nothing."""
    g, m, _ = _valid_groups(scores, valid, group_size)
    m = m > 0
    hi = torch.where(m, g, torch.full_like(g, -torch.inf)).max(dim=1).values
    lo = torch.where(m, g, torch.full_like(g, torch.inf)).min(dim=1).values
    return float(((hi <= lo) | ~m.any(dim=1)).float().mean())
