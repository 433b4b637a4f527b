"""SparseDropout: nn.Dropout's distribution, drawn from the gaps between dropped elements."""

import math

import pytest
import torch

from rewardkit.dropout import SPARSE_MAX_P, SparseDropout, dropped_positions


@pytest.mark.parametrize("p", [0.01, 0.05, 0.2])
def test_each_element_is_dropped_with_probability_p(p):
    g = torch.Generator().manual_seed(0)
    n, trials = 2_000, 200
    hits = torch.zeros(n)
    for _ in range(trials):
        pos = dropped_positions(n, p, generator=g)
        assert (pos[1:] > pos[:-1]).all() and (pos >= 0).all() and (pos < n).all()  # increasing, in range
        hits[pos] += 1
    total = n * trials
    # the overall rate within 6 binomial standard deviations of p
    assert abs(hits.sum() / total - p) < 6 * math.sqrt(p * (1 - p) / total)
    # and no position favoured: the first, middle and last hundred positions each near p
    for block in (hits[:100], hits[n // 2:n // 2 + 100], hits[-100:]):
        assert abs(block.sum() / (100 * trials) - p) < 6 * math.sqrt(p * (1 - p) / (100 * trials))


def test_gaps_are_geometric_so_drops_are_independent():
    # Independent Bernoulli(p) drops <=> gaps geometric: P(gap = 1) = p, mean 1/p, variance (1-p)/p^2.
    p = 0.05
    pos = dropped_positions(2_000_000, p, generator=torch.Generator().manual_seed(1))
    gaps = torch.diff(pos).double()
    k = gaps.numel()
    assert abs(gaps.mean() - 1 / p) < 6 * math.sqrt((1 - p) / p ** 2 / k)
    assert abs((gaps == 1).double().mean() - p) < 6 * math.sqrt(p * (1 - p) / k)
    assert abs(gaps.var() / ((1 - p) / p ** 2) - 1) < 0.05


def test_kept_elements_are_scaled_and_eval_is_the_identity():
    x = torch.randn(64, 128)
    d = SparseDropout(0.1).train()
    y = d(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.9)
    assert 0.8 < kept.float().mean() < 0.98
    assert d.eval()(x) is x
    assert SparseDropout(0.0).train()(x) is x


def test_large_p_is_plain_dropout():
    d = SparseDropout(SPARSE_MAX_P + 0.3).train()
    torch.manual_seed(3)
    a = d(torch.ones(1000))
    torch.manual_seed(3)
    b = torch.nn.functional.dropout(torch.ones(1000), SPARSE_MAX_P + 0.3, True)
    assert torch.equal(a, b)


def test_the_policy_uses_it_for_lora_and_the_value_head():
    from rewardkit.policy import _lora_layers, build_policy
    from rewardkit.recipe.schema import LoraSection, ModelSection

    policy, _ = build_policy(ModelSection(name="asset:tiny-t5", dtype="float32"),
                             LoraSection(r=4, alpha=8, dropout=0.05, target_modules=["q", "v"]),
                             value_head_dropout=0.1, device=torch.device("cpu"))
    layers = _lora_layers(policy.model)
    assert layers and all(isinstance(d, SparseDropout) and d.p == 0.05 for m in layers for d in m.lora_dropout.values())
    assert isinstance(policy.v_head.dropout, SparseDropout)
    with policy.dropout():  # the update's context switches exactly these on
        assert all(d.training for m in layers for d in m.lora_dropout.values()) and policy.v_head.dropout.training
    assert not any(d.training for m in layers for d in m.lora_dropout.values())


def test_gradient_is_zero_where_dropped_and_scaled_where_kept():
    d = SparseDropout(0.1).train()
    x = torch.randn(32, 64, requires_grad=True)
    y = d(x)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], upstream[kept] / 0.9)
    assert (x.grad[~kept] == 0).all()
    # non-contiguous input: same values as on its contiguous copy
    xt = torch.randn(64, 32).t()
    torch.manual_seed(5)
    a = d(xt)
    torch.manual_seed(5)
    b = d(xt.contiguous())
    assert torch.equal(a, b)
