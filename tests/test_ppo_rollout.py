"""Rollouts: the sampling pass's logprobs/values equal a teacher-forced pass's,
and at step 0 (LoRA B = 0) the policy and the reference agree, so KL is 0."""

import pytest
import torch

from rewardkit.policy import Policy, ValueHead
from rewardkit.ppo.core import shape_rewards
from rewardkit.ppo.rollout import Rollout, Sampling, decoder_inputs, draw, process_logits, sample, teacher_forced

EOS, PAD = 1, 0


def tiny_policy(seed=0, lora_b_zero=True, dtype=torch.float32):
    """A random 2-layer T5 with LoRA on q and v. ``dtype=torch.float64`` for tests that claim an identity
    between two code paths: float32 matmuls in different shapes round differently on another CPU or BLAS,
    float64 leaves only the float32 casts the library itself makes (logits for sampling, values)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=PAD,
                   pad_token_id=PAD, eos_token_id=EOS, dropout_rate=0.1)
    model = get_peft_model(T5ForConditionalGeneration(cfg),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM))
    if not lora_b_zero:  # pretend training moved the adapter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.data.normal_(0, 0.5)
    policy = Policy(model, ValueHead(16, 0.1)).to(dtype)
    policy.eval()
    return policy


#: identity claims (two code paths, one function) run the model in float64, see tiny_policy
F64 = torch.float64


def queries():
    ids = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD], [11, 12, 13, EOS, PAD]])
    return ids, (ids != PAD).long() | (torch.arange(5) == 0).long()


SAMPLING = Sampling(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=PAD, min_length=3)


@pytest.mark.parametrize("lora_b_zero,fast,chunk", [(True, True, None), (False, True, None), (False, True, 2),
                                                    (False, False, None), (False, False, 2)])
def test_sampling_pass_matches_teacher_forced_pass(lora_b_zero, fast, chunk):
    """Both samplers (lean T5 stepper, transformers' forward) against both teacher-forced passes."""
    policy = tiny_policy(lora_b_zero=lora_b_zero, dtype=F64)
    q, m = queries()
    torch.manual_seed(1)
    r = sample(policy, q, m, torch.tensor([12, 12, 12]), SAMPLING, encoder_chunk=chunk, fast=fast)
    lp, values, _ = teacher_forced(policy, r, SAMPLING)
    lp_generic, values_generic, _ = teacher_forced(lambda *a, **k: policy(*a, **k, fast=False), r, SAMPLING)
    assert torch.allclose(lp, lp_generic, atol=1e-5) and torch.allclose(values, values_generic, atol=1e-5)
    # same tokens, same weights, same processing: only float rounding separates the two passes. The model runs
    # in float64, but logprobs are taken in float32 (process_logits casts): logprob = logit - logsumexp with
    # logits up to ~18 here, where one float32 ulp is 2e-6. allclose allows 1e-5 + 1e-5 * |expected|, a few
    # ulps; a real mismatch (a shifted token, a missed EOS mask, another temperature) is 0.1 or more
    assert torch.allclose(r.logprobs, lp, atol=1e-5)
    assert torch.allclose(r.values, values, atol=1e-5)
    assert (r.logprobs[r.mask == 0] == 0).all() and (r.values[r.mask == 0] == 0).all()


def test_kl_is_zero_at_step_zero():
    policy = tiny_policy(lora_b_zero=True, dtype=F64)
    q, m = queries()
    torch.manual_seed(2)
    r = sample(policy, q, m, torch.tensor([10, 10, 10]), SAMPLING)
    with policy.reference():
        ref, _, _ = teacher_forced(policy, r, SAMPLING, with_values=False)
    # LoRA B starts at 0, so the adapter adds nothing: policy == reference up to float rounding (float64 model,
    # float32 logprobs: a few float32 ulps at the logits' scale, as in the test above)
    assert torch.allclose(r.logprobs, ref, atol=1e-5)
    _, kl = shape_rewards(torch.zeros(3), r.logprobs, ref, r.mask, 0.2)
    assert kl.abs().max() < 1e-5


def test_reference_differs_once_adapter_moves():
    policy = tiny_policy(lora_b_zero=False)
    q, m = queries()
    r = sample(policy, q, m, torch.tensor([8, 8, 8]), SAMPLING)
    with policy.reference():
        ref, _, _ = teacher_forced(policy, r, SAMPLING, with_values=False)
    assert not torch.allclose(r.logprobs, ref, atol=1e-3)


class _AddBias(torch.nn.Module):
    def __init__(self, bias):
        super().__init__()
        self.bias = bias

    def forward(self, x):
        return x + self.bias


def test_mask_covers_eos_and_per_row_limits():
    policy = tiny_policy()
    q, m = queries()
    # make EOS overwhelmingly likely so rows end early, right after min_length allows it
    base = policy.model.get_base_model()
    head = base.lm_head
    bias = torch.zeros(50)
    bias[EOS] = 50.0
    base.lm_head = torch.nn.Sequential(head, _AddBias(bias))
    r = sample(policy, q, m, torch.tensor([6, 2, 6]), SAMPLING)
    # min_length=3 counts the start token: EOS is blocked at response positions 0 and 1, so it comes at 2
    # every row is done after 3 steps, so the loop stops there instead of running to the limit of 6
    assert r.response_ids.shape == (3, 3)
    assert r.response_ids[0, 2] == EOS and r.mask[0].tolist() == [1, 1, 1]
    # row 1's own limit is 2 tokens, before EOS is even allowed; its third position is padding
    assert r.mask[1].tolist() == [1, 1, 0] and r.response_ids[1, 2] == PAD
    assert r.lengths.tolist() == [3, 2, 3]


def test_process_logits_blocks_eos_before_min_length_and_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]]).repeat(3, 1)
    out = process_logits(logits, Sampling(eos_token_id=1, pad_token_id=0, decoder_start_token_id=0,
                                          min_length=3, top_k=2), torch.arange(3))
    # positions 0 and 1 are < min_length - 1: EOS (id 1) is -inf; top-2 of the rest keeps ids 3 and 2
    assert torch.isinf(out[0, 1]) and torch.isinf(out[1, 1])
    assert out[0].isfinite().tolist() == [False, False, True, True]
    # position 2 may end: EOS (3.0) and id 3 (2.0) are the top 2
    assert out[2].isfinite().tolist() == [False, True, False, True]
    top_p = process_logits(torch.tensor([[2.0, 1.0, 0.0]]), Sampling(1, 0, 0, top_p=0.5), torch.tensor([5]))
    # softmax(2,1,0) = .665,.245,.090: the first token alone already holds >= 0.5 of the mass
    assert top_p.isfinite().tolist() == [[True, False, False]]


