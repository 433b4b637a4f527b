"""GRPO and RLOO: critic-free updates from groups of completions of the same prompt.

Each prompt is encoded once and ``group_size`` completions are decoded from
its encoder output (:func:`rewardkit.ppo.rollout.sample` with ``group_size``).
A completion's advantage is its reward against its group's (GRPO: minus the
group mean, optionally scaled; RLOO: minus the mean of the others), the same
for each of its tokens. No value head, no value loss, no GAE.

The update, ``num_iterations`` passes over the batch in shuffled
mini-batches, minimises the clipped surrogate with separate low/high clip
ranges, plus ``beta`` times the k3 estimate of KL(policy || reference) when
``kl: loss``. With ``kl: reward`` the sequence KL is subtracted from each
reward (times ``beta``) before the advantages, as PPO does. ``beta: 0`` runs
no reference pass at all. The first pass's old logprobs are those recorded
while sampling (or, in bf16/fp16, of a teacher-forced pass at the same
weights), so its ratio is 1.

The formulas are in :mod:`rewardkit.algorithms.group`, with the papers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from rewardkit.algorithms import group
from rewardkit.algorithms.update import Updater
from rewardkit.ppo import core
from rewardkit.ppo.rollout import Rollout, Sampling


@dataclass(frozen=True)
class GroupConfig:
    """The settings of GRPO and RLOO (the runner fills them from the recipe's ``grpo:`` section).

    :param algorithm: ``"grpo"`` or ``"rloo"`` (the baseline).
    :param group_size: completions per prompt, ``G``.
    :param scale_rewards: GRPO's scaling of the centred rewards (``group``,
        ``batch`` or ``none``, Dr. GRPO's choice); RLOO does not scale.
    :param beta: KL coefficient; 0 disables the KL term and the reference pass.
    :param kl: ``"loss"`` (k3 per token, in the loss) or ``"reward"`` (sequence KL subtracted from the reward).
    :param loss_type: aggregation, see :func:`rewardkit.algorithms.group.aggregate`.
    :param epsilon_low: the ratio's lower clip, ``1 - epsilon_low``.
    :param epsilon_high: the ratio's upper clip, ``1 + epsilon_high``.
    :param num_iterations: passes over each batch.
    :param max_length: the longest response allowed (``dr_grpo``'s constant).
    """

    algorithm: str = "grpo"
    group_size: int = 4
    scale_rewards: str = "group"
    beta: float = 0.04
    kl: str = "loss"
    loss_type: str = "grpo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    num_iterations: int = 1
    mini_batch_size: int = 4
    max_grad_norm: float | None = 1.0
    max_length: int = 64


class GroupTrainer(Updater):
    """One GRPO or RLOO update from a scored group rollout.

    :param cfg: a :class:`GroupConfig`.

    The other parameters are :class:`~rewardkit.algorithms.update.Updater`'s.
    """

    def __init__(self, policy, unwrapped, optimizer, scheduler, accelerator, cfg: GroupConfig,
                 sampling: Sampling, micro_batch_size: int | None = None, recompute_old: bool | None = None):
        super().__init__(policy, unwrapped, optimizer, scheduler, accelerator, sampling,
                         mini_batch_size=cfg.mini_batch_size, max_grad_norm=cfg.max_grad_norm,
                         micro_batch_size=micro_batch_size, recompute_old=recompute_old, with_values=False)
        self.cfg = cfg

    def advantages(self, scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``(n,)`` advantages of ``(n,)`` rewards, groups consecutive; 0 where ``valid`` is False."""
        cfg = self.cfg
        if cfg.algorithm == "rloo":
            return group.rloo_advantages(scores, cfg.group_size, valid)
        return group.group_advantages(scores, cfg.group_size, cfg.scale_rewards, valid)

    def step(self, rollout: Rollout, scores: torch.Tensor, generator: torch.Generator | None = None,
             valid: torch.Tensor | None = None) -> dict:
        """Run one update; returns the step's statistics (floats).

        :param valid: ``(n,)`` bool, False for a completion some reward could
            not score: it is left out of its group's baseline and its tokens
            are masked out of the loss (no gradient, no made-up reward).
        """
        cfg = self.cfg
        mask = rollout.mask
        t0 = time.perf_counter()
        ref = self.reference_logprobs(rollout) if cfg.beta > 0 else None
        t_ref = time.perf_counter() - t0
        if self.recompute_old:
            rollout = self.old_logprobs(rollout)
        seq_kl = group.sequence_kl(rollout.logprobs, ref, mask) if ref is not None else torch.zeros_like(scores)
        rewards = scores - cfg.beta * seq_kl if cfg.kl == "reward" else scores
        advantages = self.advantages(rewards, valid)
        if valid is not None:
            rollout = replace(rollout, mask=mask * valid[:, None].to(mask.dtype))
        checked = {"scores": scores, "old logprobs": rollout.logprobs, "advantages": advantages[:, None]}
        if ref is not None:
            checked["reference logprobs"] = ref
        self.check_finite(checked, mask if ref is not None else None, "before the update", weights_changed=False)

        def update(part, rows, where, weights_changed):
            part_ref = ref[rows, :part.response_ids.size(1)] if ref is not None else None
            return self._minibatch(part, advantages[rows], part_ref, where, weights_changed)

        out = self.run_passes(rollout, cfg.num_iterations, generator, update, label="iteration")
        mean_kl = float(self.accelerator.reduce(seq_kl.mean().detach(), reduction="mean"))
        out.update({
            "kl": mean_kl,
            "kl_coef": cfg.beta,
            "advantages_mean": float(advantages.mean()),
            "advantages_abs_mean": float(advantages.abs().mean()),
            "groups/all_equal_frac": group.all_equal_fraction(scores, cfg.group_size, valid),
            "groups/reward_std_mean": float(scores.view(-1, cfg.group_size).std(dim=1).mean()),
            "lr": self.scheduler.get_last_lr()[0],
            "time/ref_s": t_ref,
        })
        return out

    def _minibatch(self, part: Rollout, advantages: torch.Tensor, ref: torch.Tensor | None, where: str,
                   weights_changed: bool) -> dict[str, torch.Tensor]:
        """The clipped surrogate (+ ``beta`` k3) of one mini-batch, aggregated over the whole mini-batch."""
        cfg = self.cfg
        rows_total = max(int((part.mask.sum(dim=1) > 0).sum()), 1)  # rows masked out (unscored) do not count
        tokens_total = float(part.mask.sum())

        def piece_loss(piece, rows, logprobs, values):
            width = piece.response_ids.size(1)
            adv = advantages if rows is None else advantages[rows]
            per_token, pg_stats = group.clipped_surrogate(logprobs, piece.logprobs, adv, piece.mask,
                                                          cfg.epsilon_low, cfg.epsilon_high)
            agg = dict(rows=rows_total, tokens=tokens_total, max_length=cfg.max_length)
            pg_loss = group.aggregate(per_token, piece.mask, cfg.loss_type, **agg)
            total = pg_loss
            weight = piece.mask.sum() / max(tokens_total, 1.0)  # token share, for the token-mean statistics
            stats = {"loss/policy": pg_loss.detach(),
                     "policy/clipfrac": pg_stats["clipfrac"] * weight,
                     "policy/approx_kl": pg_stats["approx_kl"] * weight}
            if ref is not None and cfg.kl == "loss":
                piece_ref = ref if rows is None else ref[rows, :width]
                kl = group.k3_kl(logprobs, piece_ref, piece.mask)
                kl_loss = group.aggregate(kl, piece.mask, cfg.loss_type, **agg)
                total = pg_loss + cfg.beta * kl_loss
                stats["loss/kl"] = kl_loss.detach()
                stats["policy/k3_kl"] = core.masked_mean(kl, piece.mask).detach() * weight
            stats["loss/total"] = total.detach()
            return total, stats

        return self.optimize(part, piece_loss, where, weights_changed)
