"""The lean T5 passes compute what transformers' T5 computes: logits, values,
gradients, step-by-step decoding, with the adapter on and off; and the
run-start check turns them off, with one warning, where they would not.

(Other T5 variants, LoRA targets and bfloat16: ``test_ppo_t5fast_configs.py``.)
"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from test_ppo_rollout import EOS, PAD, tiny_policy

from rewardkit.ppo import t5fast
from rewardkit.ppo.decoding import GenericStepper, encode, extents, stepper_for, use_fast
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
    model.config.model_type = "t5"
    t5fast.disable(policy, "a test says so")  # a Policy, a peft model or the bare model: the mark goes on the bare one
    assert not t5fast.supports(model) and getattr(model, t5fast.DISABLED_ATTR) == "a test says so"


def runtime_warnings(record):
    return [w for w in record if issubclass(w.category, RuntimeWarning)]


def test_run_start_check_keeps_a_correct_fast_path_on_and_leaves_the_model_as_it_was(recwarn):
    policy = tiny_policy()  # LoRA B = 0, as at run start
    query, mask, _ = batch()
    before = {name: t.clone() for name, t in policy.state_dict().items()}
    rng = torch.get_rng_state()
    assert t5fast.check_fast_path(policy, query, mask)
    assert t5fast.supports(policy.model.get_base_model())
    assert not runtime_warnings(recwarn)
    # the probe adapter is gone bit for bit, and the run's random stream was not drawn from
    assert all(torch.equal(before[name], t) for name, t in policy.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def _drop_adapters(module):
    """A broken :func:`t5fast._bound`: the base weight only, as if it did not know peft's LoRA layer."""
    weight = getattr(module, "base_layer", module).weight
    return lambda x: F.linear(x, weight)


def _raise(*args, **kwargs):
    raise RuntimeError("a layout the lean passes do not know")


#: Ways the lean passes can go wrong, each patched into t5fast's internals for one test.
BREAKAGES = {
    # mT5's bug before this check existed: logits rescaled by d_model ** -0.5 where the model does not
    "logit scale": lambda mp: mp.setattr(t5fast, "scales_decoder_output", lambda model: True),
    # the stepper loses LoRA's term: invisible at run start (B = 0) but for the probe adapter
    "stepper drops the adapter": lambda mp: mp.setattr(t5fast, "_bound", _drop_adapters),
    "lean pass raises": lambda mp: mp.setattr(t5fast.Stepper, "__init__", _raise),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_wrong_fast_path_is_turned_off_with_one_warning(breakage, monkeypatch):
    policy = tiny_policy()  # LoRA B = 0, as at run start
    model = policy.model.get_base_model()
    query, mask, dec = batch()
    BREAKAGES[breakage](monkeypatch)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert not t5fast.check_fast_path(policy, query, mask)
    [warning] = runtime_warnings(record)
    assert "falls back to the model's own forward" in str(warning.message)
    assert ("raised RuntimeError" if breakage == "lean pass raises" else "differ by up to") in str(warning.message)
    # every caller now takes transformers' passes: Policy.forward, encode and the stepper
    assert not t5fast.supports(model) and not use_fast(model)
    assert isinstance(stepper_for(model, encode(model, query, mask), mask, 4), GenericStepper)
    with warnings.catch_warnings(record=True) as record:  # asked again, it stays off and quiet
        warnings.simplefilter("always")
        assert not t5fast.check_fast_path(policy, query, mask)
    assert not runtime_warnings(record)
    # the broken internals are still patched in; Policy.forward gives the model's own numbers anyway
    for name, p in policy.model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    with torch.no_grad():
        logits, values = policy(query, mask, dec)
        want_logits, want_values = policy(query, mask, dec, fast=False)
    assert torch.equal(logits, want_logits) and torch.equal(values, want_values)


def test_without_the_probe_adapter_a_lora_bug_hides_at_run_start(monkeypatch):
    """Why the check perturbs LoRA B: at B = 0 an adapter bug changes nothing the check could see."""
    policy = tiny_policy()
    query, mask, _ = batch()
    BREAKAGES["stepper drops the adapter"](monkeypatch)
    assert t5fast.check_fast_path(policy, query, mask, probe_adapter=False)


def test_packed_encoder_equals_the_padded_one_with_gradients(monkeypatch):
    # Packing runs projections and feed-forward blocks on the real tokens only; each real token's
    # hidden state and every LoRA gradient must be what the padded pass gives, to float rounding.
    policy = tiny_policy(lora_b_zero=False)
    model = policy.model.get_base_model()
    query, mask, _ = batch()  # 2 of 14 positions padding: over PACK_MIN_PADDING, so packed
    assert (mask == 0).float().mean() >= t5fast.PACK_MIN_PADDING
    lora = [p for p in policy.parameters() if p.requires_grad]

    def run():
        hidden = t5fast.encode(model, query, mask)
        (hidden[mask.bool()] ** 2).sum().backward()
        grads = [None if p.grad is None else p.grad.clone() for p in lora]
        policy.zero_grad(set_to_none=True)
        return hidden.detach(), grads

    packed, packed_grads = run()
    monkeypatch.setattr(t5fast, "PACK_MIN_PADDING", 1.1)  # never pack
    padded, padded_grads = run()
    real = mask.bool()
    assert torch.allclose(packed[real], padded[real], atol=ATOL)
    assert (packed[~real] == 0).all()  # padded positions are zeros, as chunked encoding leaves them
    assert [a is None for a in packed_grads] == [b is None for b in padded_grads]
    encoder_grads = [(a, b) for a, b in zip(packed_grads, padded_grads) if b is not None]
    assert encoder_grads  # the encoder's LoRA layers got gradients
    for a, b in encoder_grads:
        assert torch.allclose(a, b, atol=ATOL * max(1.0, float(b.abs().max())))
