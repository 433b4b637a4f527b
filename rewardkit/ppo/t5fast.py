"""Lean forward passes for T5-family models (FLAN-T5, T5, mT5).

They compute the function of transformers' ``T5ForConditionalGeneration``
in ``eval()`` mode (to float rounding: the gated GELU and the RMS norm run as
fused ops) and use the model's own weights, LoRA layers included, so an
adapter and ``disable_adapter()`` work unchanged. What they leave out is
per-call machinery that, on CPU, costs more than a small model's arithmetic:
the attention mask and position bias are built once per pass and shared by
all layers (transformers rebuilds the combined mask in every layer), and
there is no output capturing or cache object. Incremental decoding
(:class:`Stepper`) keeps keys and values in preallocated tensors, computes
the cross-attention keys and values once per rollout and looks its weights
up once, so a step is plain tensor calls.

``tests/test_ppo_t5fast.py`` checks every function against transformers;
``tests/test_ppo_t5fast_configs.py`` does so on T5 v1.0, FLAN-T5 and mT5
configs, LoRA on every projection, and bfloat16. Dropout modules are skipped,
so these passes are for ``eval()`` mode only (:func:`supports` says no in
training mode).

Whatever the tests cover, a run may meet a model or a library version they
did not. :func:`check_fast_path`, called once at run start, compares these
passes with the model's own ``forward`` on the first batch and, if they
disagree, turns them off for that model (:func:`disable`), with one warning:
the run then takes transformers' passes, slower but right.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
import torch.nn.functional as F

T5_TYPES = ("t5", "mt5")


#: Attribute :func:`disable` sets on a model: why the lean passes are off for it.
DISABLED_ATTR = "_rewardkit_t5fast_disabled"


def supports(model) -> bool:
    """True when ``model`` has T5's block layout, is in eval mode and not float16, and is not :func:`disable`-d.

    float16 is left to transformers: T5's blocks clamp infinities in float16,
    which these passes do not repeat. Every caller (``Policy.forward``,
    :func:`rewardkit.ppo.decoding.encode` and ``stepper_for``) asks this, so
    :func:`disable` sends all of them to the model's own passes.
    """
    if getattr(model, DISABLED_ATTR, None):
        return False
    decoder = getattr(model, "decoder", None)
    if getattr(model.config, "model_type", "") not in T5_TYPES or getattr(decoder, "block", None) is None:
        return False
    if not hasattr(model, "lm_head") or model.training:
        return False
    return decoder.final_layer_norm.weight.dtype != torch.float16


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, H * d)`` -> ``(B, H, L, d)``."""
    return x.view(x.size(0), x.size(1), heads, -1).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, L, d)`` -> ``(B, L, H * d)``."""
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)


def _key_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, S)`` 1/0 mask -> ``(B, 1, 1, S)`` additive mask (0 or the dtype's minimum)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        mask == 0, torch.finfo(dtype).min)[:, None, None, :]


def _attention(attn, h: torch.Tensor, bias: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
    """One T5 attention module over ``h`` (keys/values from ``kv``, else ``h``); returns its output projection.

    T5 does not scale scores by ``1/sqrt(d)``; ``bias`` (position bias and
    masks, additive) is the whole mask.
    """
    heads = attn.n_heads
    source = h if kv is None else kv
    q, k, v = _heads(attn.q(h), heads), _heads(attn.k(source), heads), _heads(attn.v(source), heads)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
    return attn.o(_merge(out))


def _norm(layer_norm, x: torch.Tensor) -> torch.Tensor:
    """T5's RMS layer norm, in one fused op where the dtypes allow.

    Same formula as ``T5LayerNorm`` (no mean subtraction, no bias); the
    module itself runs for half-precision weights, where it casts in its own way.
    """
    weight = layer_norm.weight
    if weight.dtype != torch.float32 or x.dtype != torch.float32:
        return layer_norm(x)
    return F.rms_norm(x, weight.shape, weight, layer_norm.variance_epsilon)


def _feed_forward(layer, x: torch.Tensor) -> torch.Tensor:
    """``x + FF(norm(x))``; FLAN-T5's gated tanh-GELU runs as one fused GELU op.

    transformers' ``gelu_new`` builds the same tanh approximation from six
    elementwise ops; ``F.gelu(approximate="tanh")`` agrees with it to float
    rounding (a few 1e-7) and is about twice as fast, forward and backward.
    """
    ff = layer.DenseReluDense
    h = _norm(layer.layer_norm, x)
    if type(ff.act).__name__ == "NewGELUActivation" and hasattr(ff, "wi_0") and ff.wo.weight.dtype == h.dtype:
        return x + ff.wo(_GatedGelu.apply(ff.wi_0(h), ff.wi_1(h)))
    return x + ff(h)


class _GatedGelu(torch.autograd.Function):
    """``gelu_tanh(a) * b``, keeping only ``a`` and ``b`` for backward.

    Autograd would also keep ``gelu(a)``, a third ``(tokens, d_ff)`` tensor
    per layer (about 120 MiB for a FLAN-T5-base mini-batch of 4 dialogues);
    recomputing it in backward is one cheap elementwise op and bit-identical.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return F.gelu(a, approximate="tanh") * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.ops.aten.gelu_backward(grad * b, a, approximate="tanh")
        if ctx.needs_input_grad[1]:
            grad_b = grad * F.gelu(a, approximate="tanh")
        return grad_a, grad_b


