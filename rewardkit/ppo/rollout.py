"""Rollouts: sample responses and, in the same pass, their logprobs and values.

PPO needs, for every sampled token, its log-probability under the policy that
sampled it and the value of the state it was sampled in. Both fall out of the
sampling loop itself (the logits and the decoder's last hidden state of each
step), so no second forward pass over the rollout is needed.
``tests/test_ppo_rollout.py`` proves they match a teacher-forced pass.

Two distributions, one definition each (:func:`process_logits`):

- the *sampling distribution*: the model's logits after the processing
  ``generate`` would apply (EOS masked before ``min_length``, temperature,
  top-k, top-p). Tokens are drawn from it, and only from it.
- the *scoring distribution* (:meth:`Sampling.scoring`): the same without the
  truncation filters top-k and top-p, i.e. the temperature-scaled model with
  EOS masked before ``min_length``. Every logprob PPO uses is taken under it:
  the old logprobs recorded while sampling, the new ones of the update and
  the reference's. A sampled token always has a finite logprob under it,
  for the policy and for the reference alike; under the filtered
  distribution a token outside the *reference's* top-k has logprob ``-inf``,
  which made the KL infinite and the update NaN. Old and new logprobs use the
  same distribution, so the ratio is exactly 1 on unchanged weights. With
  ``top_k: 0`` and ``top_p: 1`` (the defaults) the two distributions are the
  same and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

NEG_INF = float("-inf")

#: Prompts per encoder call on CPU (see ``encoder_chunk`` of :func:`sample`).
CPU_ENCODER_CHUNK = 4


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn (the recipe's ``generation:`` section, resolved).

    ``min_length`` counts decoder positions including the start token, as
    transformers' ``min_length`` does for encoder-decoder models: EOS is
    impossible at response position ``t`` while ``t + 1 < min_length``.
    """

    eos_token_id: int
    pad_token_id: int
    decoder_start_token_id: int
    min_length: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def filtered(self) -> bool:
        """True when top-k or top-p truncate the distribution (sampling and scoring then differ)."""
        return bool(self.top_k) or self.top_p < 1.0

    def scoring(self) -> "Sampling":
        """The distribution logprobs are taken under: this one without top-k/top-p (see the module docstring)."""
        return replace(self, top_k=0, top_p=1.0) if self.filtered else self


def process_logits(logits: torch.Tensor, sampling: Sampling, positions: torch.Tensor | int) -> torch.Tensor:
    """Turn raw logits into the logits of the sampling distribution.

    :param logits: ``(..., vocab)`` raw logits; the leading dims match ``positions``
        (``(B,)`` for one decoding step, ``(B, L)`` for a teacher-forced pass).
    :param positions: response position ``t`` of each row of logits, same
        leading shape or broadcastable; a plain ``int`` when every row is at
        the same position (one decoding step), which needs no tensor work.
    :returns: float32 logits, ``-inf`` where a token cannot be sampled.
        ``logits`` itself is never modified.
    """
    x = logits.float()
    if sampling.min_length > 1:
        if isinstance(positions, int):
            if positions + 1 < sampling.min_length:
                x = x.clone() if x.data_ptr() == logits.data_ptr() else x
                x[..., sampling.eos_token_id] = NEG_INF
        else:
            blocked = (positions + 1) < sampling.min_length
            if bool(blocked.any()):
                eos_col = x[..., sampling.eos_token_id]
                x = x.clone() if x.data_ptr() == logits.data_ptr() else x
                x[..., sampling.eos_token_id] = torch.where(blocked.expand_as(eos_col), NEG_INF, eos_col)
    if sampling.temperature != 1.0:
        x = x / sampling.temperature
    if sampling.top_k and sampling.top_k < x.size(-1):
        kth = torch.topk(x, sampling.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, NEG_INF)
    if sampling.top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        cum = sorted_x.softmax(-1).cumsum(-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cum - sorted_x.softmax(-1)) >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        x = x.masked_fill(drop, NEG_INF)
    return x


def sampling_for(generation, tokenizer, model_config) -> Sampling:
    """The :class:`Sampling` of a recipe's ``generation:`` section for this tokenizer and model.

    One definition for training and evaluation, so both draw from the same distribution.
    """
    start = model_config.decoder_start_token_id
    return Sampling(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                    decoder_start_token_id=start if start is not None else tokenizer.pad_token_id,
                    min_length=generation.min_length, temperature=generation.temperature,
                    top_k=generation.top_k, top_p=generation.top_p)


