"""One PPO update from a scored rollout.

The trainer consumes scores; it never knows which reward plugin produced
them. Phases, in order: reference logprobs (adapter off), KL-shaped
per-token rewards, GAE and advantage whitening, then ``ppo_epochs`` passes of
clipped policy and value losses over shuffled mini-batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rewardkit.ppo import core
from rewardkit.ppo.rollout import Rollout, Sampling, teacher_forced
from rewardkit.recipe.schema import PPOSection


@dataclass
class _Slice:
    """A mini-batch view of a rollout plus its advantages and returns."""

    rollout: Rollout
    advantages: torch.Tensor
    returns: torch.Tensor


def _select(r: Rollout, idx: torch.Tensor) -> Rollout:
    return Rollout(r.query_ids[idx], r.query_mask[idx], r.response_ids[idx], r.mask[idx], r.logprobs[idx],
                   r.values[idx])


class PPOTrainer:
    """Clipped PPO with a KL-shaped reward (Ziegler et al. 2019; Stiennon et al. 2020).

    :param policy: the (possibly accelerate-wrapped) :class:`rewardkit.policy.Policy`.
    :param unwrapped: the same policy unwrapped (for ``reference()``).
    :param optimizer: over the policy's trainable parameters.
    :param scheduler: stepped once per optimizer step.
    :param kl_ctl: an adaptive or fixed KL controller.
    """

    def __init__(self, policy, unwrapped, optimizer, scheduler, accelerator, cfg: PPOSection,
                 sampling: Sampling, kl_ctl):
        self.policy, self.unwrapped = policy, unwrapped
        self.optimizer, self.scheduler = optimizer, scheduler
        self.accelerator, self.cfg, self.sampling, self.kl_ctl = accelerator, cfg, sampling, kl_ctl

    @torch.no_grad()
    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        """``(B, L)`` logprobs of the rollout under the reference policy (adapter disabled)."""
        with self.unwrapped.reference(), self.accelerator.autocast():
            ref, _, _ = teacher_forced(self.unwrapped, rollout, self.sampling, with_values=False,
                                       chunk=self.cfg.mini_batch_size)
        return ref

    def step(self, rollout: Rollout, scores: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Run one PPO update; returns the step's statistics (floats)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        ref_logprobs = self.reference_logprobs(rollout)
        t_ref = time.perf_counter() - t0
        mask = rollout.mask
        kl_coef = self.kl_ctl.value
        rewards, kl = core.shape_rewards(scores, rollout.logprobs, ref_logprobs, mask, kl_coef)
        advantages, returns = core.compute_gae(rewards, rollout.values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = core.masked_whiten(advantages, mask)

        n = rollout.response_ids.size(0)
        mb = min(cfg.mini_batch_size, n)
        logs: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, mb):
                idx = order[i:i + mb].to(mask.device)
                part = _Slice(_select(rollout, idx), advantages[idx], returns[idx])
                for k, v in self._minibatch(part).items():
                    logs.setdefault(k, []).append(v)

        seq_kl = (kl * mask).sum(1)  # KL of each sequence, summed over its tokens
        mean_kl = float(self.accelerator.reduce(seq_kl.mean().detach(), reduction="mean"))
        self.kl_ctl.update(mean_kl, n * self.accelerator.num_processes)
        stats = {k: sum(v) / len(v) for k, v in logs.items()}
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

    def _minibatch(self, part: _Slice) -> dict[str, float]:
        """Forward, clipped losses, backward, clip, optimizer step on one mini-batch."""
        cfg, r = self.cfg, part.rollout
        with self.accelerator.autocast():
            logprobs, values, logits = teacher_forced(self.policy, r, self.sampling, with_values=True)
        pg_loss, pg_stats = core.policy_loss(logprobs, r.logprobs, part.advantages, r.mask, cfg.cliprange)
        vf_loss, vf_stats = core.value_loss(values, r.values, part.returns, r.mask, cfg.cliprange_value)
        loss = pg_loss + cfg.vf_coef * vf_loss
        self.accelerator.backward(loss)
        grad_norm = None
        if cfg.max_grad_norm is not None:
            grad_norm = self.accelerator.clip_grad_norm_(self.unwrapped.trainable_parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            # -inf marks tokens the sampler cannot draw; a finite floor keeps 0 * log 0 from becoming NaN
            entropy = core.masked_mean(core.entropy_from_logits(logits.clamp(min=-1e9)), r.mask)
        out = {
            "loss/policy": float(pg_loss.detach()),
            "loss/value": float(vf_loss.detach()),
            "loss/total": float(loss.detach()),
            "policy/clipfrac": float(pg_stats["clipfrac"]),
            "policy/approx_kl": float(pg_stats["approx_kl"]),
            "value/clipfrac": float(vf_stats["clipfrac"]),
            "policy/entropy": float(entropy),
        }
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        return out
