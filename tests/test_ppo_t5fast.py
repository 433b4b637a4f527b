"""The lean T5 passes compute what transformers' T5 computes: logits, values,
gradients, step-by-step decoding, with the adapter on and off."""

import pytest
import torch
from test_ppo_rollout import EOS, PAD, tiny_policy

from rewardkit.ppo import t5fast
from rewardkit.ppo.decoding import encode, extents
from rewardkit.ppo.rollout import decoder_inputs

#: float rounding only: the fused GELU and RMS-norm ops round differently from transformers' composed ones
ATOL = 1e-5


def batch():
    # two prompts of different lengths (right-padded) and two decoder inputs
    query = torch.tensor([[5, 6, 7, 8, EOS, PAD, PAD], [9, 10, 11, 12, 13, 14, EOS]])
    response = torch.tensor([[4, 5, 6, EOS], [7, 8, 9, 3]])
    return query, (query != PAD).long(), decoder_inputs(response, PAD)


def hf_forward(model, query, mask, dec):
    out = model(input_ids=query, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
    return out.logits, out.decoder_hidden_states[-1]


@pytest.mark.parametrize("adapter", [True, False])
@torch.no_grad()
def test_teacher_forced_pass_matches_transformers(adapter):
    policy = tiny_policy(lora_b_zero=False)
    model = policy.model.get_base_model()
    query, mask, dec = batch()
    with policy.reference() if not adapter else torch.no_grad():
        want_logits, want_hidden = hf_forward(model, query, mask, dec)
        hidden = t5fast.decode(model, dec, t5fast.encode(model, query, mask), mask)
        logits = t5fast.lm_logits(model, hidden)
    assert torch.allclose(logits, want_logits, atol=ATOL)
    assert torch.allclose(hidden, want_hidden, atol=ATOL)


def test_policy_forward_fast_and_generic_agree_with_gradients():
    policy = tiny_policy(lora_b_zero=False)
    query, mask, dec = batch()
    grads = []
    for fast in (True, False):
        policy.zero_grad()
        logits, values = policy(query, mask, dec, fast=fast)
        # any scalar that depends on every logit and value will do
        (logits.logsumexp(-1).sum() + values.sum()).backward()
        grads.append([p.grad.clone() for p in policy.trainable_parameters()])
    assert len(grads[0]) > 0
    for fast_grad, hf_grad in zip(*grads):
        assert torch.allclose(fast_grad, hf_grad, atol=1e-4)


@pytest.mark.parametrize("adapter", [True, False])
@torch.no_grad()
def test_stepper_reproduces_the_teacher_forced_decoder(adapter):
    policy = tiny_policy(lora_b_zero=False)
    model = policy.model.get_base_model()
    query, mask, dec = batch()
    with policy.reference() if not adapter else torch.no_grad():
        want_logits, want_hidden = hf_forward(model, query, mask, dec)
        encoded = t5fast.encode(model, query, mask)
        stepper = t5fast.Stepper(model, encoded, mask, max_steps=dec.size(1))
    for t in range(dec.size(1)):
        h, lg = stepper.step(dec[:, t], t)
        # position t of the teacher-forced pass saw exactly the tokens fed so far
        assert torch.allclose(h, want_hidden[:, t], atol=ATOL)
        assert torch.allclose(lg, want_logits[:, t], atol=ATOL)


@torch.no_grad()
def test_chunked_encoding_equals_one_pass_on_real_tokens():
    policy = tiny_policy(lora_b_zero=False)
    model = policy.model.get_base_model()
    query = torch.tensor([[5, 6, EOS, PAD, PAD, PAD], [9, 10, 11, 12, 13, EOS], [7, 8, 9, EOS, PAD, PAD]])
    mask = (query != PAD).long()
    whole = encode(model, query, mask)
    chunked = encode(model, query, mask, chunk=2)
    real = mask.bool()
    assert torch.allclose(chunked[real], whole[real], atol=ATOL)
    # sorted by length, rows 0 and 2 (3 and 4 tokens) share a group cut to width 4: columns 4-5 were never encoded
    assert (chunked[[0, 2], 4:] == 0).all()


def test_extents_are_one_past_the_last_real_position():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]])
    # rows: 2 real tokens; all 4; none (clamped to 1 so a slice is never empty); left padding ends at 3
    assert extents(mask).tolist() == [2, 4, 1, 3]


def test_supports_only_eval_mode_t5():
    policy = tiny_policy()
    model = policy.model.get_base_model()
    assert t5fast.supports(model)
    model.train()
    assert not t5fast.supports(model)  # dropout is skipped by the lean passes, so training mode is not theirs
    model.eval()
    model.config.model_type = "bart"
    assert not t5fast.supports(model)
