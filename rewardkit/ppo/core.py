"""The PPO math as small pure functions over right-padded response tensors.

Shapes used throughout:

- ``(batch, resp_len)``: one value per response token. Responses are
  right-padded; ``mask`` has the same shape, 1 on real response tokens
  (the EOS token included, when one was generated) and 0 on the padding
  after them. ``mask`` may be bool or float (0./1.).
- ``(batch, resp_len, vocab)``: logits, where ``logits[:, t]`` is the
  distribution that token ``t`` of the response was sampled from.
- ``(batch,)``: one scalar per sample (the composed reward score).

Padding never affects a result: every function selects the real entries
with ``torch.where`` *before* doing arithmetic on them, so even NaN or inf on
padding neither leaks into the values nor poisons the gradients (a plain
``x * mask`` would turn ``inf * 0`` into NaN).

The functions neither know nor care which reward plugin produced a score
(STYLE.md, "RL core"): the runner composes rewards, then calls these.

References:
    [PPO]  Schulman, Wolski, Dhariwal, Radford, Klimov (2017), "Proximal
           Policy Optimization Algorithms", arXiv:1707.06347.
    [GAE]  Schulman, Moritz, Levine, Jordan, Abbeel (2016), "High-Dimensional
           Continuous Control Using Generalized Advantage Estimation",
           arXiv:1506.02438.
    [Z19]  Ziegler et al. (2019), "Fine-Tuning Language Models from Human
           Preferences", arXiv:1909.08593.
    [S20]  Stiennon et al. (2020), "Learning to summarize from human
           feedback", arXiv:2009.01325.
"""

from __future__ import annotations

import torch

#: The per-token KL estimators :func:`kl_penalty` knows.
KL_KINDS = ("kl", "abs", "mse")

#: Added to the variance before the square root in :func:`masked_whiten`, so
#: a batch whose entries are all equal whitens to zeros instead of NaN.
WHITEN_EPS = 1e-8


# --------------------------------------------------------------------------
# masked statistics
# --------------------------------------------------------------------------