#: :func:`encode` packs the prompts' tokens when at least this share of the ``(B, S)`` grid is padding.
PACK_MIN_PADDING = 0.1


def encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden state, ``(B, S, d_model)``; zeros at padded positions.

    When a tenth or more of the prompts' grid is padding (prompts of unequal
    length in one mini-batch), the tokens are *packed*: the projections,
    the feed-forward blocks and the norms, which hold nearly all of the
    encoder's FLOPs, run on the real tokens only, ``(N, d_model)``, and only
    attention sees the ``(B, S)`` layout (keys and values scattered into it,
    outputs gathered back). Each real token's result is the same function
    as without packing (to float rounding); padding costs no matmul work.
    """
    flat = attention_mask.reshape(-1) != 0
    real = int(flat.sum())
    if real == 0 or real > (1 - PACK_MIN_PADDING) * flat.numel():
        index = None
    else:
        index = flat.nonzero().squeeze(1)
    stack = model.encoder
    bsz, length = input_ids.shape
    x = stack.embed_tokens(input_ids if index is None else input_ids.reshape(-1)[index])
    first = stack.block[0].layer[0].SelfAttention
    # block 0's relative position bias serves every layer; padded keys get the dtype's minimum
    bias = first.compute_bias(length, length, device=x.device).to(x.dtype)
    bias = bias.masked_fill(attention_mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    for block in stack.block:
        layer = block.layer[0]
        h = _norm(layer.layer_norm, x)
        if index is None:
            x = x + _attention(layer.SelfAttention, h, bias)
        else:
            x = x + _packed_attention(layer.SelfAttention, h, bias, index, bsz, length)
        x = _feed_forward(block.layer[-1], x)
    x = _norm(stack.final_layer_norm, x)
    return x if index is None else _unpack(x, index, bsz, length)


def _unpack(x: torch.Tensor, index: torch.Tensor, bsz: int, length: int) -> torch.Tensor:
    """``(N, F)`` packed rows -> ``(B, S, F)``, zeros where no row was packed from."""
    return x.new_zeros(bsz * length, x.size(-1)).index_copy(0, index, x).view(bsz, length, -1)


def _packed_attention(attn, h: torch.Tensor, bias: torch.Tensor, index: torch.Tensor, bsz: int,
                      length: int) -> torch.Tensor:
    """:func:`_attention` for packed tokens ``h`` ``(N, d)``: projections packed, attention in ``(B, S)``."""
    heads = attn.n_heads
    q, k, v = (_heads(_unpack(proj(h), index, bsz, length), heads) for proj in (attn.q, attn.k, attn.v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
    return attn.o(_merge(out).reshape(bsz * length, -1).index_select(0, index))


def decode(model, decoder_input_ids: torch.Tensor, encoder_hidden: torch.Tensor,
           encoder_mask: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden state, ``(B, T, d_model)``, teacher-forced with a causal mask."""
    stack = model.decoder
    x = stack.embed_tokens(decoder_input_ids)
    length = decoder_input_ids.size(1)
    first = stack.block[0].layer[0].SelfAttention
    bias = first.compute_bias(length, length, device=x.device).to(x.dtype)
    future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
    bias = bias.masked_fill(future, torch.finfo(x.dtype).min)
    cross = _key_mask(encoder_mask, x.dtype)
    for block in stack.block:
        self_layer, cross_layer, ff_layer = block.layer
        x = x + _attention(self_layer.SelfAttention, _norm(self_layer.layer_norm, x), bias)
        x = x + _attention(cross_layer.EncDecAttention, _norm(cross_layer.layer_norm, x), cross, encoder_hidden)
        x = _feed_forward(ff_layer, x)
    return _norm(stack.final_layer_norm, x)