def test_process_logits_matches_transformers_generate_scores():
    """The sampling distribution we re-derive equals what generate() sampled from."""
    policy = tiny_policy(lora_b_zero=False, dtype=F64)
    q, m = queries()
    model = policy.model.get_base_model()
    torch.manual_seed(3)
    out = model.generate(input_ids=q, attention_mask=m, do_sample=True, top_k=5, top_p=0.9, temperature=0.7,
                         min_length=4, max_new_tokens=6, output_scores=True, return_dict_in_generate=True)
    sampling = Sampling(EOS, PAD, PAD, min_length=4, temperature=0.7, top_k=5, top_p=0.9)
    resp = out.sequences[:, 1:]
    with torch.no_grad():
        logits = model(input_ids=q, attention_mask=m, decoder_input_ids=decoder_inputs(resp, PAD)).logits
    ours = process_logits(logits, sampling, torch.arange(resp.size(1))).log_softmax(-1)
    theirs = torch.stack(out.scores, 1).log_softmax(-1)
    finite = theirs.isfinite()
    assert torch.equal(finite, ours.isfinite())
    # both sides are float32 log-softmaxes of the same float64 logits / 0.7 (up to ~25, ulp 2e-6), by different
    # code: 1e-4 is tens of ulps there, and a missed filter or temperature is off by 0.1 or more
    assert torch.allclose(ours[finite], theirs[finite], atol=1e-4)


def test_fast_and_generic_samplers_draw_the_same_tokens():
    # float64: in float32 the two samplers' distributions differ by rounding that depends on the CPU, and a
    # uniform number that lands between the two could draw a different token
    policy = tiny_policy(lora_b_zero=False, dtype=F64)
    q, m = queries()
    rollouts = []
    for fast in (True, False):
        gen = torch.Generator().manual_seed(7)
        rollouts.append(sample(policy, q, m, torch.tensor([10, 10, 10]), SAMPLING, gen, fast=fast))
    fast_r, generic_r = rollouts
    # same uniform numbers, distributions equal up to float rounding: the same tokens come out
    assert torch.equal(fast_r.response_ids, generic_r.response_ids)
    assert torch.allclose(fast_r.logprobs, generic_r.logprobs, atol=1e-5)
    assert torch.allclose(fast_r.values, generic_r.values, atol=1e-5)