def _check_shapes(**tensors: torch.Tensor) -> None:
    """Raise ValueError naming the tensors when their shapes differ.

    A shape slip (a batch of logprobs one token longer than the mask) would
    otherwise broadcast silently into a wrong answer.
    """
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shape mismatch: {listed}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1.

    :param x: any shape, usually ``(batch, resp_len)``.
    :param mask: same shape as ``x`` (bool or 0/1 float).
    :param dim: reduce only this dimension (e.g. ``dim=1`` gives one mean
        per row, shape ``(batch,)``); ``None`` reduces everything to a
        0-dim tensor.
    :returns: the mean. Where no entry is selected (an empty row) the
        result is 0, not NaN: a loss over no tokens contributes nothing.
    """
    _check_shapes(x=x, mask=mask)
    keep = mask.bool()
    total = torch.where(keep, x, torch.zeros_like(x))
    count = keep.to(x.dtype)
    if dim is None:
        return total.sum() / count.sum().clamp(min=1)
    return total.sum(dim) / count.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the entries where ``mask`` is 1 (all of them pooled).

    :param x: any shape, usually ``(batch, resp_len)``.
    :param mask: same shape as ``x``.
    :param unbiased: divide by ``n - 1`` (Bessel's correction) instead of ``n``.
    :returns: a 0-dim tensor.
    :raises ValueError: when fewer entries are selected than the estimate
        needs (none; or one with ``unbiased=True``).
    """
    _check_shapes(x=x, mask=mask)
    n = int(mask.bool().sum())
    if n == 0 or (unbiased and n == 1):
        raise ValueError(f"masked_var needs at least {2 if unbiased else 1} selected entries, the mask selects {n}")
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)  # padding is dropped inside masked_mean
    if unbiased:
        var = var * (n / (n - 1))
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise the selected entries of ``x`` to mean 0 and variance 1.

    PPO implementations whiten advantages over the whole batch before the
    update (one statistic over every real token of every sample); this keeps
    the step size independent of the reward's scale.

    :param x: ``(batch, resp_len)`` (any shape works).
    :param mask: same shape as ``x``.
    :param shift_mean: when False the mean is added back, so only the scale
        changes (the sign of each entry relative to 0 is kept).
    :returns: same shape as ``x``; the selected entries have mean 0 (or the
        original mean) and unbiased variance 1 (up to :data:`WHITEN_EPS`);
        padding is exactly 0.

    A single selected entry has no spread to estimate; it whitens to 0 (or
    to itself with ``shift_mean=False``) instead of raising, so a batch of one
    one-token response does not stop a run.
    """
    _check_shapes(x=x, mask=mask)
    n = int(mask.bool().sum())
    if n == 0:
        return torch.zeros_like(x)
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=n > 1)
    white = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        white = white + mean
    return torch.where(mask.bool(), white, torch.zeros_like(white))


# --------------------------------------------------------------------------
# from logits
# --------------------------------------------------------------------------

def _in_float32(fn, logits: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to ``logits`` in at least float32 precision.

    bf16 log-softmax is off by up to ~1e-2 nats per token, which makes
    policy and reference logprobs disagree when they should be equal (the
    "negative KL" symptom). Upcasting the whole ``(batch, len, vocab)`` tensor
    at once doubles the largest tensor of the step, so half-precision logits
    are upcast one row at a time: the extra memory is one row's worth.
    """
    if logits.dtype in (torch.float32, torch.float64):
        return fn(logits)
    return torch.cat([fn(row.float()) for row in logits.split(1, dim=0)], dim=0)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token under its logits: ``log softmax(logits)[token]``.

    Computed as ``-cross_entropy(logits, token)`` (``logit[token] -
    logsumexp(logits)``, fused), so no full ``(batch, len, vocab)``
    log-softmax tensor is kept beyond what its backward needs.

    The logits must be exactly those the tokens were sampled from (same
    temperature, no top-k/top-p filtering left out), or the PPO ratio and
    the KL are measured against the wrong distribution.

    :param logits: ``(batch, resp_len, vocab)``, any float dtype.
    :param tokens: ``(batch, resp_len)`` integer token ids; padding positions
        must hold a valid id (e.g. the pad token), their result is ignored
        downstream by the mask.
    :returns: ``(batch, resp_len)``, float32 for half-precision logits,
        otherwise the logits' dtype.
    """
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)} vs tokens {tuple(tokens.shape)}")

    def per_token(lg: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        # cross_entropy = logsumexp - logit[token], fused: its backward keeps one (softmax - onehot) tensor,
        # where gather + logsumexp kept about two more (B, L, V) tensors alive (bench/results/full_vocab.md)
        flat = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.size(-1)), tok.reshape(-1), reduction="none")
        return -flat.view(tok.shape)

    if logits.dtype in (torch.float32, torch.float64):
        return per_token(logits, tokens)
    # Row by row for half precision, see _in_float32.
    return torch.cat([per_token(lg.float(), tok) for lg, tok in zip(logits.split(1), tokens.split(1))])


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy ``-sum_v p_v log p_v`` of the categorical distribution at each position.

    Logged to watch for policy collapse (entropy falling towards 0).
    ``torch.special.entr`` maps ``p = 0`` to 0, so logits of ``-inf``
    (filtered vocabulary entries) give a finite entropy, not NaN.

    :param logits: ``(batch, resp_len, vocab)``.
    :returns: ``(batch, resp_len)`` in nats.
    """
    return _in_float32(lambda lg: torch.special.entr(torch.softmax(lg, dim=-1)).sum(-1), logits)


# --------------------------------------------------------------------------
# rewards and advantages
# --------------------------------------------------------------------------

