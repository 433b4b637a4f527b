"""The GRPO / Dr. GRPO / RLOO / k3 formulas against tensors computed by hand (in float64)."""

import math

import pytest
import torch

from rewardkit.algorithms import group

F64 = torch.float64


def t(*rows):
    return torch.tensor(rows, dtype=F64)


def test_grpo_advantages_centre_and_scale_per_group():
    scores = t(1.0, 2.0, 3.0, 10.0, 10.0, 10.0)
    adv = group.group_advantages(scores, 3, "group")
    # group 1: mean 2, sample std 1 -> (-1, 0, 1) / (1 + eps); group 2: all equal -> zeros, not NaN
    eps = group.STD_EPS
    torch.testing.assert_close(adv, t(-1 / (1 + eps), 0.0, 1 / (1 + eps), 0.0, 0.0, 0.0), rtol=1e-12, atol=0)


def test_dr_grpo_does_not_scale_and_batch_scales_by_the_batch_std():
    scores = t(1.0, 3.0, 0.0, 4.0)
    torch.testing.assert_close(group.group_advantages(scores, 2, "none"), t(-1.0, 1.0, -2.0, 2.0))
    std = float(torch.tensor([1.0, 3.0, 0.0, 4.0], dtype=F64).std())  # sample std of the whole batch
    want = t(-1.0, 1.0, -2.0, 2.0) / (std + group.STD_EPS)
    torch.testing.assert_close(group.group_advantages(scores, 2, "batch"), want, rtol=1e-12, atol=0)


def test_rloo_baseline_leaves_the_sample_out():
    scores = t(1.0, 2.0, 6.0)
    # r_i - mean of the other two: 1 - 4, 2 - 3.5, 6 - 1.5
    torch.testing.assert_close(group.rloo_advantages(scores, 3), t(-3.0, -1.5, 4.5))
    # and it is G/(G-1) times the group-centred reward
    torch.testing.assert_close(group.rloo_advantages(scores, 3), 1.5 * group.group_advantages(scores, 3, "none"))
    with pytest.raises(ValueError, match="at least two"):
        group.rloo_advantages(t(1.0), 1)


def test_groups_must_divide_the_batch():
    with pytest.raises(ValueError, match="groups of 4"):
        group.group_advantages(t(1.0, 2.0, 3.0), 4)


def test_k3_is_the_schulman_estimator_and_zero_on_padding():
    logp = t([-1.0, -2.0, 5.0])
    ref = t([-1.5, -1.0, float("nan")])  # NaN on padding must not leak
    mask = t([1.0, 1.0, 0.0])
    got = group.k3_kl(logp, ref, mask)
    d = [-0.5, 1.0]  # ref - logp
    want = t([math.exp(d[0]) - d[0] - 1, math.exp(d[1]) - d[1] - 1, 0.0])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    assert bool((got >= 0).all())
    torch.testing.assert_close(group.sequence_kl(logp, ref, mask), t(0.5 + -1.0))


def test_clipped_surrogate_uses_separate_low_and_high_clips():
    old = t([0.0, 0.0, 0.0, 0.0])  # (1, 4): one sequence of four tokens
    logp = torch.log(t([1.5, 0.5, 1.5, 0.5]))  # so the ratios are 1.5, 0.5, 1.5, 0.5
    adv = t(1.0)  # (1,): one sequence, its advantage broadcast over its tokens
    mask = t([1.0, 1.0, 1.0, 1.0])
    # positive advantage: min(r * A, clip(r, 0.8, 1.3) * A) -> 1.3 for r=1.5, 0.5 for r=0.5
    per_token, stats = group.clipped_surrogate(logp, old, adv, mask, 0.2, 0.3)
    torch.testing.assert_close(per_token[0], t(-1.3, -0.5, -1.3, -0.5), rtol=1e-12, atol=0)
    assert float(stats["clipfrac"]) == 0.5  # the two r=1.5 tokens are clipped
    # negative advantage: min(-r, -clip(r)) -> -1.5 for r=1.5, -0.8 for r=0.5
    per_token, stats = group.clipped_surrogate(logp, old, -adv, mask, 0.2, 0.3)
    torch.testing.assert_close(per_token[0], t(1.5, 0.8, 1.5, 0.8), rtol=1e-12, atol=0)
    assert float(stats["clipfrac"]) == 0.5  # the two r=0.5 tokens


def test_aggregations_as_the_papers_define_them():
    per_token = t([1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0])
    mask = t([1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0])
    kw = dict(rows=2, tokens=4.0, max_length=8)
    # grpo: ((1+2+3)/3 + 4/1) / 2 = 3
    assert float(group.aggregate(per_token, mask, "grpo", **kw)) == pytest.approx(3.0, rel=1e-12)
    # dapo: 10 / 4 tokens
    assert float(group.aggregate(per_token, mask, "dapo", **kw)) == pytest.approx(2.5, rel=1e-12)
    # dr_grpo: 10 / (2 rows * 8)
    assert float(group.aggregate(per_token, mask, "dr_grpo", **kw)) == pytest.approx(10 / 16, rel=1e-12)


@pytest.mark.parametrize("loss_type", group.LOSS_TYPES)
def test_pieces_of_a_mini_batch_add_up_to_its_loss(loss_type):
    gen = torch.Generator().manual_seed(0)
    per_token = torch.rand(6, 5, generator=gen, dtype=F64)
    mask = (torch.arange(5)[None, :] < torch.tensor([5, 3, 1, 4, 2, 5])[:, None]).to(F64)
    per_token = per_token * mask
    kw = dict(rows=6, tokens=float(mask.sum()), max_length=5)
    whole = group.aggregate(per_token, mask, loss_type, **kw)
    parts = sum(group.aggregate(per_token[r], mask[r], loss_type, **kw) for r in ([0, 3], [1, 2, 5], [4]))
    torch.testing.assert_close(parts, whole, rtol=1e-12, atol=0)


def test_all_equal_fraction_counts_groups_that_teach_nothing():
    assert group.all_equal_fraction(t(1.0, 1.0, 0.0, 2.0, 3.0, 3.0), 2) == pytest.approx(2 / 3)