@dataclass
class Rollout:
    """Sampled responses of one batch, right-padded.

    :param query_ids: ``(B, S)`` prompt ids; :param query_mask: ``(B, S)``.
    :param response_ids: ``(B, L)`` sampled tokens, ``pad`` after the end.
    :param mask: ``(B, L)`` float, 1 on real response tokens (EOS included).
    :param logprobs: ``(B, L)`` log-probability of each sampled token.
    :param values: ``(B, L)`` value of the state each token was sampled in;
        ``None`` for a policy without a value head (GRPO, RLOO).
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor | None

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` number of real response tokens per row."""
        return self.mask.sum(1).long()

    def select(self, rows: torch.Tensor) -> Rollout:
        """The rollout of the given rows (an index tensor), in that order."""
        return Rollout(self.query_ids[rows], self.query_mask[rows], self.response_ids[rows], self.mask[rows],
                       self.logprobs[rows], None if self.values is None else self.values[rows])

    def trimmed(self) -> Rollout:
        """The same rollout without the columns that are padding in every row.

        A model pass over a trimmed rollout gives the same numbers for the
        real tokens and spends nothing on the padding (a mini-batch's longest
        prompt is usually shorter than the whole batch's).
        """
        from rewardkit.ppo.decoding import extents

        q = int(extents(self.query_mask).max())
        r = max(1, int(extents(self.mask).max()))  # a column even when every row is masked out (unscored)
        if q == self.query_ids.size(1) and r == self.response_ids.size(1):
            return self
        return Rollout(self.query_ids[:, :q], self.query_mask[:, :q], self.response_ids[:, :r], self.mask[:, :r],
                       self.logprobs[:, :r], None if self.values is None else self.values[:, :r])


