"""PPOTrainer.step: splitting a mini-batch into micro-batches changes memory, not the update."""

import copy

import pytest
import torch
from test_ppo_rollout import SAMPLING, queries, tiny_policy

from rewardkit.ppo.kl import FixedKLController
from rewardkit.ppo.rollout import sample
from rewardkit.ppo.trainer import PPOTrainer
from rewardkit.recipe.schema import PPOSection


def run_step(policy, rollout, micro):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True, mixed_precision="no")
    # plain SGD: the parameter change is lr x gradient, so equal updates mean equal gradients
    optimizer = torch.optim.SGD(policy.trainable_parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cfg = PPOSection(batch_size=3, mini_batch_size=3, ppo_epochs=1)
    trainer = PPOTrainer(policy, policy, optimizer, scheduler, acc, cfg, SAMPLING, FixedKLController(0.2),
                         micro_batch_size=micro)
    stats = trainer.step(rollout, torch.tensor([1.0, -0.5, 0.25]), generator=torch.Generator().manual_seed(0))
    return stats, [p.detach().clone() for p in policy.trainable_parameters()]


@pytest.mark.parametrize("micro", [1, 2])
def test_micro_batches_give_the_same_update_as_the_whole_mini_batch(micro):
    policy = tiny_policy(lora_b_zero=False)
    q, m = queries()
    torch.manual_seed(5)
    # rows end at different lengths (limits 9, 4, 7), so the pieces are trimmed to different widths
    rollout = sample(policy, q, m, torch.tensor([9, 4, 7]), SAMPLING)
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    whole_stats, whole = run_step(copy.deepcopy(policy), rollout, None)
    micro_stats, pieces = run_step(copy.deepcopy(policy), rollout, micro)
    moved = max((w - b).abs().max().item() for w, b in zip(whole, before))
    assert moved > 1e-4  # the step did change the weights, so the comparison below means something
    for w, p in zip(whole, pieces):
        assert torch.allclose(w, p, atol=1e-6)
    for key in ("loss/policy", "loss/value", "loss/total", "policy/clipfrac", "policy/entropy", "grad_norm", "kl"):
        assert micro_stats[key] == pytest.approx(whole_stats[key], abs=1e-5)
