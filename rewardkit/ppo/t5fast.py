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

``tests/test_ppo_t5fast.py`` checks every function against transformers.
Dropout modules are skipped, so these passes are for ``eval()`` mode only
(:func:`supports` says no in training mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

T5_TYPES = ("t5", "mt5")


def supports(model) -> bool:
    """True when ``model`` has T5's block layout, is in eval mode and not float16.

    float16 is left to transformers: T5's blocks clamp infinities in float16,
    which these passes do not repeat.
    """
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


def encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden state, ``(B, S, d_model)``."""
    stack = model.encoder
    x = stack.embed_tokens(input_ids)
    length = input_ids.size(1)
    first = stack.block[0].layer[0].SelfAttention
    # block 0's relative position bias serves every layer; padded keys get the dtype's minimum
    bias = first.compute_bias(length, length, device=x.device).to(x.dtype)
    bias = bias.masked_fill(attention_mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    for block in stack.block:
        layer = block.layer[0]
        x = x + _attention(layer.SelfAttention, _norm(layer.layer_norm, x), bias)
        x = _feed_forward(block.layer[-1], x)
    return _norm(stack.final_layer_norm, x)


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


def lm_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from decoder hidden states (T5 rescales them first when the embeddings are tied)."""
    config = model.config
    scale = getattr(config, "scale_decoder_outputs", None)  # transformers 5; before, tie_word_embeddings decided
    if config.tie_word_embeddings if scale is None else scale:
        hidden = hidden * config.d_model ** -0.5
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
    (which, for a small model, costs more than the matmuls). Anything else
    stays a module call.
    """
    if type(module) is torch.nn.Linear:
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    base = getattr(module, "base_layer", None)
    vanilla = (type(base) is torch.nn.Linear and hasattr(module, "lora_A") and not getattr(module, "merged", True)
               and not getattr(module, "lora_variant", None) and not getattr(module, "fan_in_fan_out", False))
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
