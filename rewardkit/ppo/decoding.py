"""Encoder and decoder passes of the policy, with a fast path for T5-family models.

:func:`rewardkit.ppo.rollout.sample` encodes the prompts once and then
decodes one position per step; :meth:`rewardkit.policy.Policy.forward` runs
teacher-forced passes. T5-family models (FLAN-T5 above all) take the lean
passes of :mod:`rewardkit.ppo.t5fast`; any other encoder-decoder model runs
through its own ``forward`` (:class:`GenericStepper` for the step-by-step
part). Both compute the same function; the tests check it, and at run start
:func:`rewardkit.ppo.t5fast.check_fast_path` checks it on the run's own model
and first batch: where the lean passes disagree it turns them off for that
model (``t5fast.supports`` then says no), and everything here falls back to
the model's own passes.
"""

from __future__ import annotations

import inspect

import torch

from rewardkit.ppo import t5fast


def use_fast(model, fast: bool = True) -> bool:
    """True when the T5 fast path applies to ``model`` (and ``fast`` allows it)."""
    return fast and t5fast.supports(model)


def encode(model, query_ids: torch.Tensor, query_mask: torch.Tensor, chunk: int | None = None, *,
           fast: bool = True) -> torch.Tensor:
    """Run the encoder over the prompts; returns ``(B, S, hidden)``.

    With ``chunk``, rows are encoded in groups of at most ``chunk`` prompts of
    similar length, each cut to its own longest prompt, so little compute goes
    to padding (a prompt's encoding does not depend on the padding after it).
    Padded positions of the result are zeros; the mask hides them from
    cross-attention. Prompts must be right-padded for the cut to save
    anything; left-padded ones are encoded at full width, still correctly.
    """
    if use_fast(model, fast):
        def run(ids, mask):
            return t5fast.encode(model, ids, mask)
    else:
        def run(ids, mask):
            return model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    bsz, width = query_ids.shape
    if not chunk or chunk >= bsz:
        return run(query_ids, query_mask)
    extent = extents(query_mask)
    out = None
    for rows in torch.argsort(extent).split(chunk):
        w = int(extent[rows].max())
        hidden = run(query_ids[rows, :w], query_mask[rows, :w])
        if out is None:
            out = hidden.new_zeros(bsz, width, hidden.size(-1))
        out[rows, :w] = hidden
    return out


def extents(mask: torch.Tensor) -> torch.Tensor:
    """``(B,)``: one past the last nonzero position of each row of a ``(B, L)`` mask (at least 1)."""
    positions = torch.arange(1, mask.size(1) + 1, device=mask.device)
    return (positions * (mask != 0)).amax(1).clamp(min=1)


class GenericStepper:
    """Incremental decoding through the model's own ``forward`` and KV cache (any seq2seq model)."""

    def __init__(self, model, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor, max_steps: int):
        from transformers.modeling_outputs import BaseModelOutput

        self.model = model
        self.encoder_outputs = BaseModelOutput(last_hidden_state=encoder_hidden)
        self.encoder_mask = encoder_mask
        params = inspect.signature(model.forward).parameters
        # transformers 5 names the cache ``cache``; earlier versions ``past_key_values``
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self.cache = None

    def step(self, tokens: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ``tokens`` ``(B,)``; returns ``(hidden (B, D), logits (B, V))``."""
        out = self.model(encoder_outputs=self.encoder_outputs, attention_mask=self.encoder_mask,
                         decoder_input_ids=tokens[:, None], use_cache=True, output_hidden_states=True,
                         **{self.cache_name: self.cache})
        self.cache = getattr(out, self.cache_name)
        return out.decoder_hidden_states[-1][:, -1], out.logits[:, -1]


def stepper_for(model, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor, max_steps: int, *,
                fast: bool = True):
    """A stepper for ``model``: :class:`rewardkit.ppo.t5fast.Stepper` when it applies, else :class:`GenericStepper`."""
    cls = t5fast.Stepper if use_fast(model, fast) else GenericStepper
    return cls(model, encoder_hidden, encoder_mask, max_steps)
