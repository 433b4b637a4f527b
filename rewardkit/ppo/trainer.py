"""One PPO update from a scored rollout.

The trainer consumes scores; it never knows which reward plugin produced
them. Phases, in order: reference logprobs (adapter off), KL-shaped
per-token rewards, GAE and advantage whitening, then ``ppo_epochs`` passes of
clipped policy and value losses over shuffled mini-batches.
"""

from __future__ import annotations

import contextlib
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


class PPOTrainer:
    """Clipped PPO with a KL-shaped reward (Ziegler et al. 2019; Stiennon et al. 2020).

    :param policy: the (possibly accelerate-wrapped) :class:`rewardkit.policy.Policy`.
    :param unwrapped: the same policy unwrapped (for ``reference()``).
    :param optimizer: over the policy's trainable parameters.
    :param scheduler: stepped once per optimizer step.
    :param kl_ctl: an adaptive or fixed KL controller.
    """

    def __init__(self, policy, unwrapped, optimizer, scheduler, accelerator, cfg: PPOSection,
                 sampling: Sampling, kl_ctl, micro_batch_size: int | None = None):
        self.policy, self.unwrapped = policy, unwrapped
        self.micro_batch_size = micro_batch_size
        self.optimizer, self.scheduler = optimizer, scheduler
        self.accelerator, self.cfg, self.sampling, self.kl_ctl = accelerator, cfg, sampling, kl_ctl
        # listed once: walking every module for them on each mini-batch costs more than a tiny model's step
        self.params = list(unwrapped.trainable_parameters())

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
        logs: dict[str, list[torch.Tensor]] = {}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, mb):
                idx = order[i:i + mb].to(mask.device)
                # cut the columns that are padding in all of this mini-batch's rows: same numbers, less work
                part = rollout.select(idx).trimmed()
                width = part.response_ids.size(1)
                sliced = _Slice(part, advantages[idx, :width], returns[idx, :width])
                for k, v in self._minibatch(sliced).items():
                    logs.setdefault(k, []).append(v)

        seq_kl = (kl * mask).sum(1)  # KL of each sequence, summed over its tokens
        mean_kl = float(self.accelerator.reduce(seq_kl.mean().detach(), reduction="mean"))
        self.kl_ctl.update(mean_kl, n * self.accelerator.num_processes)
        # one conversion at the end of the step instead of a device sync per statistic per mini-batch
        names = list(logs)
        means = torch.stack([torch.stack(logs[k]).float().mean() for k in names]).tolist() if names else []
        stats = dict(zip(names, means))
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

    def _minibatch(self, part: _Slice) -> dict[str, torch.Tensor]:
        """Forward, clipped losses, backward, clip, optimizer step on one mini-batch; stats as 0-dim tensors.

        The forward and backward run in pieces of :attr:`micro_batch_size`
        rows (length-sorted, each cut to its own longest prompt), and the
        gradients add up to exactly the mini-batch's: each piece's losses are
        token means over the piece, weighted by its share of the mini-batch's
        tokens. Only one piece's activations are alive at a time, which is
        what bounds the peak memory of a step.
        """
        cfg, r = self.cfg, part.rollout
        n = r.response_ids.size(0)
        micro = self.micro_batch_size or n
        if micro >= n:
            pieces = [None]
        else:
            from rewardkit.ppo.decoding import extents

            pieces = list(torch.argsort(extents(r.query_mask)).split(micro))
        total_tokens = r.mask.sum().clamp(min=1)
        sums: dict[str, torch.Tensor] = {}
        for k, rows in enumerate(pieces):
            piece = r if rows is None else r.select(rows).trimmed()
            width = piece.response_ids.size(1)
            advantages = part.advantages if rows is None else part.advantages[rows, :width]
            returns = part.returns if rows is None else part.returns[rows, :width]
            with self.accelerator.autocast():
                logprobs, values, logits = teacher_forced(self.policy, piece, self.sampling, with_values=True)
            pg_loss, pg_stats = core.policy_loss(logprobs, piece.logprobs, advantages, piece.mask, cfg.cliprange)
            vf_loss, vf_stats = core.value_loss(values, piece.values, returns, piece.mask, cfg.cliprange_value)
            weight = piece.mask.sum() / total_tokens  # this piece's share of the mini-batch's token mean
            loss = (pg_loss + cfg.vf_coef * vf_loss) * weight
            last = k == len(pieces) - 1
            # several processes: gradients are averaged across them once, after the last piece
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.policy):
                self.accelerator.backward(loss)
            with torch.no_grad():
                # -inf marks tokens the sampler cannot draw; a finite floor keeps 0 * log 0 from becoming NaN
                entropy = core.masked_mean(core.entropy_from_logits(logits.clamp(min=-1e9)), piece.mask)
                piece_stats = {
                    "loss/policy": pg_loss, "loss/value": vf_loss, "loss/total": pg_loss + cfg.vf_coef * vf_loss,
                    "policy/clipfrac": pg_stats["clipfrac"], "policy/approx_kl": pg_stats["approx_kl"],
                    "value/clipfrac": vf_stats["clipfrac"], "policy/entropy": entropy,
                }
                for name, value in piece_stats.items():
                    sums[name] = sums.get(name, 0.0) + value.detach() * weight
        grad_norm = None
        if cfg.max_grad_norm is not None:
            grad_norm = self.accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if grad_norm is not None:
            sums["grad_norm"] = torch.as_tensor(grad_norm).detach()
        return sums
