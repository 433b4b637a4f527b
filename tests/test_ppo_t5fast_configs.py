"""The lean T5 passes against transformers on every T5 variant rewardkit meets.

Configs: T5 v1.0 (ReLU feed-forward, tied embeddings, so the decoder output
is rescaled by ``d_model ** -0.5``), FLAN-T5 / T5 v1.1 (gated GELU, untied),
mT5 (``MT5ForConditionalGeneration``, gated GELU). Adapters: LoRA on ``q, v``
(the default) and on every projection (``q, k, v, o`` and the feed-forward's
``wi`` or ``wi_0, wi_1`` and ``wo``). Precisions: float32; a bfloat16 model;
a bfloat16 model whose ``wo`` stays float32 (T5's ``_keep_in_fp32_modules``,
which some transformers versions apply when loading in half precision: the
feed-forward then casts back up, and the residual stream becomes float32); a
float32 model under CPU bfloat16 autocast (what ``accelerate``'s
``mixed_precision="bf16"`` runs).

Each case checks the teacher-forced pass (logits and the decoder's last
hidden state, adapter on and off) against the model's own ``forward``, the
step-by-step :class:`~rewardkit.ppo.t5fast.Stepper` against the teacher-forced
decoder, and the gradients of the LoRA weights and value head through
``Policy.forward`` against the generic path (``fast=False``).

Tolerances are relative to the magnitude of the tensor compared (see
:func:`assert_close` and :func:`relative_rms`) and, in bfloat16, multiples of
its eps, so they hold on any CPU whatever its kernels' rounding. The suite
also passed with transformers 4.46.3 and peft 0.13.2 (the stated minimums).
"""

import contextlib

import pytest
import torch

from rewardkit.policy import Policy, ValueHead
from rewardkit.ppo import t5fast
from rewardkit.ppo.rollout import decoder_inputs

EOS, PAD = 1, 0
VOCAB, D_MODEL = 64, 32
#: LoRA B's std in the tests (peft starts it at 0). 0.1 moves the logits by a quarter of their range, beyond every
#: tolerance, and keeps the network as well conditioned as a trained one; 0.5 makes bfloat16 passes of the same
#: function differ by 20% in places (both from float32 alike), which would say nothing about t5fast.
LORA_B_STD = 0.1

#: Which model class and config each variant uses, and how its feed-forward is built.
VARIANTS = {
    "t5-v1.0": ("t5", {"feed_forward_proj": "relu", "tie_word_embeddings": True}),
    "flan-t5": ("t5", {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}),
    "mt5": ("mt5", {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}),
}

#: bfloat16's machine epsilon (2**-7: 8 significant bits).
BF16_EPS = torch.finfo(torch.bfloat16).eps
#: Tolerance, as a fraction of the compared tensor's largest magnitude.
#: float32: the fused GELU / RMS-norm ops round differently from transformers' composed ones (~1e-7 each).
#: bfloat16: two passes that round in different places (the fused GELU, a step vs the whole sequence) drift
#: apart by about one eps; measured up to 1.1 eps here, so 4 eps.
TOL = {"fp32": 1e-5, "bf16": 4 * BF16_EPS, "bf16-wo-fp32": 4 * BF16_EPS, "autocast": 4 * BF16_EPS}
#: Gradients in float32: per tensor, as a fraction of its largest entry (measured ~1e-6).
GRAD_TOL_FP32 = 1e-4
#: Gradients in bfloat16 are compared as relative RMS differences (``relative_rms``), not entry by entry: one
#: rounding that flips a ReLU gate or a near-tie moves single entries of a tensor's gradient by 30% between two
#: correct bfloat16 passes (measured with transformers 4.46, whose eager attention rounds differently). Measured
#: over 3 seeds, transformers 4.46 and 5: mean over tensors <= 0.051, worst tensor <= 0.162. A wrong gradient
#: is off by O(1) in the tensors it touches; `test_bfloat16_passes_are_as_accurate_as_transformers` is the
#: finer check.
GRAD_RMS_TOL_BF16 = {"mean": 16 * BF16_EPS, "worst": 0.5}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = ""):
    """``|actual - expected| <= tol * max|expected|`` elementwise (plus ``tol`` relative)."""
    expected = expected.float()
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual.float(), expected, rtol=tol, atol=tol * max(scale, 1e-12),
                               msg=lambda m: f"{what}: {m}")


def relative_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||``: a whole tensor's error, less noisy than its largest entry."""
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


