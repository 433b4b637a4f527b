"""Rollouts: sample responses and, in the same pass, their logprobs and values.

PPO needs, for every sampled token, its log-probability under the policy that
sampled it and the value of the state it was sampled in. Both fall out of the
sampling loop itself (the logits and the decoder's last hidden state of each
step), so no second forward pass over the rollout is needed.
``tests/test_ppo_rollout.py`` proves they match a teacher-forced pass.

The *sampling distribution* is the model's logits after the same processing
``generate`` would apply (EOS masked before ``min_length``, temperature,
top-k, top-p). :func:`process_logits` applies it to sampled and to
teacher-forced logits alike, so the policy ratio is exactly 1 on unchanged
weights and KL cannot go negative through a mismatch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


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


def process_logits(logits: torch.Tensor, sampling: Sampling, positions: torch.Tensor) -> torch.Tensor:
    """Turn raw logits into the logits of the sampling distribution.

    :param logits: ``(..., vocab)`` raw logits; the leading dims match ``positions``
        (``(B,)`` for one decoding step, ``(B, L)`` for a teacher-forced pass).
    :param positions: response position ``t`` of each row of logits, same
        leading shape or broadcastable.
    :returns: float32 logits, ``-inf`` where a token cannot be sampled.
    """
    x = logits.float()
    if sampling.min_length > 1:
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


@dataclass
class Rollout:
    """Sampled responses of one batch, right-padded.

    :param query_ids: ``(B, S)`` prompt ids; :param query_mask: ``(B, S)``.
    :param response_ids: ``(B, L)`` sampled tokens, ``pad`` after the end.
    :param mask: ``(B, L)`` float, 1 on real response tokens (EOS included).
    :param logprobs: ``(B, L)`` log-probability of each sampled token.
    :param values: ``(B, L)`` value of the state each token was sampled in.
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` number of real response tokens per row."""
        return self.mask.sum(1).long()


def _cache_names(model) -> tuple[str, str]:
    """The cache keyword/attribute: ``cache`` in transformers 5, ``past_key_values`` before."""
    params = inspect.signature(model.forward).parameters
    return ("cache", "cache") if "cache" in params else ("past_key_values", "past_key_values")


@torch.no_grad()
def sample(policy, query_ids: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: torch.Tensor,
           sampling: Sampling, generator: torch.Generator | None = None) -> Rollout:
    """Sample one response per prompt with the KV cache, recording logprobs and values.

    :param policy: a :class:`rewardkit.policy.Policy` (unwrapped).
    :param max_new_tokens: ``(B,)`` per-row limits; the loop runs to the largest.
    """
    model = policy.model.get_base_model()  # LoRA layers live here; skips PEFT's wrapper per step
    kw, attr = _cache_names(model)
    device = query_ids.device
    bsz = query_ids.size(0)
    limit = max_new_tokens.to(device)
    steps = int(limit.max())
    encoder_outputs = model.get_encoder()(input_ids=query_ids, attention_mask=query_mask)
    next_input = torch.full((bsz, 1), sampling.decoder_start_token_id, dtype=torch.long, device=device)
    done = torch.zeros(bsz, dtype=torch.bool, device=device)
    tokens, logps, values = [], [], []
    cache = None
    for t in range(steps):
        out = model(encoder_outputs=encoder_outputs, attention_mask=query_mask, decoder_input_ids=next_input,
                    use_cache=True, output_hidden_states=True, **{kw: cache})
        cache = getattr(out, attr)
        logits = process_logits(out.logits[:, -1], sampling, torch.full((bsz,), t, device=device))
        logprobs = torch.log_softmax(logits, dim=-1)
        token = torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(1)
        token = torch.where(done, sampling.pad_token_id, token)
        tokens.append(token)
        logps.append(logprobs.gather(1, token[:, None]).squeeze(1))
        values.append(policy.v_head(out.decoder_hidden_states[-1][:, -1:]).squeeze(1))
        done = done | (token == sampling.eos_token_id) | (t + 1 >= limit)
        if bool(done.all()):
            break
        next_input = token[:, None]
    response = torch.stack(tokens, 1)
    # a position is real up to and including the first EOS, and within the row's own limit
    is_eos = (response == sampling.eos_token_id).long()
    before_eos = (is_eos.cumsum(1) - is_eos) == 0
    within = torch.arange(response.size(1), device=device)[None, :] < limit[:, None]
    mask = (before_eos & within).float()
    response = response.masked_fill(mask == 0, sampling.pad_token_id)
    real = mask.bool()
    return Rollout(query_ids, query_mask, response, mask,
                   torch.stack(logps, 1).masked_fill(~real, 0.0), torch.stack(values, 1).masked_fill(~real, 0.0))


def decoder_inputs(response_ids: torch.Tensor, start_token_id: int) -> torch.Tensor:
    """``(B, L)`` responses -> ``(B, L)`` decoder inputs: start token, then the response shifted right."""
    start = torch.full_like(response_ids[:, :1], start_token_id)
    return torch.cat([start, response_ids[:, :-1]], dim=1)


def teacher_forced(policy, rollout: Rollout, sampling: Sampling, *, with_values: bool = True,
                   chunk: int | None = None):
    """Logprobs (and values) of the rollout's tokens in one teacher-forced pass.

    Used for the reference policy (inside ``policy.reference()``) and for the
    PPO update. Returns ``(logprobs (B, L), values (B, L) or None, logits)``;
    ``logits`` are the processed logits (for entropy), or ``None`` when chunked.
    """
    from rewardkit.ppo.core import logprobs_from_logits

    n = rollout.response_ids.size(0)
    step = chunk or n
    all_lp, all_v, last_logits = [], [], None
    positions = torch.arange(rollout.response_ids.size(1), device=rollout.response_ids.device)
    for i in range(0, n, step):
        sl = slice(i, i + step)
        resp = rollout.response_ids[sl]
        logits, values = policy(rollout.query_ids[sl], rollout.query_mask[sl],
                                decoder_inputs(resp, sampling.decoder_start_token_id), with_values=with_values)
        logits = process_logits(logits, sampling, positions)
        # where(), not a product: a padded position may hold a -inf logprob, and -inf * 0 is NaN
        real = rollout.mask[sl].bool()
        all_lp.append(torch.where(real, logprobs_from_logits(logits, resp), 0.0))
        if with_values:
            all_v.append(torch.where(real, values, 0.0))
        last_logits = logits if step == n else None
    return torch.cat(all_lp), (torch.cat(all_v) if with_values else None), last_logits