def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens.

    With tokens sampled from the policy, ``logp - logp_ref`` is an unbiased
    single-sample estimate of the KL between the two next-token
    distributions; its sum over a response estimates the sequence KL that
    [Z19] (sec. 2.2) and [S20] (sec. 3.4) subtract from the reward.

    :param logprobs: ``(batch, resp_len)`` policy logprobs of the sampled tokens.
    :param ref_logprobs: ``(batch, resp_len)`` reference logprobs of the same tokens.
    :param kind: ``"kl"``: ``logp - logp_ref`` (unbiased, can be negative per
        token); ``"abs"``: ``|logp - logp_ref|``; ``"mse"``:
        ``0.5 * (logp - logp_ref) ** 2`` (never negative, biased).
    :returns: ``(batch, resp_len)``, unmasked.
    """
    _check_shapes(logprobs=logprobs, ref_logprobs=ref_logprobs)
    diff = logprobs - ref_logprobs
    if kind == "kl":
        return diff
    if kind == "abs":
        return diff.abs()
    if kind == "mse":
        return 0.5 * diff.square()
    raise ValueError(f"unknown KL penalty kind {kind!r}; expected one of {', '.join(KL_KINDS)}")


def response_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Number of real tokens in each row of a right-padded mask.

    :param mask: ``(batch, resp_len)``.
    :returns: ``(batch,)`` int64.
    :raises ValueError: when a row has no real token, or a row is not of the
        form ``1 ... 1 0 ... 0`` (the rest of this module assumes right padding).
    """
    keep = mask.bool()
    lengths = keep.sum(1)
    if bool((lengths == 0).any()):
        rows = (lengths == 0).nonzero().flatten().tolist()
        raise ValueError(f"mask rows {rows} have no real token")
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(keep, positions < lengths[:, None]):
        raise ValueError("mask is not right-padded: each row must be ones followed by zeros")
    return lengths


