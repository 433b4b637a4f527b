"""The PPO math against hand-computed tensors.

Most cases use two responses of different lengths, right-padded:
row 0 has 3 real tokens, row 1 has 2 (its third position is padding).
Expected values are worked out by hand in the comments; float64 keeps the
comparisons tight.
"""

import math

import pytest
import torch

from rewardkit.ppo.core import (
    compute_gae,
    entropy_from_logits,
    kl_penalty,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    response_lengths,
    shape_rewards,
    value_loss,
)

F64 = torch.float64
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=F64)  # lengths 3 and 2
PAD = ~MASK.bool()


def t(rows):
    return torch.tensor(rows, dtype=F64)


def with_padding(x, value):
    """``x`` with every padded position of MASK set to ``value``."""
    return torch.where(PAD, torch.full_like(x, value), x)


def close(actual, expected, tol=1e-12):
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    assert torch.allclose(actual, expected, atol=tol, rtol=0), f"{actual} != {expected}"


# -- masked statistics ------------------------------------------------------

X = t([[1, 2, 3], [4, 5, 99]])  # 99 is padding


def test_masked_mean_all_and_per_row():
    # Real entries 1, 2, 3, 4, 5: sum 15 over 5 entries.
    close(masked_mean(X, MASK), 3.0)
    # Row 0: (1+2+3)/3 = 2; row 1: (4+5)/2 = 4.5 (the 99 is not counted).
    close(masked_mean(X, MASK, dim=1), [2.0, 4.5])
    # Per column: col 0 (1+4)/2, col 1 (2+5)/2, col 2 only row 0's 3.
    close(masked_mean(X, MASK, dim=0), [2.5, 3.5, 3.0])


def test_masked_mean_accepts_bool_mask_and_empty_rows_give_zero():
    close(masked_mean(X, MASK.bool()), 3.0)
    # A row with nothing selected has no mean; 0 (not NaN) so a loss is not poisoned.
    close(masked_mean(X, torch.zeros_like(MASK), dim=1), [0.0, 0.0])


def test_masked_var():
    # Mean 3, squared deviations 4, 1, 0, 1, 4 sum to 10.
    close(masked_var(X, MASK), 10 / 4)  # unbiased: / (n - 1)
    close(masked_var(X, MASK, unbiased=False), 10 / 5)


def test_masked_var_needs_enough_entries():
    one = torch.zeros_like(MASK)
    one[0, 0] = 1
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(X, one)
    close(masked_var(X, one, unbiased=False), 0.0)  # one entry: no spread
    with pytest.raises(ValueError, match="selects 0"):
        masked_var(X, torch.zeros_like(MASK), unbiased=False)


def test_masked_whiten_by_hand():
    # (x - 3) / sqrt(2.5): deviations -2, -1, 0, 1, 2; padding stays exactly 0.
    s = math.sqrt(2.5 + 1e-8)
    close(masked_whiten(X, MASK), [[-2 / s, -1 / s, 0], [1 / s, 2 / s, 0]])
    # shift_mean=False adds the mean 3 back to the real entries only.
    close(masked_whiten(X, MASK, shift_mean=False), [[3 - 2 / s, 3 - 1 / s, 3], [3 + 1 / s, 3 + 2 / s, 0]])


def test_masked_whiten_gives_mean_0_var_1_over_real_entries():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, generator=gen, dtype=F64) * 5 + 3
    mask = (torch.arange(7) < torch.tensor([7, 3, 1, 5])[:, None]).to(F64)
    white = masked_whiten(x, mask)
    close(masked_mean(white, mask), 0.0)
    close(masked_var(white, mask), 1.0, tol=1e-8)  # eps 1e-8 in the denominator
    assert torch.all(white[mask == 0] == 0)


def test_masked_whiten_single_entry_and_constant():
    one = torch.zeros_like(MASK)
    one[1, 1] = 1
    # One entry has no spread: it is its own mean, so it whitens to 0.
    close(masked_whiten(X, one), torch.zeros_like(X))
    # All entries equal: variance 0, eps keeps the result 0 instead of NaN.
    close(masked_whiten(torch.full_like(X, 7.0), MASK), torch.zeros_like(X))


@pytest.mark.parametrize("pad", [float("nan"), float("inf"), -1e30])
def test_masked_statistics_ignore_padding(pad):
    x = with_padding(X, pad)
    close(masked_mean(x, MASK), masked_mean(X, MASK))
    close(masked_mean(x, MASK, dim=1), masked_mean(X, MASK, dim=1))
    close(masked_var(x, MASK), masked_var(X, MASK))
    close(masked_whiten(x, MASK), masked_whiten(X, MASK))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"shape mismatch: x \(2, 3\), mask \(2, 2\)"):
        masked_mean(X, MASK[:, :2])


