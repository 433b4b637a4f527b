"""PPO off the quickstart path: sampling filters, non-finite values, reduced precision, dropout,
the reference of a run that starts from an adapter, and normalisers shared by processes.

Each test here failed (or could not be written) before the knob issue (#9) was fixed.
"""

import math

import pytest
import torch
from test_ppo_rollout import EOS, PAD, queries, tiny_policy

from rewardkit.errors import NonFiniteError
from rewardkit.ppo.kl import FixedKLController
from rewardkit.ppo.rollout import Sampling, sample, teacher_forced
from rewardkit.ppo.trainer import PPOTrainer
from rewardkit.recipe.schema import PPOSection


def make_trainer(policy, sampling, *, mixed_precision="no", recompute_old=None, lr=0.5, **cfg):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # one process, several precisions: as the runner does per run
    acc = Accelerator(cpu=True, mixed_precision=mixed_precision)
    optimizer = torch.optim.SGD(policy.trainable_parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    ppo = PPOSection(**{"batch_size": 3, "mini_batch_size": 3, "ppo_epochs": 1, **cfg})
    return PPOTrainer(policy, policy, optimizer, scheduler, acc, ppo, sampling, FixedKLController(0.2),
                      recompute_old=recompute_old)


def weights(policy):
    return [p.detach().clone() for p in policy.trainable_parameters()]


# -- sampling filters ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filters", [{"top_k": 2}, {"top_p": 0.3}, {"top_k": 3, "top_p": 0.5, "temperature": 0.7}])
def test_filtered_sampling_trains_on_finite_kl(filters):
    # the adapter moved the policy away from the reference, so the policy's top-k tokens are often outside
    # the reference's top-k: under the filtered distribution their reference logprob was -inf, KL +inf, update NaN
    policy = tiny_policy(lora_b_zero=False)
    sampling = Sampling(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=PAD, min_length=3, **filters)
    q, m = queries()
    torch.manual_seed(1)
    rollout = sample(policy, q, m, torch.tensor([9, 6, 8]), sampling)
    trainer = make_trainer(policy, sampling)
    ref = trainer.reference_logprobs(rollout)
    assert torch.isfinite(ref).all()
    # the old logprobs are those of the unfiltered (scoring) distribution, as the teacher-forced pass takes them
    tf, _, _ = teacher_forced(policy, rollout, sampling)
    torch.testing.assert_close(rollout.logprobs, tf, rtol=1e-4, atol=1e-5)
    # the teacher-forced pass ignores the filters: the same logprobs as a sampling without any
    plain = Sampling(EOS, PAD, PAD, 3, temperature=filters.get("temperature", 1.0))
    unfiltered = teacher_forced(policy, rollout, plain, with_values=False)[0]
    assert torch.equal(unfiltered, tf)
    stats = trainer.step(rollout, torch.tensor([1.0, -0.5, 0.25]), generator=torch.Generator().manual_seed(0))
    assert all(math.isfinite(v) for v in stats.values()), stats
    assert all(torch.isfinite(p).all() for p in policy.trainable_parameters())
    assert stats["kl"] > 0  # a real divergence from the reference, measured finitely


def test_scoring_distribution_is_the_sampling_one_without_filters():
    s = Sampling(EOS, PAD, PAD, min_length=4, temperature=0.7, top_k=5, top_p=0.9)
    assert s.scoring() == Sampling(EOS, PAD, PAD, min_length=4, temperature=0.7)
    plain = Sampling(EOS, PAD, PAD, min_length=4, temperature=0.7)
    assert plain.scoring() is plain and not plain.filtered


# -- nothing non-finite reaches optimizer.step() ---------------------------------------------------------------

def _rollout(policy, sampling=None):
    sampling = sampling or Sampling(EOS, PAD, PAD, min_length=3)
    q, m = queries()
    torch.manual_seed(5)
    return sample(policy, q, m, torch.tensor([9, 4, 7]), sampling), sampling


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_score_stops_before_any_update(bad):
    policy = tiny_policy(lora_b_zero=False)
    rollout, sampling = _rollout(policy)
    trainer = make_trainer(policy, sampling)
    before = weights(policy)
    with pytest.raises(NonFiniteError) as info:
        trainer.step(rollout, torch.tensor([1.0, bad, 0.25]))
    assert info.value.quantity == "scores" and not info.value.weights_changed
    assert "before the update" in str(info.value) and "index (1,)" in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(policy)))


