"""build_optimizer: AdamW, fused where torch has the kernel, the same update as plain AdamW to float rounding."""

import torch

from rewardkit.optim import build_optimizer


def test_fused_adamw_on_cpu_takes_the_same_steps_as_plain_adamw():
    torch.manual_seed(0)
    shapes = [(8, 16), (16, 8), (1, 16), (1,)]
    a = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ours = build_optimizer(a, lr=1e-2, weight_decay=0.01)
    plain = torch.optim.AdamW(b, lr=1e-2, weight_decay=0.01)
    assert ours.param_groups[0]["fused"] is True  # torch >= 2.4 has the CPU kernel (our minimum)
    for step in range(5):
        grads = [torch.randn(s) for s in shapes]
        for params, opt in ((a, ours), (b, plain)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_unsupported_parameters_get_the_default_adamw():
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    opt = build_optimizer([p], lr=1e-3)
    assert not opt.param_groups[0].get("fused")
