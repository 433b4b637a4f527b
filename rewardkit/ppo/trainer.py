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

import contextlib
import time
from dataclasses import dataclass, replace

import torch

from rewardkit.errors import NonFiniteError
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
    :param scheduler: a plain torch scheduler (not passed through
        ``accelerator.prepare``, which would step it once per process),
        stepped once per optimizer step that was not skipped.
    :param kl_ctl: an adaptive or fixed KL controller.
    :param recompute_old: take the old logprobs and values from a
        teacher-forced pass instead of the sampling pass. In float32 the two
        agree to rounding; in bf16/fp16 the step-by-step decoding kernels and
        the teacher-forced pass round differently, so the ratio at unchanged
        weights would not be 1. ``None``: on exactly when the model's weights
        or the accelerator's mixed precision are reduced.
    """

    def __init__(self, policy, unwrapped, optimizer, scheduler, accelerator, cfg: PPOSection,
                 sampling: Sampling, kl_ctl, micro_batch_size: int | None = None, recompute_old: bool | None = None):
        self.policy, self.unwrapped = policy, unwrapped
        self.micro_batch_size = micro_batch_size
        self.optimizer, self.scheduler = optimizer, scheduler
        self.accelerator, self.cfg, self.sampling, self.kl_ctl = accelerator, cfg, sampling, kl_ctl
        # listed once: walking every module for them on each mini-batch costs more than a tiny model's step
        self.params = list(unwrapped.trainable_parameters())
        if recompute_old is None:
            reduced = any(p.dtype in (torch.float16, torch.bfloat16) for p in unwrapped.parameters())
            recompute_old = reduced or accelerator.mixed_precision in ("fp16", "bf16")
        self.recompute_old = recompute_old

    def _any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any (one all-reduce; free with one process)."""
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def _check_finite(self, named: dict[str, torch.Tensor], mask: torch.Tensor | None, where: str,
                      weights_changed: bool) -> None:
        """Raise NonFiniteError on every process when any process holds a non-finite value in ``named``."""
        found = core.first_nonfinite(named, mask)
        if self._any_process(found is not None):
            if found is None:
                raise NonFiniteError("a training quantity", f"on another process, {where}",
                                     weights_changed=weights_changed)
            raise NonFiniteError(found[0], f"{where}: {found[1]}", weights_changed=weights_changed)

    @torch.no_grad()
    def old_logprobs(self, rollout: Rollout) -> Rollout:
        """The rollout with its logprobs and values recomputed by a teacher-forced pass of the current policy."""
        with self.accelerator.autocast():
            logprobs, values, _ = teacher_forced(self.unwrapped, rollout, self.sampling, with_values=True,
                                                 chunk=self.cfg.mini_batch_size)
        return replace(rollout, logprobs=logprobs.float(), values=values.float())

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
        if self.recompute_old:
            rollout = self.old_logprobs(rollout)
        mask = rollout.mask
        kl_coef = self.kl_ctl.value
        rewards, kl = core.shape_rewards(scores, rollout.logprobs, ref_logprobs, mask, kl_coef)
        advantages, returns = core.compute_gae(rewards, rollout.values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = core.masked_whiten(advantages, mask)
        self._check_finite({"scores": scores, "old logprobs": rollout.logprobs, "values": rollout.values,
                            "reference logprobs": ref_logprobs, "KL": kl, "advantages": advantages,
                            "returns": returns}, mask, "before the update", weights_changed=False)

        n = rollout.response_ids.size(0)
        mb = min(cfg.mini_batch_size, n)
        logs: dict[str, list[torch.Tensor]] = {}
        updates = 0
        for epoch in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, mb):
                idx = order[i:i + mb].to(mask.device)
                # cut the columns that are padding in all of this mini-batch's rows: same numbers, less work
                part = rollout.select(idx).trimmed()
                width = part.response_ids.size(1)
                sliced = _Slice(part, advantages[idx, :width], returns[idx, :width])
                where = f"epoch {epoch}, mini-batch {i // mb}"
                for k, v in self._minibatch(sliced, where, weights_changed=updates > 0).items():
                    logs.setdefault(k, []).append(v)
                updates += 1

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

    def _minibatch(self, part: _Slice, where: str = "", weights_changed: bool = False) -> dict[str, torch.Tensor]:
        """Forward, clipped losses, backward, clip, optimizer step on one mini-batch; stats as 0-dim tensors.

        The forward pass runs with LoRA's and the value head's dropout on
        (:meth:`rewardkit.policy.Policy.dropout`). The optimizer steps only
        when the loss and the gradient norm are finite on every process;
        otherwise the gradients are dropped and NonFiniteError names ``where``.

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
            with self.accelerator.autocast(), self.unwrapped.dropout():
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
        # the norm is needed for the finite check even without clipping (max_norm=inf clips nothing)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
        grad_norm = torch.as_tensor(self.accelerator.clip_grad_norm_(self.params, max_norm)).detach()
        try:
            self._check_finite({"loss": sums["loss/total"], "gradient norm": grad_norm}, None, where,
                               weights_changed)
        except NonFiniteError:
            self.optimizer.zero_grad(set_to_none=True)
            raise
        self.optimizer.step()
        if not getattr(self.optimizer, "step_was_skipped", False):  # fp16's scaler may skip a step
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.max_grad_norm is not None:
            sums["grad_norm"] = grad_norm
        return sums