def test_draw_follows_the_distribution_and_never_draws_impossible_tokens():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0])
    logprobs = probs.log().expand(20000, 5)
    tokens = draw(logprobs, torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=5).float() / 20000
    # ids 1 and 4 have probability 0; the rest within 3 standard errors (sqrt(p(1-p)/n) <= 0.0036)
    assert counts[1] == 0 and counts[4] == 0
    assert torch.allclose(counts, probs, atol=0.011)
    # a row whose mass sits on the last token only: u stays below the total, so the search never runs off the end
    last_only = torch.tensor([[float("-inf")] * 4 + [0.0]]).expand(100, 5)
    assert (draw(last_only, torch.Generator().manual_seed(1)) == 4).all()


def test_chunked_teacher_forced_pass_equals_the_whole_batch():
    policy = tiny_policy(lora_b_zero=False, dtype=F64)
    q, m = queries()
    torch.manual_seed(4)
    r = sample(policy, q, m, torch.tensor([9, 4, 9]), SAMPLING)
    with torch.no_grad():
        whole, whole_v, _ = teacher_forced(policy, r, SAMPLING)
        parts, parts_v, logits = teacher_forced(policy, r, SAMPLING, chunk=2)
    # groups are length-sorted and trimmed, but each row's numbers do not depend on its neighbours' padding
    assert logits is None
    assert torch.allclose(parts, whole, atol=1e-5) and torch.allclose(parts_v, whole_v, atol=1e-5)


def test_select_and_trimmed_drop_only_all_padding_columns():
    ids = torch.tensor([[5, 6, EOS, PAD], [7, EOS, PAD, PAD], [8, 9, 10, EOS]])
    resp = torch.tensor([[4, 4, PAD], [4, PAD, PAD], [4, 4, 4]])
    mask = (resp != PAD).float()
    r = Rollout(ids, (ids != PAD).long(), resp, mask, -mask, 2 * mask)
    part = r.select(torch.tensor([1, 0])).trimmed()
    # rows 1 and 0: longest prompt 3 tokens, longest response 2 tokens
    assert part.query_ids.tolist() == [[7, EOS, PAD], [5, 6, EOS]]
    assert part.response_ids.tolist() == [[4, PAD], [4, 4]]
    assert part.logprobs.tolist() == [[-1, 0], [-1, -1]] and part.values.tolist() == [[2, 0], [2, 2]]
    assert r.trimmed() is r  # row 2 fills every column: nothing to cut


def test_a_non_t5_model_samples_through_its_own_forward():
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                     pad_token_id=PAD, eos_token_id=EOS, bos_token_id=3, decoder_start_token_id=EOS)
    model = get_peft_model(BartForConditionalGeneration(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type=TaskType.SEQ_2_SEQ_LM))
    policy = Policy(model, ValueHead(16, 0.1)).to(F64)  # an identity claim: float64, see tiny_policy
    policy.eval()
    sampling = Sampling(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=EOS, min_length=3)
    q, m = queries()
    r = sample(policy, q, m, torch.tensor([6, 6, 6]), sampling)
    lp, values, _ = teacher_forced(policy, r, sampling)
    assert torch.allclose(r.logprobs, lp, atol=1e-5) and torch.allclose(r.values, values, atol=1e-5)


def test_process_logits_with_an_int_position_equals_the_tensor_form():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [1.0, 0.5, 0.0, 2.0]])
    sampling = Sampling(eos_token_id=1, pad_token_id=0, decoder_start_token_id=0, min_length=3, top_k=3)
    for t in (0, 1, 2, 5):
        # one decoding step passes t as a plain int; a teacher-forced pass passes a tensor of positions
        as_int = process_logits(logits, sampling, t)
        as_tensor = process_logits(logits, sampling, torch.full((2,), t))
        assert torch.equal(as_int, as_tensor)
    # EOS (id 1) is blocked at t = 0 and 1 (t + 1 < min_length = 3) and the input is left untouched
    assert torch.isinf(process_logits(logits, sampling, 1)[:, 1]).all() and logits[0, 1] == 3.0
    assert process_logits(logits, sampling, 2)[0, 1] == 3.0
