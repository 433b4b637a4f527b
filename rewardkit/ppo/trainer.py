"""One PPO update from a scored rollout.

The trainer consumes scores; it never knows which reward plugin produced
them. Phases, in order: reference logprobs (the starting policy), in reduced
precision also the old logprobs again (see :class:`PPOTrainer`), KL-shaped
per-token rewards, GAE and advantage whitening, then ``ppo_epochs`` passes of
clipped policy and value losses over shuffled mini-batches.

Nothing non-finite reaches ``optimizer.step()``: the step's inputs (scores,
old and reference logprobs, KL, advantages, returns) are checked before the
first update, and each mini-batch's loss and gradient norm before its
optimizer step, with the verdict shared by every process so that all stop
together. A failed check raises :class:`~rewardkit.errors.NonFiniteError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from rewardkit.algorithms.update import Updater
from rewardkit.ppo import core
from rewardkit.ppo.rollout import Rollout, Sampling


@dataclass(frozen=True)
class PPOConfig:
    """PPO's own settings (the runner fills them from the recipe's ``ppo:`` section)."""

    mini_batch_size: int = 4
    ppo_epochs: int = 1
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float | None = 1.0
    whiten_advantages: bool = True

    @classmethod
    def of(cls, section) -> "PPOConfig":
        """The config of any object with these attributes (the recipe's ``ppo:`` section, say)."""
        return cls(**{name: getattr(section, name) for name in cls.__dataclass_fields__})


@dataclass
class _Slice:
    """A mini-batch view of a rollout plus its advantages and returns."""

    rollout: Rollout
    advantages: torch.Tensor
    returns: torch.Tensor


class PPOTrainer(Updater):
    """Clipped PPO with a KL-shaped reward (Ziegler et al. 2019; Stiennon et al. 2020).

    :param cfg: a :class:`PPOConfig` (or anything with its attributes).
    :param kl_ctl: an adaptive or fixed KL controller.

    The other parameters are :class:`~rewardkit.algorithms.update.Updater`'s.
    """

    def __init__(self, policy, unwrapped, optimizer, scheduler, accelerator, cfg,
                 sampling: Sampling, kl_ctl, micro_batch_size: int | None = None, recompute_old: bool | None = None):
        cfg = cfg if isinstance(cfg, PPOConfig) else PPOConfig.of(cfg)
        super().__init__(policy, unwrapped, optimizer, scheduler, accelerator, sampling,
                         mini_batch_size=cfg.mini_batch_size, max_grad_norm=cfg.max_grad_norm,
                         micro_batch_size=micro_batch_size, recompute_old=recompute_old, with_values=True)
        self.cfg, self.kl_ctl = cfg, kl_ctl

    def step(self, rollout: Rollout, scores: torch.Tensor, generator: torch.Generator | None = None,
             valid: torch.Tensor | None = None) -> dict:
        """Run one PPO update; returns the step's statistics (floats).

        :param valid: ``(B,)`` bool, False for a sample some reward could not
            score: its score is a placeholder, so its tokens are masked out of
            the advantage whitening and of the losses (no gradient).
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        ref_logprobs = self.reference_logprobs(rollout)
        t_ref = time.perf_counter() - t0
        if self.recompute_old:
            rollout = self.old_logprobs(rollout)
        mask = rollout.mask
        kl_coef = self.kl_ctl.value
        rewards, kl = core.shape_rewards(scores, rollout.logprobs, ref_logprobs, mask, kl_coef)
        advantages, returns = core.compute_gae(rewards, rollout.values, mask, cfg.gamma, cfg.lam)
        if valid is not None:  # from here on, the unscored samples' tokens count nowhere
            mask = mask * valid[:, None].to(mask.dtype)
            rollout = replace(rollout, mask=mask)
        if cfg.whiten_advantages and float(mask.sum()) > 1:
            advantages = core.masked_whiten(advantages, mask)
        self.check_finite({"scores": scores, "old logprobs": rollout.logprobs, "values": rollout.values,
                           "reference logprobs": ref_logprobs, "KL": kl, "advantages": advantages,
                           "returns": returns}, mask, "before the update", weights_changed=False)

        def update(part, rows, where, weights_changed):
            width = part.response_ids.size(1)
            return self._minibatch(_Slice(part, advantages[rows, :width], returns[rows, :width]), where,
                                   weights_changed)

        stats = self.run_passes(rollout, cfg.ppo_epochs, generator, update, label="epoch")
        n = rollout.response_ids.size(0)
        seq_kl = (kl * mask).sum(1)  # KL of each sequence, summed over its tokens
        mean_kl = float(self.accelerator.reduce(seq_kl.mean().detach(), reduction="mean"))
        self.kl_ctl.update(mean_kl, n * self.accelerator.num_processes)
        stats.update({
            "kl": mean_kl,
            "kl_coef": kl_coef,
            "returns_mean": float(core.masked_mean(returns, mask)),
            "values_mean": float(core.masked_mean(rollout.values, mask)),
            "advantages_mean": float(core.masked_mean(advantages, mask)),
            "lr": self.scheduler.get_last_lr()[0],
            "time/ref_s": t_ref,
        })
        return stats

    def _minibatch(self, part: _Slice, where: str = "", weights_changed: bool = False) -> dict[str, torch.Tensor]:
        """Clipped policy and value losses on one mini-batch, through :meth:`Updater.optimize`.

        Each piece's losses are token means over the piece, weighted by its
        share of the mini-batch's tokens, so the gradients add up to exactly
        the mini-batch's.
        """
        cfg, r = self.cfg, part.rollout
        total_tokens = r.mask.sum().clamp(min=1)

        def piece_loss(piece, rows, logprobs, values):
            width = piece.response_ids.size(1)
            advantages = part.advantages if rows is None else part.advantages[rows, :width]
            returns = part.returns if rows is None else part.returns[rows, :width]
            pg_loss, pg_stats = core.policy_loss(logprobs, piece.logprobs, advantages, piece.mask, cfg.cliprange)
            vf_loss, vf_stats = core.value_loss(values, piece.values, returns, piece.mask, cfg.cliprange_value)
            weight = piece.mask.sum() / total_tokens  # this piece's share of the mini-batch's token mean
            total = pg_loss + cfg.vf_coef * vf_loss
            stats = {"loss/policy": pg_loss, "loss/value": vf_loss, "loss/total": total,
                     "policy/clipfrac": pg_stats["clipfrac"], "policy/approx_kl": pg_stats["approx_kl"],
                     "value/clipfrac": vf_stats["clipfrac"]}
            return total * weight, {k: v.detach() * weight for k, v in stats.items()}

        return self.optimize(r, piece_loss, where, weights_changed)