def test_a_non_finite_loss_never_reaches_the_optimizer(monkeypatch):
    from rewardkit.ppo import core

    policy = tiny_policy(lora_b_zero=False)
    policy.v_head.dropout.p = 0.0
    rollout, sampling = _rollout(policy)
    trainer = make_trainer(policy, sampling, batch_size=3, mini_batch_size=1)
    real = core.policy_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):  # the second mini-batch's loss is NaN
        calls["n"] += 1
        loss, stats = real(*args, **kwargs)
        return (loss * math.nan if calls["n"] == 2 else loss), stats

    monkeypatch.setattr(core, "policy_loss", poisoned)
    stepped = []
    original_step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: (stepped.append(1), original_step(*a, **k))
    with pytest.raises(NonFiniteError) as info:
        trainer.step(rollout, torch.tensor([1.0, -0.5, 0.25]), generator=torch.Generator().manual_seed(0))
    assert info.value.quantity in ("loss", "gradient norm")
    assert "mini-batch 1" in str(info.value) and info.value.weights_changed
    assert stepped == [1]  # the first mini-batch stepped, the poisoned second did not
    assert all(torch.isfinite(p).all() for p in policy.trainable_parameters())
    assert all(p.grad is None for p in policy.trainable_parameters())  # its gradients were dropped


# -- reduced precision -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["autocast", "weights"])
def test_bf16_ratio_is_one_on_unchanged_weights(how):
    policy = tiny_policy(lora_b_zero=False)
    policy.v_head.dropout.p = 0.0
    if how == "weights":
        policy.to(torch.bfloat16)
    mixed = "bf16" if how == "autocast" else "no"
    rollout, sampling = _rollout(policy)
    # lr 0: the weights never change, so any ratio other than 1 is rounding between the two passes
    trainer = make_trainer(policy, sampling, mixed_precision=mixed, lr=0.0)
    assert trainer.recompute_old
    stats = trainer.step(rollout, torch.tensor([1.0, -0.5, 0.25]), generator=torch.Generator().manual_seed(0))
    assert abs(stats["policy/approx_kl"]) < 1e-6 and stats["policy/clipfrac"] == 0.0, stats


def test_float32_keeps_the_sampling_pass_logprobs():
    policy = tiny_policy()
    trainer = make_trainer(policy, Sampling(EOS, PAD, PAD))
    assert not trainer.recompute_old


# -- dropout acts in the update's forward pass only ------------------------------------------------------------

def _dropout_policy(p=0.5):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import T5Config, T5ForConditionalGeneration

    from rewardkit.policy import Policy, ValueHead

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=PAD,
                   pad_token_id=PAD, eos_token_id=EOS, dropout_rate=0.5)
    model = get_peft_model(T5ForConditionalGeneration(cfg), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=p, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM))
    for n, w in model.named_parameters():
        if "lora_B" in n:
            w.data.normal_(0, 0.5)
    policy = Policy(model, ValueHead(16, p))
    policy.eval()
    return policy


