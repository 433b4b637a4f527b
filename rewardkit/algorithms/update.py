"""What every algorithm's update shares: reference and old logprobs, finite checks, the optimizer step.

An algorithm (:class:`rewardkit.ppo.trainer.PPOTrainer`,
:class:`rewardkit.algorithms.grpo.GroupTrainer`) turns a scored rollout into
advantages and a per-mini-batch loss; :class:`Updater` runs that loss through
the forward and backward passes in micro-batches and steps the optimizer, the
same way for all of them:

- logprobs are taken under the scoring distribution (``Sampling.scoring``),
  the reference is ``Policy.reference()`` (the policy the run started from);
- in bf16/fp16 the old logprobs are recomputed by a teacher-forced pass, so
  the ratio is 1 at unchanged weights (see ``recompute_old``);
- nothing non-finite reaches ``optimizer.step()``: :meth:`Updater.check_finite`
  raises :class:`~rewardkit.errors.NonFiniteError` on every process together;
- the scheduler is stepped once per optimizer step that was not skipped.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from rewardkit.errors import NonFiniteError
from rewardkit.ppo import core
from rewardkit.ppo.rollout import Rollout, Sampling, teacher_forced

#: The most elements of one ``(rows, length, vocab)`` logits tensor a pass without gradient may hold: a
#: mini-batch of 4 at FLAN-T5's vocabulary (32,128) and 400 new tokens, the detox recipe's largest.
NO_GRAD_LOGITS_BUDGET = 4 * 400 * 32128


class Updater:
    """The shared half of a trainer.

    :param policy: the (possibly accelerate-wrapped) :class:`rewardkit.policy.Policy`.
    :param unwrapped: the same policy unwrapped (for ``reference()``).
    :param optimizer: over the policy's trainable parameters.
    :param scheduler: a plain torch scheduler (not passed through
        ``accelerator.prepare``, which would step it once per process).
    :param mini_batch_size: rows per optimizer step; also the smallest chunk of the
        reference and old-logprob passes.
    :param max_grad_norm: clip the gradient norm to this (``None``: no clipping).
    :param micro_batch_size: rows per forward/backward piece (``None``: the
        whole mini-batch); the gradients add up to the mini-batch's.
    :param recompute_old: take the old logprobs (and values) from a
        teacher-forced pass instead of the sampling pass. ``None``: exactly
        when the weights or the accelerator's mixed precision are fp16/bf16,
        where the step-by-step decoding kernels and the teacher-forced pass
        round differently.
    :param with_values: the policy has a value head the algorithm trains.
    """

    def __init__(self, policy, unwrapped, optimizer, scheduler, accelerator, sampling: Sampling, *,
                 mini_batch_size: int, max_grad_norm: float | None, micro_batch_size: int | None = None,
                 recompute_old: bool | None = None, with_values: bool = True):
        self.policy, self.unwrapped = policy, unwrapped
        self.optimizer, self.scheduler = optimizer, scheduler
        self.accelerator, self.sampling = accelerator, sampling
        self.mini_batch_size, self.max_grad_norm = mini_batch_size, max_grad_norm
        self.micro_batch_size, self.with_values = micro_batch_size, with_values
        # listed once: walking every module for them on each mini-batch costs more than a tiny model's step
        self.params = list(unwrapped.trainable_parameters())
        if recompute_old is None:
            reduced = any(p.dtype in (torch.float16, torch.bfloat16) for p in unwrapped.parameters())
            recompute_old = reduced or accelerator.mixed_precision in ("fp16", "bf16")
        self.recompute_old = recompute_old
        self.vocab_size = int(getattr(unwrapped.config, "vocab_size", 0) or 0)

    # -- agreement between processes ------------------------------------------------------------------------
    def any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any (one all-reduce; free with one process)."""
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def check_finite(self, named: dict[str, torch.Tensor], mask: torch.Tensor | None, where: str,
                     weights_changed: bool) -> None:
        """Raise NonFiniteError on every process when any process holds a non-finite value in ``named``."""
        found = core.first_nonfinite(named, mask)
        if self.any_process(found is not None):
            if found is None:
                raise NonFiniteError("a training quantity", f"on another process, {where}",
                                     weights_changed=weights_changed)
            raise NonFiniteError(found[0], f"{where}: {found[1]}", weights_changed=weights_changed)

    # -- passes without gradient ----------------------------------------------------------------------------
    def no_grad_chunk(self, rollout: Rollout) -> int:
        """Rows per chunk of the reference and old-logprob passes: as many as :data:`NO_GRAD_LOGITS_BUDGET`
        allows, never fewer than a mini-batch. Fewer, larger passes cost less per row (the encoder packs
        away the padding of unequal prompts); the budget keeps the logits' memory where a mini-batch put it."""
        per_row = rollout.response_ids.size(1) * max(1, self.vocab_size)
        return max(self.mini_batch_size, NO_GRAD_LOGITS_BUDGET // per_row)

    @torch.no_grad()
    def old_logprobs(self, rollout: Rollout) -> Rollout:
        """The rollout with its logprobs (and values) recomputed by a teacher-forced pass of the current policy."""
        with self.accelerator.autocast():
            logprobs, values, _ = teacher_forced(self.unwrapped, rollout, self.sampling,
                                                 with_values=self.with_values, chunk=self.no_grad_chunk(rollout))
        return replace(rollout, logprobs=logprobs.float(),
                       values=values.float() if values is not None else rollout.values)

    @torch.no_grad()
    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        """``(B, L)`` logprobs of the rollout under the reference policy."""
        with self.unwrapped.reference(), self.accelerator.autocast():
            ref, _, _ = teacher_forced(self.unwrapped, rollout, self.sampling, with_values=False,
                                       chunk=self.no_grad_chunk(rollout))
        return ref

    # -- one optimizer step -----------------------------------------------------------------------------------
    def optimize(self, part: Rollout, piece_loss, where: str = "", weights_changed: bool = False
                 ) -> dict[str, torch.Tensor]:
        """Forward, loss, backward over ``part`` in micro-batches, then clip and step; stats as 0-dim tensors.

        :param part: one mini-batch of the rollout.
        :param piece_loss: ``piece_loss(piece, rows, logprobs, values)`` ->
            ``(loss, stats)`` for one piece of the mini-batch (``rows``
            indexes ``part``, ``None`` for the whole of it), normalised so
            that the pieces' losses add up to the mini-batch's loss, and
            ``stats`` weighted the same way (they are summed).

        The forward pass runs with LoRA's (and the value head's) dropout on
        (:meth:`rewardkit.policy.Policy.dropout`). Pieces are length-sorted
        and each cut to its own longest prompt; only one piece's activations
        are alive at a time. The optimizer steps only when the loss and the
        gradient norm are finite on every process; otherwise the gradients
        are dropped and NonFiniteError names ``where``.
        """
        n = part.response_ids.size(0)
        micro = self.micro_batch_size or n
        if micro >= n:
            pieces = [None]
        else:
            from rewardkit.ppo.decoding import extents

            pieces = list(torch.argsort(extents(part.query_mask)).split(micro))
        total_tokens = part.mask.sum().clamp(min=1)
        sums: dict[str, torch.Tensor] = {}
        for k, rows in enumerate(pieces):
            piece = part if rows is None else part.select(rows).trimmed()
            with self.accelerator.autocast(), self.unwrapped.dropout():
                logprobs, values, logits = teacher_forced(self.policy, piece, self.sampling,
                                                          with_values=self.with_values)
            loss, stats = piece_loss(piece, rows, logprobs, values)
            with torch.no_grad():
                # -inf marks tokens the sampler cannot draw; a finite floor keeps 0 * log 0 from becoming NaN.
                # Row by row and before backward, so the logits can be dropped before it: the floor and the
                # softmax are one row's copies, and backward holds only what the graph needs
                per_token = torch.cat([core.entropy_from_logits(row.clamp(min=-1e9)) for row in logits.split(1)])
                share = piece.mask.sum() / total_tokens  # this piece's share of the mini-batch's tokens
                stats["policy/entropy"] = core.masked_mean(per_token, piece.mask) * share
            del logits
            last = k == len(pieces) - 1
            # several processes: gradients are averaged across them once, after the last piece
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.policy):
                self.accelerator.backward(loss)
            with torch.no_grad():
                for name, value in stats.items():
                    sums[name] = sums.get(name, 0.0) + value.detach()
        # the norm is needed for the finite check even without clipping (max_norm=inf clips nothing)
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        grad_norm = torch.as_tensor(self.accelerator.clip_grad_norm_(self.params, max_norm)).detach()
        try:
            self.check_finite({"loss": sums["loss/total"], "gradient norm": grad_norm}, None, where,
                              weights_changed)
        except NonFiniteError:
            self.optimizer.zero_grad(set_to_none=True)
            raise
        self.optimizer.step()
        if not getattr(self.optimizer, "step_was_skipped", False):  # fp16's scaler may skip a step
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.max_grad_norm is not None:
            sums["grad_norm"] = grad_norm
        return sums

    def run_passes(self, rollout: Rollout, passes: int, generator: torch.Generator | None, update,
                   label: str = "epoch") -> dict[str, float]:
        """``passes`` shuffled passes over ``rollout`` in mini-batches; the mean of each statistic.

        :param update: ``update(part, rows, where, weights_changed)`` -> stats
            (0-dim tensors) for one mini-batch: ``part`` is the rollout of
            ``rows``, cut to the columns that are not padding in all of them
            (same numbers, less work); ``weights_changed`` says whether an
            earlier mini-batch of this step already stepped the optimizer.
        """
        n = rollout.response_ids.size(0)
        mb = min(self.mini_batch_size, n)
        logs: dict[str, list[torch.Tensor]] = {}
        updates = 0
        for p in range(passes):
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, mb):
                rows = order[i:i + mb].to(rollout.mask.device)
                part = rollout.select(rows).trimmed()
                stats = update(part, rows, f"{label} {p}, mini-batch {i // mb}", updates > 0)
                for name, v in stats.items():
                    logs.setdefault(name, []).append(v)
                updates += 1
        # one conversion at the end of the step instead of a device sync per statistic per mini-batch
        names = list(logs)
        means = torch.stack([torch.stack(logs[k]).float().mean() for k in names]).tolist() if names else []
        return dict(zip(names, means))
