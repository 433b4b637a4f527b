"""The policy: a seq2seq model with a LoRA adapter and a value head.

The reference policy is the policy PPO started from, never a second copy of
the model in memory (:meth:`Policy.reference`): the same model with its
adapter disabled, or, when a run starts from an existing adapter
(``model.adapter``, e.g. an SFT adapter), a frozen copy of that adapter (a
few MB) switched in instead of the trained one.

The model stays in ``eval()`` mode. Dropout (``lora.dropout``,
``ppo.value_head_dropout``) acts only in the forward pass of the PPO update,
where it regularises as in supervised fine-tuning (:meth:`Policy.dropout`);
rollouts, old and reference logprobs are taken without it, so the sampled
logprobs are exact and KL cannot go negative through dropout noise (the
"negative KL" trouble of the seed's users). The base model's own dropout is
never switched on: the recipe's knobs name LoRA's and the value head's.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from rewardkit.dropout import SparseDropout
from rewardkit.hub import load_model, load_tokenizer
from rewardkit.recipe.schema import LoraSection, ModelSection

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Name of the frozen copy of a starting adapter that serves as the reference policy.
REFERENCE_ADAPTER = "reference"


def _lora_layers(model) -> list:
    """peft's adapter layers of ``model`` (the modules that hold ``lora_A``)."""
    return [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "_active_adapter")]


def _sparse_lora_dropout(model) -> None:
    """Give every LoRA layer a :class:`~rewardkit.dropout.SparseDropout` (same distribution, cheaper on CPU)."""
    for layer in _lora_layers(model):
        for name, module in layer.lora_dropout.items():
            if type(module) is nn.Dropout:
                layer.lora_dropout[name] = SparseDropout(module.p)


def _is_lora_dropout(model, module) -> bool:
    """True when ``module`` is one of the LoRA layers' ``lora_dropout`` modules."""
    ids = getattr(model, "_rk_lora_dropout_ids", None)
    if ids is None:
        ids = {id(d) for m in _lora_layers(model) for d in m.lora_dropout.values()}
        model._rk_lora_dropout_ids = ids
    return id(module) in ids


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU that supports it and float32 elsewhere."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class ValueHead(nn.Module):
    """Dropout + Linear(hidden -> 1) on the decoder's last hidden state (as in the seed)."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = SparseDropout(dropout)
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(batch, len, hidden)`` -> ``(batch, len)`` values, in float32."""
        return self.summary(self.dropout(hidden.to(self.summary.weight.dtype))).squeeze(-1).float()


class Policy(nn.Module):
    """LoRA seq2seq model + value head, in one module so accelerate can wrap it."""

    def __init__(self, model, value_head: ValueHead | None):
        super().__init__()
        self.model = model
        self.v_head = value_head

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None,
                with_values: bool = True, fast: bool = True):
        """Teacher-forced pass: returns ``(logits (B, L, V), values (B, L) or None)``.

        T5-family models take the lean passes of :mod:`rewardkit.ppo.t5fast`
        (same function, less per-call overhead); ``fast=False`` or any other
        model runs the model's own ``forward``.
        """
        from rewardkit.ppo import t5fast

        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        if decoder_attention_mask is None and fast and t5fast.supports(model):
            encoded = t5fast.encode(model, input_ids, attention_mask)
            hidden = t5fast.decode(model, decoder_input_ids, encoded, attention_mask)
            logits = t5fast.lm_logits(model, hidden)
        else:
            out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                        decoder_attention_mask=decoder_attention_mask, output_hidden_states=with_values,
                        use_cache=False)
            logits, hidden = out.logits, (out.decoder_hidden_states[-1] if with_values else None)
        if with_values and self.v_head is None:
            raise ValueError("this policy has no value head (a critic-free algorithm); pass with_values=False")
        return logits, (self.v_head(hidden) if with_values else None)

    @contextlib.contextmanager
    def reference(self):
        """Inside this context the model is the reference policy: the policy PPO started from.

        That is the model with its adapter off, or, when the run started from
        an existing adapter, with the frozen copy :data:`REFERENCE_ADAPTER` of
        it active instead of the trained adapter.
        """
        layers = _lora_layers(self.model)
        if not any(REFERENCE_ADAPTER in getattr(m, "lora_A", {}) for m in layers):
            with self.model.disable_adapter():
                yield self
            return
        # switch the active adapter layer by layer: peft's set_adapter would also flip requires_grad
        saved = [m._active_adapter for m in layers]
        try:
            for m in layers:
                m._active_adapter = [REFERENCE_ADAPTER]
            yield self
        finally:
            for m, active in zip(layers, saved):
                m._active_adapter = active

    @contextlib.contextmanager
    def dropout(self):
        """Inside this context LoRA's and the value head's dropout are active (the update's forward pass)."""
        modules = [m for m in self.modules() if isinstance(m, nn.Dropout) and m.p > 0
                   and ((self.v_head is not None and m is self.v_head.dropout) or _is_lora_dropout(self.model, m))]
        for m in modules:
            m.train()
        try:
            yield self
        finally:
            for m in modules:
                m.eval()

    def trainable_parameters(self):
        """The parameters PPO updates: LoRA weights and the value head."""
        return [p for p in self.parameters() if p.requires_grad]


