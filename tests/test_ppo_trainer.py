"""PPOTrainer.step: splitting a mini-batch into micro-batches changes memory, not the update."""

import copy

import pytest
import torch
from test_ppo_rollout import F64, SAMPLING, queries, tiny_policy

from rewardkit.ppo.kl import FixedKLController
from rewardkit.ppo.rollout import sample
from rewardkit.ppo.trainer import PPOTrainer
from rewardkit.recipe.schema import PPOSection


def run_step(policy, rollout, micro):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True, mixed_precision="no")
    # dropout is random in the update's forward pass: off, so the two updates can be compared exactly
    policy.v_head.dropout.p = 0.0
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
    # an identity claim, so the model runs in float64: in float32 the pieces' matmuls round differently from
    # the whole batch's, by an amount that depends on the CPU and BLAS (it broke abs=1e-5 on a 11.29 grad norm)
    policy = tiny_policy(lora_b_zero=False, dtype=F64)
    q, m = queries()
    torch.manual_seed(5)
    # rows end at different lengths (limits 9, 4, 7), so the pieces are trimmed to different widths
    rollout = sample(policy, q, m, torch.tensor([9, 4, 7]), SAMPLING)
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    whole_stats, whole = run_step(copy.deepcopy(policy), rollout, None)
    micro_stats, pieces = run_step(copy.deepcopy(policy), rollout, micro)
    moved = max((w - b).abs().max().item() for w, b in zip(whole, before))
    assert moved > 1e-4  # the step did change the weights, so the comparison below means something
    # The weights are float64, but the library takes logprobs and values in float32 (process_logits, the value
    # head), so the losses and their gradients carry float32 rounding: about 1e-7 of the step here. The bound is
    # relative to the step, 1e-5 of it; a wrong piece weight or a dropped piece moves the update by percents.
    for w, p in zip(whole, pieces):
        torch.testing.assert_close(p, w, rtol=0, atol=1e-5 * moved)
    # The statistics are float32 (the trainer averages them in float32): relative to their size. loss/policy
    # is a mean of whitened advantages at ratio 1, about 0 up to rounding of terms of size 1, hence the abs part.
    for key in ("loss/policy", "loss/value", "loss/total", "policy/clipfrac", "policy/entropy", "grad_norm", "kl"):
        assert micro_stats[key] == pytest.approx(whole_stats[key], rel=1e-5, abs=1e-6), key


def test_passes_without_gradient_take_as_many_rows_as_the_logits_budget_allows():
    from types import SimpleNamespace

    from rewardkit.algorithms.update import NO_GRAD_LOGITS_BUDGET, Updater

    updater = Updater.__new__(Updater)  # only the two attributes no_grad_chunk reads
    updater.mini_batch_size = 4

    def rows(length, vocab):
        updater.vocab_size = vocab
        return updater.no_grad_chunk(SimpleNamespace(response_ids=torch.zeros(64, length)))

    assert rows(400, 32128) == 4  # the detox recipe's largest shape: one mini-batch, as before
    assert rows(800, 32128) == 4  # never fewer rows than a mini-batch
    assert rows(32, 1697) == NO_GRAD_LOGITS_BUDGET // (32 * 1697)  # the benchmark's tiny shapes: the whole batch