def scales_decoder_output(model) -> bool:
    """Whether the model's own ``forward`` multiplies the decoder output by ``d_model ** -0.5`` before ``lm_head``.

    Original T5 (v1.0, tied embeddings) does; T5 v1.1 / FLAN-T5 and mT5 do
    not. Which config field says so depends on the transformers version:

    * transformers 5 forces ``tie_word_embeddings = True`` on every T5 and
      mT5 config, so the field no longer says anything. ``T5Config`` keeps
      the checkpoint's answer in ``scale_decoder_outputs``, and
      ``MT5ForConditionalGeneration.forward`` never rescales (mT5
      checkpoints are untied).
    * transformers 4 rescales, T5 and mT5 alike, when ``tie_word_embeddings``.

    Reading ``tie_word_embeddings`` on transformers 5 rescaled every mT5's
    logits by ``d_model ** -0.5``; ``tests/test_ppo_t5fast_configs.py``
    checks each family against transformers.
    """
    config = model.config
    scale = getattr(config, "scale_decoder_outputs", None)
    if scale is not None:
        return bool(scale)
    if config.model_type == "mt5" and _TRANSFORMERS_MAJOR >= 5:
        return False
    return bool(config.tie_word_embeddings)


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


_TRANSFORMERS_MAJOR = _transformers_major()