def build_policy(model_cfg: ModelSection, lora_cfg: LoraSection, *, value_head_dropout: float | None,
                 device: torch.device, base_dir=None, reference_adapter="start"):
    """Load the base model, attach (or load) the LoRA adapter and a value head.

    :param value_head_dropout: the value head's dropout; ``None``: no value
        head at all (GRPO and RLOO have no critic).
    :param reference_adapter: what :meth:`Policy.reference` is. ``"start"`` (training):
        a frozen copy of ``model.adapter`` when the run starts from one, else the
        adapter switched off. ``None``: the adapter switched off. A path: that
        adapter, frozen (eval compares a trained adapter with the one its run
        started from this way).
    :returns: ``(policy, tokenizer)``.
    """
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    dtype = pick_dtype(model_cfg.dtype, device)
    tokenizer = load_tokenizer(model_cfg.name, base_dir=base_dir, trust_remote_code=model_cfg.trust_remote_code,
                               revision=model_cfg.revision)
    base = load_model(AutoModelForSeq2SeqLM, model_cfg.name, base_dir=base_dir,
                      trust_remote_code=model_cfg.trust_remote_code, revision=model_cfg.revision, dtype=dtype)
    if not base.config.is_encoder_decoder:
        from rewardkit.errors import RecipeError

        raise RecipeError([("model.name", f"'{model_cfg.name}' is not an encoder-decoder (seq2seq) model")])
    if model_cfg.adapter:
        from rewardkit.hub import resolve

        from rewardkit.errors import RecipeError
        from rewardkit.recipe.adapter import adapter_problems

        path = resolve(model_cfg.adapter, base_dir)
        problems = adapter_problems(path, lora_cfg)
        if problems:
            raise RecipeError([(".".join(map(str, key)), msg) for key, msg in problems])
        model = PeftModel.from_pretrained(base, path, is_trainable=True)
        if reference_adapter == "start":
            # the reference is the policy PPO starts from: a frozen copy of the starting adapter
            reference_adapter = path
        if reference_adapter is not None:
            model.load_adapter(resolve(reference_adapter, base_dir), adapter_name=REFERENCE_ADAPTER,
                               is_trainable=False)
    else:
        lora = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                          target_modules=list(lora_cfg.target_modules), bias=lora_cfg.bias,
                          task_type=TaskType.SEQ_2_SEQ_LM)
        model = get_peft_model(base, lora)
    _sparse_lora_dropout(model)
    hidden = getattr(base.config, "d_model", None) or base.config.hidden_size
    head = ValueHead(hidden, value_head_dropout) if value_head_dropout is not None else None
    policy = Policy(model, head).to(device)
    policy.eval()
    return policy, tokenizer