def draw(logprobs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from ``(B, V)`` log-probabilities, by inverting the CDF.

    Exactly a categorical draw, like ``torch.multinomial(p, 1)``, but with one
    uniform number per row instead of one random number per vocabulary entry,
    which on CPU made ``multinomial`` the slowest op of a small model's step.
    Tokens of probability 0 (``-inf`` logprob) are never drawn: the search is
    strict, and ``u`` stays below the total mass.
    """
    cdf = logprobs.exp().cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, generator=generator, device=total.device, dtype=total.dtype) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(1)


@torch.no_grad()
def sample(policy, query_ids: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: torch.Tensor,
           sampling: Sampling, generator: torch.Generator | None = None, *,
           encoder_chunk: int | None | str = "auto", fast: bool = True, group_size: int = 1) -> Rollout:
    """Sample responses with the KV cache, recording logprobs and (with a value head) values.

    :param policy: a :class:`rewardkit.policy.Policy` (unwrapped).
    :param query_ids: ``(P, S)`` prompts; :param query_mask: ``(P, S)``.
    :param max_new_tokens: ``(P * group_size,)`` per-row limits; the loop runs to the largest.
    :param group_size: completions per prompt, ``G``. Each prompt is encoded
        once; its encoder output is repeated for its ``G`` rows (one copy per
        group member, never a second encoder pass). The rollout has
        ``P * G`` rows, the completions of a prompt consecutive.
    :param encoder_chunk: encode the prompts in length-sorted groups of this
        many rows, so less compute goes to padding (``None``: all at once).
        ``"auto"``: groups of :data:`CPU_ENCODER_CHUNK` on CPU, where 4
        dialogues (~500 tokens) already keep the matmuls efficient and padding
        is pure loss (a sixth to a quarter of the encoder's work in the
        benchmark's batches of 16); all at once on accelerators, which want
        large batches.
    :param fast: use the lean T5 passes when the model is T5-family
        (see :mod:`rewardkit.ppo.t5fast`); ``False`` forces ``model.forward``.
    """
    from rewardkit.ppo.decoding import encode, stepper_for

    model = policy.model.get_base_model()  # LoRA layers live here; skips PEFT's wrapper per step
    device = query_ids.device
    bsz = query_ids.size(0)
    limit = max_new_tokens.to(device)
    steps = int(limit.max())
    if encoder_chunk == "auto":
        encoder_chunk = CPU_ENCODER_CHUNK if device.type == "cpu" else None
    encoder_hidden = encode(model, query_ids, query_mask, encoder_chunk, fast=fast)
    if group_size > 1:
        encoder_hidden = encoder_hidden.repeat_interleave(group_size, dim=0)
        query_ids = query_ids.repeat_interleave(group_size, dim=0)
        query_mask = query_mask.repeat_interleave(group_size, dim=0)
        bsz = query_ids.size(0)
    if limit.numel() != bsz:
        raise ValueError(f"max_new_tokens has {limit.numel()} limits for {bsz} rows")
    stepper = stepper_for(model, encoder_hidden, query_mask, steps, fast=fast)
    token = torch.full((bsz,), sampling.decoder_start_token_id, dtype=torch.long, device=device)
    done = torch.zeros(bsz, dtype=torch.bool, device=device)
    tokens, logps, hiddens = [], [], []
    with_values = policy.v_head is not None
    scoring = sampling.scoring()
    for t in range(steps):
        hidden, logits = stepper.step(token, t)
        logprobs = torch.log_softmax(process_logits(logits, sampling, t), dim=-1)
        token = draw(logprobs, generator)
        token = torch.where(done, sampling.pad_token_id, token)
        tokens.append(token)
        if scoring is not sampling:  # drawn from the filtered distribution, scored under the unfiltered one
            logprobs = torch.log_softmax(process_logits(logits, scoring, t), dim=-1)
        logps.append(logprobs.gather(1, token[:, None]).squeeze(1))
        if with_values:
            hiddens.append(hidden)
        done = done | (token == sampling.eos_token_id) | (t + 1 >= limit)
        if bool(done.all()):
            break
    response = torch.stack(tokens, 1)
    # a position is real up to and including the first EOS, and within the row's own limit
    is_eos = (response == sampling.eos_token_id).long()
    before_eos = (is_eos.cumsum(1) - is_eos) == 0
    within = torch.arange(response.size(1), device=device)[None, :] < limit[:, None]
    real = before_eos & within
    response = response.masked_fill(~real, sampling.pad_token_id)
    # one value-head call over all steps: (B, L, hidden) -> (B, L)
    values = policy.v_head(torch.stack(hiddens, 1)).masked_fill(~real, 0.0) if with_values else None
    return Rollout(query_ids, query_mask, response, real.float(),
                   torch.stack(logps, 1).masked_fill(~real, 0.0), values)


def decoder_inputs(response_ids: torch.Tensor, start_token_id: int) -> torch.Tensor:
    """``(B, L)`` responses -> ``(B, L)`` decoder inputs: start token, then the response shifted right."""
    start = torch.full_like(response_ids[:, :1], start_token_id)
    return torch.cat([start, response_ids[:, :-1]], dim=1)


def teacher_forced(policy, rollout: Rollout, sampling: Sampling, *, with_values: bool = True,
                   chunk: int | None = None):
    """Logprobs (and values) of the rollout's tokens in one teacher-forced pass.

    Used for the reference policy (inside ``policy.reference()``) and for the
    PPO update. Logprobs are taken under ``sampling.scoring()`` (the
    temperature-scaled distribution without top-k/top-p, see the module
    docstring), whatever ``sampling`` filters. Returns ``(logprobs (B, L),
    values (B, L) or None, logits)``; ``logits`` are the scoring
    distribution's logits (for entropy), or ``None`` when chunked.

    :param chunk: run the rows in groups of at most this many, sorted by
        prompt length and each cut to its own longest prompt and response
        (bounded memory, little padding). Without it, one pass over the
        rollout as given.
    """
    from rewardkit.ppo.core import logprobs_from_logits
    from rewardkit.ppo.decoding import extents

    sampling = sampling.scoring()

    def run(part: Rollout):
        logits, values = policy(part.query_ids, part.query_mask,
                                decoder_inputs(part.response_ids, sampling.decoder_start_token_id),
                                with_values=with_values)
        positions = torch.arange(part.response_ids.size(1), device=part.response_ids.device)
        logits = process_logits(logits, sampling, positions)
        # where(), not a product: a padded position may hold a -inf logprob, and -inf * 0 is NaN
        real = part.mask.bool()
        logprobs = torch.where(real, logprobs_from_logits(logits, part.response_ids), 0.0)
        return logprobs, (torch.where(real, values, 0.0) if with_values else None), logits

    n, length = rollout.response_ids.shape
    if not chunk or chunk >= n:
        return run(rollout)
    all_lp = rollout.logprobs.new_zeros(n, length)
    all_v = rollout.logprobs.new_zeros(n, length) if with_values else None
    for rows in torch.argsort(extents(rollout.query_mask)).split(chunk):
        logprobs, values, _ = run(rollout.select(rows).trimmed())
        all_lp[rows, :logprobs.size(1)] = logprobs.to(all_lp.dtype)
        if with_values:
            all_v[rows, :values.size(1)] = values.to(all_v.dtype)
    return all_lp, all_v, None