def lm_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from decoder hidden states, rescaled first where the model does it (:func:`scales_decoder_output`)."""
    if scales_decoder_output(model):
        hidden = hidden * model.config.d_model ** -0.5
    return model.lm_head(hidden)


class Stepper:
    """Incremental decoding, one position per :meth:`step`.

    :param model: the seq2seq model whose modules carry the LoRA layers
        (``peft_model.get_base_model()``).
    :param encoder_hidden: ``(B, S, d_model)`` from :func:`encode`.
    :param encoder_mask: ``(B, S)``, 1 on real prompt tokens.
    :param max_steps: the most positions this rollout decodes.

    The decoder's weights are looked up once, here (see :func:`_bound`):
    a step then makes plain tensor calls, no module calls. So the adapter's
    state (enabled or not) is the one at construction; a stepper lives for
    one rollout.
    """

    def __init__(self, model, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor, max_steps: int):
        self.model = model
        stack = model.decoder
        first = stack.block[0].layer[0].SelfAttention
        self.heads = first.n_heads
        dtype = encoder_hidden.dtype
        # (1, H, T, T): row t is the bias of position t, shared by every layer
        self.position_bias = first.compute_bias(max_steps, max_steps, device=encoder_hidden.device).to(dtype)
        self.cross_mask = _key_mask(encoder_mask, dtype)
        self.embed = stack.embed_tokens
        self.layers = []
        for block in stack.block:
            self_layer, cross_layer, ff_layer = block.layer
            attn, cross = self_layer.SelfAttention, cross_layer.EncDecAttention
            # cross-attention keys (stored transposed) and values: once per rollout, contiguous so no step copies them
            keys_t = _heads(cross.k(encoder_hidden), self.heads).transpose(-1, -2).contiguous()
            values = _heads(cross.v(encoder_hidden), self.heads).contiguous()
            self.layers.append((
                _bound_norm(self_layer.layer_norm), _bound(attn.q), _bound(attn.k), _bound(attn.v), _bound(attn.o),
                _bound_norm(cross_layer.layer_norm), _bound(cross.q), _bound(cross.o), keys_t, values,
                _bound_norm(ff_layer.layer_norm), _bound_feed_forward(ff_layer.DenseReluDense)))
        self.final_norm = _bound_norm(stack.final_layer_norm)
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.max_steps = max_steps

    def step(self, tokens: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ``tokens`` ``(B,)`` at position ``t``; returns ``(hidden (B, d_model), logits (B, V))``."""
        x = self.embed(tokens[:, None])
        bias = self.position_bias[:, :, t:t + 1, :t + 1]
        heads = self.heads
        for i, (norm1, q_proj, k_proj, v_proj, o_proj, norm2, cq_proj, co_proj, cross_keys_t, cross_values,
                norm3, feed_forward) in enumerate(self.layers):
            h = norm1(x)
            q, k, v = _heads(q_proj(h), heads), _heads(k_proj(h), heads), _heads(v_proj(h), heads)
            if len(self.cache) <= i:  # allocated at the first step, in the dtype autocast gives the projections
                bsz, d_kv = k.size(0), k.size(-1)
                self.cache.append((k.new_empty(bsz, heads, d_kv, self.max_steps),
                                   v.new_empty(bsz, heads, self.max_steps, d_kv)))
            keys_t, values = self.cache[i]
            keys_t[..., t:t + 1] = k.transpose(-1, -2)
            values[:, :, t:t + 1] = v
            x = x + o_proj(_merge(_attend_one(q, keys_t[..., :t + 1], values[:, :, :t + 1], bias)))
            q = _heads(cq_proj(norm2(x)), heads)
            x = x + co_proj(_merge(_attend_one(q, cross_keys_t, cross_values, self.cross_mask)))
            x = x + feed_forward(norm3(x))
        hidden = self.final_norm(x)
        return hidden[:, 0], lm_logits(self.model, hidden)[:, 0]


def _bound(module):
    """A function equal to ``module(x)`` in eval mode, with the weights looked up now.

    For ``nn.Linear`` and peft's vanilla LoRA ``Linear`` (unmerged, no
    DoRA-style variant) it is ``F.linear`` on the weights, plus
    ``B(A(x)) * scaling`` per active adapter unless the adapter is disabled:
    peft's own arithmetic, in its order, without its per-call bookkeeping
    (which, for a small model, costs more than the matmuls). Without
    gradient and in float32 the adapter is merged into a copy of the weight
    once, here (``W + scaling * B A``): one matmul per call. Anything else
    stays a module call.
    """
    if type(module) is torch.nn.Linear:
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    base = getattr(module, "base_layer", None)
    vanilla = (type(base) is torch.nn.Linear and hasattr(module, "lora_A") and not getattr(module, "merged", True)
               and not getattr(module, "lora_variant", None) and not getattr(module, "fan_in_fan_out", False)
               and not any(getattr(module, "use_dora", {}).values()))  # peft < 0.16 has no lora_variant
    if not vanilla:
        return module
    weight, bias = base.weight, base.bias
    if module.disable_adapters:
        return lambda x: F.linear(x, weight, bias)
    adapters = [(module.lora_A[name].weight, module.lora_B[name].weight, module.scaling[name])
                for name in module.active_adapters if name in module.lora_A]
    if any(a.dtype != weight.dtype for a, _, _ in adapters) or any(
            module.lora_A[name].bias is not None or module.lora_B[name].bias is not None
            for name in module.active_adapters if name in module.lora_A):
        return module

    if weight.dtype == torch.float32 and not torch.is_grad_enabled() and adapters:
        # Sampling (no gradient, weights fixed for the rollout): one matmul per step with the adapter merged in,
        # instead of three. In float32 the merged product differs from peft's sum by rounding only (~1e-7
        # relative); in half precision merging would round the adapter's small delta into the weight, so not there.
        merged = weight + sum(torch.mm(b, a) * scaling for a, b, scaling in adapters)
        return lambda x: F.linear(x, merged, bias)

    def linear(x):
        y = F.linear(x, weight, bias)
        for a, b, scaling in adapters:
            y = y + F.linear(F.linear(x, a), b) * scaling
        return y

    return linear