# -- from logits ------------------------------------------------------------

# Vocabulary of 3. Logits log(1), log(2), log(1) give probabilities
# 1/4, 1/2, 1/4; all-zero logits give the uniform 1/3 each.
LOGITS = torch.log(t([
    [[1, 2, 1], [1, 1, 1], [1, 2, 1]],
    [[1, 1, 1], [1, 2, 1], [1, 1, 1]],
]))
TOKENS = torch.tensor([[1, 0, 2], [2, 1, 0]])


def test_logprobs_from_logits_by_hand():
    expected = [
        [math.log(1 / 2), math.log(1 / 3), math.log(1 / 4)],  # p(1)=1/2, uniform, p(2)=1/4
        [math.log(1 / 3), math.log(1 / 2), math.log(1 / 3)],
    ]
    close(logprobs_from_logits(LOGITS, TOKENS), expected)


def test_logprobs_invariant_to_logit_shift():
    # softmax(l + c) = softmax(l): large offsets must not overflow.
    close(logprobs_from_logits(LOGITS + 1e4, TOKENS), logprobs_from_logits(LOGITS, TOKENS), tol=1e-9)


def test_logprobs_half_precision_is_computed_in_float32():
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 5, 50, generator=gen) * 4).to(torch.bfloat16)
    tokens = torch.randint(0, 50, (3, 5), generator=gen)
    got = logprobs_from_logits(logits, tokens)
    assert got.dtype == torch.float32
    # The reference: the same bf16 numbers, upcast first, log-softmax in float64.
    want = torch.log_softmax(logits.double(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    # float32 against float64: logprob = logit - logsumexp rounds at the logits' scale (|logit| up to ~16
    # here), so the bound is relative to it, about 8 float32 ulps; computing in bf16 would be off by ~0.05
    close(got.double(), want, tol=1e-6 * logits.abs().max().item())


def test_logprobs_shape_mismatch():
    with pytest.raises(ValueError, match="logits"):
        logprobs_from_logits(LOGITS, TOKENS[:, :2])


def test_entropy_by_hand():
    # Uniform over 3: log 3. (1/4, 1/2, 1/4): -(2 * 1/4 * log 1/4 + 1/2 * log 1/2)
    # = log 2 + (1/2) log 2 = 1.5 log 2.
    h = 1.5 * math.log(2)
    close(entropy_from_logits(LOGITS), [[h, math.log(3), h], [math.log(3), h, math.log(3)]])


def test_entropy_with_filtered_logits_and_bf16():
    # A -inf logit has probability 0 and contributes 0, not NaN: two equal
    # survivors leave log 2.
    logits = torch.tensor([[[0.0, 0.0, float("-inf")]]], dtype=F64)
    close(entropy_from_logits(logits), [[math.log(2)]])
    got = entropy_from_logits(LOGITS.to(torch.bfloat16))
    assert got.dtype == torch.float32
    # float32 against float64 on entropies of about 1: 1e-6 is ~8 float32 ulps; bf16 arithmetic would be ~1e-2 off
    close(got.double(), entropy_from_logits(LOGITS.to(torch.bfloat16).double()), tol=1e-6)


# -- KL penalty and shaped rewards -----------------------------------------

LOGP = t([[-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0]])
REF = t([[-1.5, -2.0, -2.0], [-2.0, -0.5, -4.0]])
# logp - ref, padding excluded:  0.5, 0, -1  /  1, -0.5


def test_kl_penalty_kinds():
    close(kl_penalty(LOGP, REF, "kl"), [[0.5, 0, -1], [1, -0.5, -5]])
    close(kl_penalty(LOGP, REF, "abs"), [[0.5, 0, 1], [1, 0.5, 5]])
    close(kl_penalty(LOGP, REF, "mse"), [[0.125, 0, 0.5], [0.5, 0.125, 12.5]])  # 0.5 * d^2
    with pytest.raises(ValueError, match="unknown KL penalty kind 'full'"):
        kl_penalty(LOGP, REF, "full")


def test_shape_rewards_by_hand():
    scores = t([10.0, 20.0])
    rewards, kl = shape_rewards(scores, LOGP, REF, MASK, kl_coef=0.1)
    # kl on real tokens, 0 on padding (row 1's -5 is padding).
    close(kl, [[0.5, 0, -1], [1, -0.5, 0]])
    # -0.1 * kl, then the score on the last real token: index 2 in row 0,
    # index 1 in row 1 (not the last column).
    close(rewards, [[-0.05, 0, 0.1 + 10], [-0.1, 0.05 + 20, 0]])


def test_shape_rewards_longer_row_second_and_length_one():
    mask = t([[1, 0, 0], [1, 1, 1]])  # lengths 1 and 3
    rewards, kl = shape_rewards(t([1.0, 2.0]), LOGP, REF, mask, kl_coef=0.5)
    # Row 0: only token 0, kl 0.5 -> -0.25 + score 1. Row 1: kl 1, -0.5, -5 -> x -0.5,
    # score 2 on index 2.
    close(rewards, [[0.75, 0, 0], [-0.5, 0.25, 2.5 + 2]])
    close(kl, [[0.5, 0, 0], [1, -0.5, -5]])


def test_shape_rewards_mse_kind_and_padding_invariance():
    rewards, kl = shape_rewards(t([0.0, 0.0]), LOGP, REF, MASK, kl_coef=2.0, kind="mse")
    close(kl, [[0.125, 0, 0.5], [0.5, 0.125, 0]])
    close(rewards, -2.0 * kl)
    for pad in (float("nan"), float("inf")):
        r2, k2 = shape_rewards(t([0.0, 0.0]), with_padding(LOGP, pad), with_padding(REF, pad), MASK, 2.0, "mse")
        close(r2, rewards)
        close(k2, kl)


def test_shape_rewards_rejects_bad_masks():
    with pytest.raises(ValueError, match=r"rows \[1\] have no real token"):
        shape_rewards(t([0.0, 0.0]), LOGP, REF, t([[1, 1, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="not right-padded"):
        shape_rewards(t([0.0, 0.0]), LOGP, REF, t([[1, 0, 1], [1, 1, 0]]), 0.1)
    with pytest.raises(ValueError, match="scores"):
        shape_rewards(t([0.0, 0.0, 0.0]), LOGP, REF, MASK, 0.1)


def test_response_lengths():
    assert response_lengths(MASK).tolist() == [3, 2]


# -- GAE ---------------------------------------------------------------------

REWARDS = t([[1.0, 0.0, 2.0], [0.0, 3.0, 5.0]])   # row 1's 5 is padding
VALUES = t([[0.5, 1.0, 1.5], [2.0, 1.0, 7.0]])    # row 1's 7 is padding


def test_gae_by_hand():
    adv, ret = compute_gae(REWARDS, VALUES, MASK, gamma=0.5, lam=0.5)
    # gamma * lam = 0.25. Row 0, backwards; V after the last token is 0:
    #   t=2: delta = 2 + 0.5*0   - 1.5 = 0.5;   A = 0.5
    #   t=1: delta = 0 + 0.5*1.5 - 1   = -0.25; A = -0.25 + 0.25*0.5    = -0.125
    #   t=0: delta = 1 + 0.5*1   - 0.5 = 1;     A = 1     + 0.25*-0.125 = 0.96875
    # Row 1 ends at t=1, so the padded value 7 must not be bootstrapped from:
    #   t=1: delta = 3 + 0.5*0 - 1 = 2;         A = 2
    #   t=0: delta = 0 + 0.5*1 - 2 = -1.5;      A = -1.5 + 0.25*2 = -1
    close(adv, [[0.96875, -0.125, 0.5], [-1.0, 2.0, 0.0]])
    # returns = A + V on real tokens, 0 on padding.
    close(ret, [[1.46875, 0.875, 2.0], [1.0, 3.0, 0.0]])


def test_gae_gamma_1_lam_1_is_reward_to_go_minus_values():
    adv, ret = compute_gae(REWARDS, VALUES, MASK, gamma=1.0, lam=1.0)
    # Reward-to-go: row 0 [1+0+2, 0+2, 2] = [3, 2, 2]; row 1 [0+3, 3].
    close(adv, [[3 - 0.5, 2 - 1.0, 2 - 1.5], [3 - 2.0, 3 - 1.0, 0]])
    close(ret, [[3, 2, 2], [3, 3, 0]])  # Monte-Carlo returns


def test_gae_gamma_1_lam_1_random_rows():
    gen = torch.Generator().manual_seed(2)
    r = torch.randn(5, 8, generator=gen, dtype=F64)
    v = torch.randn(5, 8, generator=gen, dtype=F64)
    mask = (torch.arange(8) < torch.tensor([8, 1, 4, 6, 2])[:, None]).to(F64)
    adv, ret = compute_gae(r, v, mask, gamma=1.0, lam=1.0)
    r_real = r * mask
    to_go = r_real.flip(1).cumsum(1).flip(1)  # sum of r_k for k >= t, padding is 0
    close(ret, to_go * mask)
    close(adv, (to_go - v) * mask)


def test_gae_lam_0_is_td_error():
    adv, _ = compute_gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.0)
    # delta_t = r_t + 0.9 V_{t+1} - V_t, with V = 0 after the last real token.
    close(adv, [[1 + 0.9 * 1 - 0.5, 0 + 0.9 * 1.5 - 1, 2 - 1.5], [0 + 0.9 * 1 - 2, 3 - 1, 0]])


@pytest.mark.parametrize("pad", [float("nan"), float("inf"), 123.0])
def test_gae_ignores_padding(pad):
    want = compute_gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.95)
    got = compute_gae(with_padding(REWARDS, pad), with_padding(VALUES, pad), MASK, gamma=0.9, lam=0.95)
    for a, b in zip(got, want):
        close(a, b)


# -- policy loss --------------------------------------------------------------

# Five real tokens, cliprange 0.2 (ratios allowed in [0.8, 1.2]):
#   a: ratio 1.5, A=+1: -1.5 vs clipped -1.2 -> max -1.2   (clipped)
#   b: ratio 0.5, A=+1: -0.5 vs clipped -0.8 -> max -0.5   (not clipped: the
#      pessimistic bound keeps a policy that got worse)
#   c: ratio 1.5, A=-1:  1.5 vs clipped  1.2 -> max  1.5   (not clipped)
#   d: ratio 0.5, A=-1:  0.5 vs clipped  0.8 -> max  0.8   (clipped)
#   e: ratio 1,   A=+2: -2 either way       -> -2          (not clipped)
RATIOS = t([[1.5, 0.5, 1.5], [0.5, 1.0, 1.0]])
ADV = t([[1.0, 1.0, -1.0], [-1.0, 2.0, 0.0]])
OLD = t([[-1.0, -2.0, -0.5], [-1.5, -0.7, -1.0]])


def test_policy_loss_by_hand():
    logp = (OLD + RATIOS.log()).requires_grad_()
    loss, stats = policy_loss(logp, OLD, ADV, MASK, cliprange=0.2)
    close(loss.detach(), (-1.2 - 0.5 + 1.5 + 0.8 - 2.0) / 5)  # = -0.28
    close(stats["clipfrac"], 2 / 5)  # a and d
    # 0.5 * (log ratio)^2 averaged: two log 1.5, two log 0.5, one 0.
    close(stats["approx_kl"], 0.5 * (2 * math.log(1.5) ** 2 + 2 * math.log(0.5) ** 2) / 5)
    assert not stats["clipfrac"].requires_grad and not stats["approx_kl"].requires_grad
    loss.backward()
    # d/dlogp of -A * ratio / 5 is -A * ratio / 5 where unclipped, 0 where clipped.
    close(logp.grad, [[0.0, -0.5 / 5, 1.5 / 5], [0.0, -2.0 / 5, 0.0]])


def test_policy_loss_exact_boundary_is_not_clipped():
    # ratio exactly 1 + eps: clip(r) == r, so the token counts as unclipped and its loss is -A * r.
    # r = exp(log 1.25) is 1.25 where exp is correctly rounded, but torch's exp need not be on every CPU,
    # so eps is taken from the ratio torch computes (same shape, same kernel as in the loss): for r in
    # [1, 2], r - 1 and 1 + (r - 1) are exact, so the boundary 1 + eps is r itself, bit for bit.
    d = math.log(1.25)
    old = torch.zeros(2, 3, dtype=F64)
    logp = torch.full((2, 3), d, dtype=F64)
    ratio = torch.exp(logp)
    assert (ratio == ratio[0, 0]).all()
    r = ratio[0, 0].item()
    eps = r - 1.0
    assert 1.0 + eps == r and abs(eps - 0.25) < 1e-15
    loss, stats = policy_loss(logp, old, torch.ones(2, 3, dtype=F64), MASK, cliprange=eps)
    close(loss, -r)
    close(stats["clipfrac"], 0.0)
    # Just past the boundary the clipped term wins: loss -1.25 (not -1.3), clipfrac 1.
    loss, stats = policy_loss(logp + 0.04, old, torch.ones(2, 3, dtype=F64), MASK, cliprange=eps)
    close(loss, -1.25)
    close(stats["clipfrac"], 1.0)


def test_policy_loss_cliprange_0_at_ratio_1():
    # Right after a rollout the ratio is exactly 1: the loss is -mean(A),
    # nothing is clipped even with eps = 0. Mean of A on real tokens: (1+1-1-1+2)/5.
    loss, stats = policy_loss(OLD, OLD, ADV, MASK, cliprange=0.0)
    close(loss, -2 / 5)
    close(stats["clipfrac"], 0.0)
    close(stats["approx_kl"], 0.0)


@pytest.mark.parametrize("pad", [float("nan"), float("inf"), 1e4])
def test_policy_loss_ignores_padding_in_value_and_gradient(pad):
    logp = OLD + RATIOS.log()
    want, want_stats = policy_loss(logp, OLD, ADV, MASK, cliprange=0.2)
    logp_pad = with_padding(logp, pad).requires_grad_()
    got, got_stats = policy_loss(logp_pad, with_padding(OLD, -pad), with_padding(ADV, pad), MASK, cliprange=0.2)
    close(got.detach(), want)
    for key in ("clipfrac", "approx_kl"):
        close(got_stats[key], want_stats[key])
    got.backward()
    assert torch.isfinite(logp_pad.grad).all()
    assert logp_pad.grad[1, 2] == 0


# -- value loss -------------------------------------------------------------------

# cliprange_value 0.2: the new value may sit at most 0.2 from the old one.
#   a: old 1,  V 1.5,  R 2:   (1.5-2)^2 = 0.25 vs clipped V 1.2: (1.2-2)^2 = 0.64 -> 0.64 (clipped)
#   b: old 1,  V 1.5,  R 1.5: 0 vs (1.2-1.5)^2 = 0.09                            -> 0.09 (clipped)
#   c: old 1,  V 1.5,  R 0:   2.25 vs (1.2-0)^2 = 1.44                           -> 2.25
#   d: old 1,  V 1.1,  R 2:   inside the range, both (1.1-2)^2 = 0.81            -> 0.81
#   e: old 0,  V -0.5, R 0:   0.25 vs clipped V -0.2: 0.04                       -> 0.25
V_OLD = t([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
V_NEW = t([[1.5, 1.5, 1.5], [1.1, -0.5, 0.0]])
RET = t([[2.0, 1.5, 0.0], [2.0, 0.0, 0.0]])


def test_value_loss_by_hand():
    values = V_NEW.clone().requires_grad_()
    loss, stats = value_loss(values, V_OLD, RET, MASK, cliprange_value=0.2)
    close(loss.detach(), 0.5 * (0.64 + 0.09 + 2.25 + 0.81 + 0.25) / 5, tol=1e-12)  # = 0.404
    close(stats["clipfrac"], 2 / 5)  # a and b
    loss.backward()
    # Clipped tokens give no gradient; elsewhere d/dV of 0.5 (V-R)^2 / 5 = (V-R)/5.
    close(values.grad, [[0, 0, 1.5 / 5], [(1.1 - 2) / 5, -0.5 / 5, 0]])


def test_value_loss_exact_boundary():
    # V moves exactly 0.25 (exact in binary) with c = 0.25: the clipped value
    # equals V, the errors tie, nothing counts as clipped.
    old = torch.zeros(2, 3, dtype=F64)
    loss, stats = value_loss(old + 0.25, old, old + 1.0, MASK, cliprange_value=0.25)
    close(loss, 0.5 * 0.75 ** 2)
    close(stats["clipfrac"], 0.0)


@pytest.mark.parametrize("pad", [float("nan"), float("inf")])
def test_value_loss_ignores_padding(pad):
    want, want_stats = value_loss(V_NEW, V_OLD, RET, MASK, 0.2)
    values = with_padding(V_NEW, pad).requires_grad_()
    got, got_stats = value_loss(values, with_padding(V_OLD, -pad), with_padding(RET, pad), MASK, 0.2)
    close(got.detach(), want)
    close(got_stats["clipfrac"], want_stats["clipfrac"])
    got.backward()
    assert torch.isfinite(values.grad).all()


def test_float32_inputs_stay_float32():
    f = {k: v.float() for k, v in dict(r=REWARDS, v=VALUES, m=MASK).items()}
    adv, ret = compute_gae(f["r"], f["v"], f["m"], 1.0, 0.95)
    assert adv.dtype == ret.dtype == torch.float32
    assert masked_whiten(adv, f["m"]).dtype == torch.float32