def shape_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float | torch.Tensor,
    kind: str = "kl",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The KL-shaped per-token reward of [Z19] sec. 2.2 / [S20] sec. 3.4.

    ``R(x, y) = score(x, y) - beta * log(pi(y|x) / pi_ref(y|x))``, spread
    over the tokens: each real token gets ``-beta * kl_t``, and the last real
    token (the EOS when one was generated) also gets the sample's score, as
    the score only exists once the response is complete.

    :param scores: ``(batch,)`` the composed reward of each sample.
    :param logprobs: ``(batch, resp_len)`` policy logprobs of the sampled tokens.
    :param ref_logprobs: ``(batch, resp_len)`` reference logprobs.
    :param mask: ``(batch, resp_len)``, right-padded, every row non-empty.
    :param kl_coef: beta, the KL coefficient (a KL controller's ``value``).
    :param kind: the per-token estimator, see :func:`kl_penalty`.
    :returns: ``(rewards, kl)``, both ``(batch, resp_len)`` and 0 on padding;
        ``kl`` is the per-token penalty before multiplying by ``beta``
        (``kl.sum(1)`` is each sample's KL, for logging).
    """
    _check_shapes(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask)
    if scores.shape != mask.shape[:1]:
        raise ValueError(f"shape mismatch: scores {tuple(scores.shape)}, expected ({mask.shape[0]},)")
    lengths = response_lengths(mask)
    keep = mask.bool()
    # Select before subtracting, so NaN/inf on padding never enters the sum.
    zero = torch.zeros_like(logprobs)
    kl = kl_penalty(torch.where(keep, logprobs, zero), torch.where(keep, ref_logprobs, zero), kind)
    rewards = -kl_coef * kl
    positions = torch.arange(mask.shape[1], device=mask.device)
    is_last = positions[None, :] == (lengths - 1)[:, None]  # (batch, resp_len), one True per row
    rewards = torch.where(is_last, rewards + scores.to(rewards.dtype)[:, None], rewards)
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation, [GAE] eq. 16, per response token.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and
    ``A_t = delta_t + gamma * lam * A_{t+1}``, run backwards over time.
    The episode ends after the last real token, so ``V`` and ``A`` past it
    are 0 (no bootstrapping from padding). Returns are the value targets
    ``A_t + V_t`` (the lambda-return).

    The recursion is sequential in time, so this is a loop over
    ``resp_len`` steps, each vectorised over the batch. Call it on detached
    tensors (the rollout's no-grad values): advantages are constants in the
    PPO loss.

    :param rewards: ``(batch, resp_len)``, e.g. from :func:`shape_rewards`.
    :param values: ``(batch, resp_len)`` value estimates at rollout time.
    :param mask: ``(batch, resp_len)``, right-padded.
    :param gamma: discount factor.
    :param lam: GAE lambda (1: Monte-Carlo returns; 0: one-step TD).
    :returns: ``(advantages, returns)``, both ``(batch, resp_len)`` and 0 on
        padding. Advantages are not whitened: see :func:`masked_whiten`.
    """
    _check_shapes(rewards=rewards, values=values, mask=mask)
    keep = mask.bool()
    zero = torch.zeros_like(values)
    # Zeroing padded values is what ends the episode: V_{t+1} is 0 after the
    # last real token of each row, whatever the value head said there.
    values = torch.where(keep, values, zero)
    rewards = torch.where(keep, rewards, zero)
    steps = values.shape[1]
    next_value = zero[:, 0]
    next_adv = zero[:, 0]
    advantages = []
    for t in reversed(range(steps)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = torch.where(keep[:, t], delta + gamma * lam * next_adv, zero[:, t])
        advantages.append(adv)
        next_value, next_adv = values[:, t], adv
    advantages = torch.stack(advantages[::-1], dim=1)
    return advantages, advantages + values


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------

def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate objective, [PPO] eq. 7, as a loss to minimise.

    ``ratio = exp(logp - logp_old)``;
    ``loss = mean_t max(-A_t * ratio, -A_t * clip(ratio, 1 - eps, 1 + eps))``
    over the real tokens (the max of the negatives is the min of [PPO]'s
    pessimistic bound).

    :param logprobs: ``(batch, resp_len)`` current policy logprobs (with grad).
    :param old_logprobs: ``(batch, resp_len)`` logprobs at rollout time.
    :param advantages: ``(batch, resp_len)``, usually whitened.
    :param mask: ``(batch, resp_len)``.
    :param cliprange: eps.
    :returns: ``(loss, stats)``; ``loss`` is a 0-dim tensor; ``stats`` holds
        detached 0-dim tensors: ``"clipfrac"``, the fraction of real tokens
        where the clipped term is the larger (so the token gives no
        gradient), and ``"approx_kl"``, the mean of
        ``0.5 * (logp - logp_old) ** 2``: the "k2" estimator of
        KL(old || new) from samples of the old policy (Schulman, "Approximating
        KL Divergence", 2020), low-variance and never negative.
    """
    _check_shapes(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    keep = mask.bool()
    zero = torch.zeros_like(logprobs)
    # Select before exp(): padding becomes ratio 1 with advantage 0, so a
    # huge padded logprob cannot overflow into inf * 0 = NaN gradients.
    log_ratio = torch.where(keep, logprobs - old_logprobs, zero)
    advantages = torch.where(keep, advantages, zero)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).to(ratio.dtype), mask),
            "approx_kl": masked_mean(0.5 * log_ratio.square(), mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss, as in the PPO baselines used by [Z19] and [S20].

    The new value may move at most ``cliprange_value`` from the rollout's
    value; the loss is the larger of the clipped and unclipped squared
    errors, so clipping only ever makes the update more cautious:
    ``loss = 0.5 * mean_t max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)``.

    :param values: ``(batch, resp_len)`` current value head output (with grad).
    :param old_values: ``(batch, resp_len)`` values at rollout time.
    :param returns: ``(batch, resp_len)`` targets from :func:`compute_gae`.
    :param mask: ``(batch, resp_len)``.
    :param cliprange_value: c, in the units of the value.
    :returns: ``(loss, stats)``; ``stats["clipfrac"]`` (detached) is the
        fraction of real tokens where the clipped error is the larger.
    """
    _check_shapes(values=values, old_values=old_values, returns=returns, mask=mask)
    keep = mask.bool()
    zero = torch.zeros_like(values)
    values = torch.where(keep, values, zero)
    old_values = torch.where(keep, old_values, zero)
    returns = torch.where(keep, returns, zero)
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    err_unclipped = (values - returns).square()
    err_clipped = (values_clipped - returns).square()
    loss = 0.5 * masked_mean(torch.maximum(err_unclipped, err_clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((err_clipped > err_unclipped).to(values.dtype), mask)}
    return loss, stats


def first_nonfinite(named: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> tuple[str, str] | None:
    """The first of ``named`` tensors holding NaN or inf where it counts, or ``None``.

    :param named: name -> tensor; a tensor of the same shape as ``mask`` is
        looked at only where ``mask`` is nonzero (padding may hold anything),
        any other tensor everywhere.
    :param mask: ``(B, L)`` float or bool, 1 on real response tokens.
    :returns: ``(name, detail)``: how many values are bad and the first one's
        position and value, for the error message.
    """
    for name, x in named.items():
        bad = ~torch.isfinite(x.detach())
        if mask is not None and x.shape == mask.shape:
            bad &= mask.bool()
        if bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0])
            return name, (f"{int(bad.sum())} of {x.numel()} values; the first, at index {where}, "
                          f"is {float(x.detach()[where])}")
    return None