def _bound_norm(layer_norm):
    """:func:`_norm` with the weight looked up now."""
    weight = layer_norm.weight
    if weight.dtype != torch.float32:
        return layer_norm
    shape, eps = weight.shape, layer_norm.variance_epsilon
    return lambda x: F.rms_norm(x, shape, weight, eps) if x.dtype == torch.float32 else layer_norm(x)


def _bound_feed_forward(ff):
    """The feed-forward block (without its norm and residual) as in :func:`_feed_forward`, weights looked up now."""
    if type(ff.act).__name__ != "NewGELUActivation" or not hasattr(ff, "wi_0"):
        return ff
    wi_0, wi_1, wo = _bound(ff.wi_0), _bound(ff.wi_1), _bound(ff.wo)
    dtype = ff.wo.weight.dtype
    return lambda h: wo(F.gelu(wi_0(h), approximate="tanh") * wi_1(h)) if h.dtype == dtype else ff(h)


def _attend_one(q: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention of one query position; ``keys_t`` is ``(B, H, d, L)`` so the product needs no copy.

    Two plain matmuls: for a single query, ``scaled_dot_product_attention``
    costs more on CPU than the arithmetic it does.
    """
    scores = torch.matmul(q, keys_t) + bias
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), values)


# --- the run-start self-check -------------------------------------------------------------------------------------

#: :func:`check_fast_path`'s tolerance on the relative RMS difference ``||fast - own|| / ||own||`` in float32.
#: Rounding alone stays near 1e-6 even through a deep model; a real disagreement is orders of magnitude larger.
CHECK_TOL_FP32 = 1e-4
#: The same with bfloat16 in play (bfloat16 weights, autocast, TF32 matmuls): 8 bfloat16 eps.
#: Two bfloat16 passes that round in different places (the fused GELU) drift apart by about one eps.
CHECK_TOL_REDUCED = 8 * torch.finfo(torch.bfloat16).eps
#: :func:`check_fast_path` scales its probe adapter so that it adds about this fraction to each adapted layer's output.
PROBE_ADAPTER_SIZE = 0.25


def disable(model, reason: str) -> None:
    """Turn the lean passes off for this model object: :func:`supports` says no from now on.

    ``model`` may be a rewardkit ``Policy``, a peft model or the bare
    seq2seq model; the mark goes on the bare model, the one every caller of
    :func:`supports` passes.
    """
    setattr(_unwrap(model)[1], DISABLED_ATTR, reason)


def check_fast_path(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    decoder_input_ids: torch.Tensor | None = None, *, rows: int = 4, steps: int = 4,
                    probe_adapter: bool = True) -> bool:
    """Check the lean passes against the model's own ``forward`` on a first batch; turn them off if they disagree.

    Call it once at run start, before the first rollout and inside the same
    ``autocast`` context as the rollouts (``with accelerator.autocast():``),
    so it checks the precision the run uses::

        t5fast.check_fast_path(policy, query_ids, query_mask)

    :param model: a rewardkit ``Policy`` (unwrapped), a peft model or the bare
        seq2seq model.
    :param input_ids: ``(B, S)`` prompt ids of the first batch; only the
        first ``rows`` rows are used.
    :param attention_mask: ``(B, S)``, 1 on real prompt tokens.
    :param decoder_input_ids: ``(B, T)`` decoder inputs. Default: the decoder
        start token followed by the first prompt tokens; any tokens do, as
        both passes compute the same function of them.
    :param steps: how many positions the step-by-step :class:`Stepper` is checked for.
    :param probe_adapter: at run start LoRA's ``B`` is zero, so the adapter
        adds nothing and its arithmetic would go unchecked; with this, every
        LoRA ``B`` gets seeded noise for the check (the adapter then adds
        about :data:`PROBE_ADAPTER_SIZE` of each layer's output) and is
        restored bit for bit afterwards. The global RNG is not touched. No
        backward may be pending through the weights (true at run start).
    :returns: ``True`` when the lean passes stay on; ``False`` when the model
        is not one they serve, was turned off before, or is turned off now.

    Compared, under ``torch.no_grad``: the logits and the decoder's last
    hidden state (the value head's input) of the teacher-forced pass, and of
    the Stepper's first ``steps`` positions, with the model's ``forward``;
    for a peft model also with the adapter disabled (the reference policy).
    They disagree when ``||fast - own|| / ||own||`` exceeds
    :data:`CHECK_TOL_FP32` (float32) or :data:`CHECK_TOL_REDUCED` (bfloat16
    weights or autocast, TF32 or reduced-precision float32 matmuls), or when
    the lean passes raise. Then :func:`disable` sends ``Policy.forward``,
    :func:`rewardkit.ppo.decoding.encode` and ``stepper_for`` to the model's
    own passes and one ``RuntimeWarning`` says by how much they disagreed.
    """
    peft_model, base = _unwrap(model)
    if not supports(base):
        return False
    device = base.lm_head.weight.device
    ids, mask = input_ids[:rows].to(device), attention_mask[:rows].to(device)
    real = mask.sum(-1) > 0  # a prompt without a single real token has no well-defined encoding to compare
    ids, mask = ids[real], mask[real]
    if ids.size(0) == 0:
        return True
    if decoder_input_ids is None:
        config = base.config
        start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id
        dec = torch.cat([torch.full_like(ids[:, :1], start or 0), ids[:, :max(steps, 8) - 1]], dim=1)
    else:
        dec = decoder_input_ids[:rows].to(device)[real]
    steps = min(steps, dec.size(1))
    states = [("adapter on", contextlib.nullcontext)]
    if peft_model is not None:
        states.append(("adapter off", peft_model.disable_adapter))
    problem = None
    with torch.no_grad(), _probe_adapter(base, probe_adapter):
        for label, state in states:
            with state():
                problem = _compare(base, ids, mask, dec, steps)
            if problem:
                problem = f"{label}: {problem}"
                break
    if problem is None:
        return True
    disable(base, problem)
    warnings.warn(f"rewardkit: the lean T5 passes (rewardkit.ppo.t5fast) disagree with "
                  f"{type(base).__name__}.forward on the first batch ({problem}); rewardkit falls back to the "
                  f"model's own forward for this model (slower, same results).", RuntimeWarning, stacklevel=2)
    return False


def _unwrap(model):
    """``(peft model or None, bare seq2seq model)`` of a rewardkit ``Policy``, a peft model or a bare model.

    The bare model holds the LoRA layers and is what every caller of
    :func:`supports` passes; the peft model can disable the adapter.
    """
    while isinstance(getattr(model, "module", None), torch.nn.Module):  # DistributedDataParallel and the like
        model = model.module
    if hasattr(model, "v_head") and hasattr(model, "model"):  # rewardkit.policy.Policy
        model = model.model
    if hasattr(model, "get_base_model"):
        return (model if hasattr(model, "disable_adapter") else None), model.get_base_model()
    return None, model


def _compare(model, ids, mask, dec, steps: int) -> str | None:
    """What differs between the lean passes and ``model.forward`` (``None``: nothing beyond the tolerance)."""
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True,
                use_cache=False)
    want_logits, want_hidden = out.logits, out.decoder_hidden_states[-1]
    try:
        encoded = encode(model, ids, mask)
        hidden = decode(model, dec, encoded, mask)
        logits = lm_logits(model, hidden)
        stepper = Stepper(model, encoded, mask, steps)
        stepped = [stepper.step(dec[:, t], t) for t in range(steps)]
    except Exception as error:  # noqa: BLE001 - a layout these passes do not know; the model's own passes still work
        return f"the lean passes raised {type(error).__name__}: {error}"
    tol = _check_tolerance(model, ids.device)
    pairs = [("teacher-forced logits", logits, want_logits),
             ("teacher-forced decoder hidden states", hidden, want_hidden),
             ("step-by-step logits", torch.stack([lg for _, lg in stepped], 1), want_logits[:, :steps]),
             ("step-by-step decoder hidden states", torch.stack([h for h, _ in stepped], 1), want_hidden[:, :steps])]
    for what, got, want in pairs:
        if got.shape != want.shape:
            return f"{what}: shape {tuple(got.shape)}, the model's {tuple(want.shape)}"
        relative, largest = _difference(got, want)
        if not relative <= tol:  # also true for NaN
            return (f"{what} differ by up to {largest:.3g} where the model's reach {float(want.abs().max()):.3g}; "
                    f"relative RMS difference {relative:.2g}, tolerance {tol:.2g}")
    return None


def _difference(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """``(||got - want|| / ||want||, max |got - want|)`` over the entries where ``want`` is finite.

    ``got`` not finite where ``want`` is counts as an infinite difference.
    """
    got, want = got.float(), want.float()
    finite = torch.isfinite(want)
    got, want = got[finite], want[finite]
    if not bool(torch.isfinite(got).all()):
        return math.inf, math.inf
    diff = got - want
    size, error = float(want.norm()), float(diff.norm())
    relative = error / size if size > 0 else (0.0 if error == 0 else math.inf)
    return relative, float(diff.abs().max()) if diff.numel() else 0.0


def _check_tolerance(model, device: torch.device) -> float:
    """:data:`CHECK_TOL_REDUCED` when anything rounds below float32, else :data:`CHECK_TOL_FP32`."""
    reduced = any(w.dtype != torch.float32 for w in (model.decoder.final_layer_norm.weight, model.lm_head.weight))
    try:
        reduced = reduced or torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4 took no device type
        reduced = reduced or torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
    reduced = reduced or torch.get_float32_matmul_precision() != "highest"
    if device.type == "cuda":
        reduced = reduced or torch.backends.cuda.matmul.allow_tf32
    return CHECK_TOL_REDUCED if reduced else CHECK_TOL_FP32


@contextlib.contextmanager
def _probe_adapter(model, enabled: bool):
    """Inside: every LoRA ``B`` of ``model`` plus seeded noise (see :func:`check_fast_path`); after: as before, exactly.

    The noise's scale makes ``B A x * scaling`` about :data:`PROBE_ADAPTER_SIZE`
    times ``W x``: ``|W x| ~ rms(W) sqrt(in) |x|`` and
    ``|B A x| ~ sigma_B sqrt(r) rms(A) sqrt(in) |x|``. Large enough that a
    wrong or missing adapter term shows, small enough that the probed model
    stays as well conditioned as a trained one.
    """
    saved = []
    try:
        if enabled:
            generator = torch.Generator().manual_seed(0)  # its own generator: the run's RNG stream is not touched
            for module in model.modules():
                lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
                weight = getattr(getattr(module, "base_layer", None), "weight", None)
                if not isinstance(lora_b, torch.nn.ModuleDict) or weight is None or not weight.is_floating_point():
                    continue
                for name in lora_b:
                    if name not in lora_a or name not in getattr(module, "scaling", {}):
                        continue
                    a, b = lora_a[name].weight, lora_b[name].weight
                    denominator = _rms(a) * a.size(0) ** 0.5 * float(module.scaling[name])
                    if denominator == 0:
                        continue
                    sigma = PROBE_ADAPTER_SIZE * _rms(weight) / denominator
                    noise = torch.randn(b.shape, generator=generator) * sigma
                    with torch.no_grad():
                        saved.append((b, b.detach().clone()))
                        b.add_(noise.to(device=b.device, dtype=b.dtype))
        yield
    finally:
        with torch.no_grad():
            for b, original in saved:
                b.copy_(original)


def _rms(weight: torch.Tensor) -> float:
    return float(weight.detach().float().pow(2).mean().sqrt())