def targets(variant: str, lora: str) -> list[str]:
    if lora == "qv":
        return ["q", "v"]
    ff = ["wi", "wo"] if VARIANTS[variant][1]["feed_forward_proj"] == "relu" else ["wi_0", "wi_1", "wo"]
    return ["q", "k", "v", "o", *ff]


def build(variant: str, lora: str, precision: str, seed: int = 0) -> Policy:
    """A seeded random tiny model of ``variant`` with a moved LoRA adapter and a value head, in eval mode."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Config, T5ForConditionalGeneration

    family, options = VARIANTS[variant]
    config_cls, model_cls = (T5Config, T5ForConditionalGeneration) if family == "t5" else (
        MT5Config, MT5ForConditionalGeneration)
    torch.manual_seed(seed)
    config = config_cls(vocab_size=VOCAB, d_model=D_MODEL, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                        num_heads=4, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS,
                        dropout_rate=0.1, **options)
    model = model_cls(config)
    if precision.startswith("bf16"):
        model = model.to(torch.bfloat16)
        if precision == "bf16-wo-fp32":  # T5's _keep_in_fp32_modules
            for name, module in model.named_modules():
                if name.endswith(".wo"):
                    module.float()
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets(variant, lora),
                                             task_type=TaskType.SEQ_2_SEQ_LM))
    adapted = {name.split(".")[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(targets(variant, lora))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # pretend training moved the adapter (B starts at 0, which hides LoRA's arithmetic)
            p.data.normal_(0, LORA_B_STD)
    policy = Policy(model, ValueHead(D_MODEL, 0.1))
    policy.eval()
    return policy


def precision_context(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "autocast" else contextlib.nullcontext()


def batch():
    """Two right-padded prompts of different lengths and two decoder inputs (start token + response)."""
    query = torch.tensor([[5, 6, 7, 8, 9, EOS, PAD, PAD], [10, 11, 12, 13, 14, 15, 16, EOS]])
    response = torch.tensor([[4, 5, 6, 7, EOS], [8, 9, 10, 11, 12]])
    return query, (query != PAD).long(), decoder_inputs(response, PAD)


def hf_forward(model, query, mask, dec):
    out = model(input_ids=query, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True,
                use_cache=False)
    return out.logits, out.decoder_hidden_states[-1]


CASES = [(v, lora, p) for v in VARIANTS for lora in ("qv", "all") for p in TOL]
IDS = [f"{v}-lora_{lora}-{p}" for v, lora, p in CASES]


@pytest.mark.parametrize("variant,lora,precision", CASES, ids=IDS)
@torch.no_grad()
def test_teacher_forced_pass_matches_transformers(variant, lora, precision):
    policy = build(variant, lora, precision)
    model = policy.model.get_base_model()
    assert t5fast.supports(model)
    query, mask, dec = batch()
    tol = TOL[precision]
    by_state = {}
    for adapter in (True, False):
        with (contextlib.nullcontext() if adapter else policy.reference()), precision_context(precision):
            want_logits, want_hidden = hf_forward(model, query, mask, dec)
            hidden = t5fast.decode(model, dec, t5fast.encode(model, query, mask), mask)
            logits = t5fast.lm_logits(model, hidden)
        assert logits.dtype == want_logits.dtype and hidden.dtype == want_hidden.dtype
        assert_close(hidden, want_hidden, tol, f"hidden (adapter {adapter})")
        assert_close(logits, want_logits, tol, f"logits (adapter {adapter})")
        by_state[adapter] = want_logits.float()
    # the adapter moves the logits by a quarter of their range (LoRA on q, v) or more, far beyond the tolerance:
    # the LoRA arithmetic was really checked
    moved = (by_state[True] - by_state[False]).abs().max() / by_state[False].abs().max()
    assert moved > 5 * tol


@pytest.mark.parametrize("variant,lora,precision", CASES, ids=IDS)
@torch.no_grad()
def test_stepper_reproduces_the_teacher_forced_decoder(variant, lora, precision):
    policy = build(variant, lora, precision)
    model = policy.model.get_base_model()
    query, mask, dec = batch()
    tol = TOL[precision]
    with precision_context(precision):
        want_logits, want_hidden = hf_forward(model, query, mask, dec)
        stepper = t5fast.Stepper(model, t5fast.encode(model, query, mask), mask, max_steps=dec.size(1))
        steps = [stepper.step(dec[:, t], t) for t in range(dec.size(1))]
    for t, (hidden, logits) in enumerate(steps):
        # position t of the teacher-forced pass saw exactly the tokens fed so far
        assert_close(hidden, want_hidden[:, t], tol, f"hidden at step {t}")
        assert_close(logits, want_logits[:, t], tol, f"logits at step {t}")


@pytest.mark.parametrize("variant,lora,precision", CASES, ids=IDS)
def test_lora_gradients_match_the_generic_path(variant, lora, precision):
    policy = build(variant, lora, precision)
    query, mask, dec = batch()
    grads = []
    for fast in (True, False):
        policy.zero_grad()
        with precision_context(precision):
            logits, values = policy(query, mask, dec, fast=fast)
        # any scalar that depends on every logit and value will do
        (logits.float().logsumexp(-1).sum() + values.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad})
    fast_grads, generic_grads = grads
    assert any("lora_A" in n for n in fast_grads) and fast_grads.keys() == generic_grads.keys()
    if precision == "fp32":
        for name, want in generic_grads.items():
            assert_close(fast_grads[name], want, GRAD_TOL_FP32, name)
    else:
        errors = {name: relative_rms(fast_grads[name], want) for name, want in generic_grads.items()}
        assert sum(errors.values()) / len(errors) <= GRAD_RMS_TOL_BF16["mean"], errors
        assert max(errors.values()) <= GRAD_RMS_TOL_BF16["worst"], errors


BF16_CASES = [case for case in CASES if case[2] != "fp32"]


@pytest.mark.parametrize("variant,lora,precision", BF16_CASES, ids=[f"{v}-lora_{lo}-{p}" for v, lo, p in BF16_CASES])
def test_bfloat16_passes_are_as_accurate_as_transformers(variant, lora, precision):
    """Against the same (bfloat16-rounded) weights in float32, the lean bfloat16 passes err no more than transformers'.

    The direct comparisons above allow a few eps; this says those eps are
    rounding and not a bfloat16-only mistake (which would put the lean passes
    farther from the float32 result than transformers' own bfloat16 pass).
    """
    import copy

    policy = build(variant, lora, precision)
    exact = copy.deepcopy(policy).float()
    query, mask, dec = batch()

    def run(pol, fast, ctx):
        pol.zero_grad()
        with ctx:
            logits, values = pol(query, mask, dec, fast=fast)
        (logits.float().logsumexp(-1).sum() + values.sum()).backward()
        return logits.detach(), {n: p.grad.clone() for n, p in pol.named_parameters() if p.requires_grad}

    fast_logits, fast_grads = run(policy, True, precision_context(precision))
    own_logits, own_grads = run(policy, False, precision_context(precision))
    true_logits, true_grads = run(exact, False, contextlib.nullcontext())
    # logits: measured equal errors (both ~1 eps); half an eps of slack for ties
    assert relative_rms(fast_logits, true_logits) <= 1.5 * relative_rms(own_logits, true_logits) + BF16_EPS / 2

    def mean_error(grads):
        return sum(relative_rms(grads[n], true_grads[n]) for n in true_grads) / len(true_grads)

    # gradients: mean relative RMS error 0.017-0.05 vs 0.017-0.033 over ten seeds (bfloat16 noise; seed 0:
    # 0.024 vs 0.020); with transformers 4.46 either may be the larger
    assert mean_error(fast_grads) <= 3 * mean_error(own_grads)


@pytest.mark.parametrize("variant,lora,precision", CASES, ids=IDS)
def test_run_start_check_keeps_a_correct_fast_path_on(variant, lora, precision, recwarn):
    """No false alarm on any of the configs: the check's tolerances leave room for bfloat16's rounding."""
    policy = build(variant, lora, precision)
    query, mask, _ = batch()
    with precision_context(precision):
        assert t5fast.check_fast_path(policy, query, mask)
    assert t5fast.supports(policy.model.get_base_model())
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("variant,expected", [("t5-v1.0", True), ("flan-t5", False), ("mt5", False)])
def test_decoder_output_rescaled_only_for_tied_t5_v1_0(variant, expected):
    """Original T5 multiplies the decoder output by ``d_model ** -0.5`` before ``lm_head``; FLAN-T5 and mT5 do not.

    transformers 5 forces ``tie_word_embeddings=True`` on T5 and mT5 configs
    alike, so that field cannot decide it (reading it rescaled mT5's logits).
    """
    model = build(variant, "qv", "fp32").model.get_base_model()
    assert t5fast.scales_decoder_output(model) is expected