def test_dropout_context_switches_on_lora_and_value_head_dropout_only():
    policy = _dropout_policy()
    q, m = queries()
    dec = torch.tensor([[PAD, 5, 6], [PAD, 7, 8], [PAD, 9, 10]])
    with torch.no_grad():
        quiet = [policy(q, m, dec) for _ in range(2)]
        with policy.dropout():
            active = [mod for mod in policy.modules() if mod.training]
            noisy = [policy(q, m, dec) for _ in range(2)]
    # only dropout modules (nn.Dropout or its SparseDropout): the T5 blocks, attention and the base model stay in eval
    assert active and all(isinstance(mod, torch.nn.Dropout) for mod in active)
    base_dropouts = [mod for name, mod in policy.model.named_modules()
                     if isinstance(mod, torch.nn.Dropout) and "lora" not in name]
    assert base_dropouts and not any(mod.training for mod in base_dropouts)
    assert torch.equal(quiet[0][0], quiet[1][0]) and torch.equal(quiet[0][1], quiet[1][1])
    assert not torch.equal(noisy[0][0], noisy[1][0])  # LoRA dropout moves the logits
    assert not torch.equal(noisy[0][1], noisy[1][1])  # value-head dropout moves the values
    assert not any(mod.training for mod in policy.modules())  # and everything is back in eval mode


def test_dropout_changes_the_update_not_the_rollout():
    torch.manual_seed(3)
    a, b = _dropout_policy(0.0), _dropout_policy(0.5)
    b.load_state_dict(a.state_dict())
    rollout_a, sampling = _rollout(a)
    rollout_b, _ = _rollout(b)
    assert torch.equal(rollout_a.response_ids, rollout_b.response_ids)  # sampling runs without dropout
    torch.testing.assert_close(rollout_a.logprobs, rollout_b.logprobs, rtol=0, atol=0)
    for policy, rollout in ((a, rollout_a), (b, rollout_b)):
        torch.manual_seed(0)
        make_trainer(policy, sampling).step(rollout, torch.tensor([1.0, -0.5, 0.25]),
                                            generator=torch.Generator().manual_seed(0))
    moved = max((x - y).abs().max().item() for x, y in zip(weights(a), weights(b)))
    assert moved > 1e-4  # same data, same seed: only dropout differs, and the update differs with it


# -- the reference of a run that starts from an adapter --------------------------------------------------------

def test_reference_is_the_starting_adapter(tmp_path):
    from rewardkit.policy import REFERENCE_ADAPTER

    policy = tiny_policy(lora_b_zero=False)
    policy.model.save_pretrained(str(tmp_path / "sft"))
    policy.model.load_adapter(str(tmp_path / "sft"), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and not any(REFERENCE_ADAPTER in n for n in trainable)
    rollout, sampling = _rollout(policy)
    trainer = make_trainer(policy, sampling)
    ref = trainer.reference_logprobs(rollout)
    # the trained adapter equals the starting one at step 0: KL is zero to rounding
    torch.testing.assert_close(ref, rollout.logprobs, rtol=1e-4, atol=1e-5)
    with policy.model.disable_adapter(), torch.no_grad():  # the base model is a different policy
        base = teacher_forced(policy, rollout, sampling, with_values=False)[0]
    assert (base - rollout.logprobs).abs().max() > 1e-2
    trainer.step(rollout, torch.tensor([1.0, -0.5, 0.25]), generator=torch.Generator().manual_seed(0))
    # the switch left every requires_grad as it was, and the reference adapter did not train
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == trainable
    after = trainer.reference_logprobs(rollout)
    torch.testing.assert_close(after, ref, rtol=0, atol=0)


# -- reward normalisers over every process ---------------------------------------------------------------------

def test_normalisers_see_every_process_and_end_identical():
    from rewardkit.compose import Component, ComposedReward
    from rewardkit.recipe.schema import RewardSpec

    class Const:
        needs_references = False

    def composed():
        return ComposedReward([Component(RewardSpec(name="r", normalize=True), Const())])

    rank0, rank1, single = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], composed()
    both = rank0 + rank1
    ranks = [composed(), composed()]
    totals = [r.combine({"r": vals}, gather=lambda _: both) for r, vals in zip(ranks, (rank0, rank1))]
    whole = single.combine({"r": both})
    assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()
    # each process's samples are normalised exactly as in one process that saw the whole batch
    assert totals[0].total + totals[1].total == pytest.approx(whole.total, rel=1e-12)
    assert ranks[1].state_dict()["normalizers"]["r"]["count"] == 6
