"""The stand-in models: the real configs, seeded random weights, saved as safetensors.

Configs are written from what the real repositories' ``config.json`` files
hold (as far as this project could check them offline; see
``docs/rehearsal.md`` for what was and was not verified). Weights are
transformers' own initialisation under a fixed seed, with one exception: the
T5's untied ``lm_head`` is drawn with std ``d_model**-0.5`` (the scale of a
tied head), since transformers' std 1.0 for an untied head gives logits far
larger than flan-t5's.
"""

from __future__ import annotations

import json
from pathlib import Path

FLAN_T5_BASE = "google/flan-t5-base"
ROBERTA_HATE = "facebook/roberta-hate-speech-dynabench-r4-target"
TOXIC_BERT = "unitary/toxic-bert"

T5_CONFIG = {
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64, "d_model": 768,
    "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "n_positions": 512,
    "num_decoder_layers": 12, "num_heads": 12, "num_layers": 12, "output_past": True, "pad_token_id": 0,
    "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False, "use_cache": True, "vocab_size": 32128,
}
T5_GENERATION_CONFIG = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}

ROBERTA_CONFIG = {
    "architectures": ["RobertaForSequenceClassification"], "attention_probs_dropout_prob": 0.1,
    "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "id2label": {"0": "nothate", "1": "hate"}, "label2id": {"nothate": 0, "hate": 1},
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514, "model_type": "roberta", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 1, "position_embedding_type": "absolute",
    "type_vocab_size": 1, "use_cache": True, "vocab_size": 50265,
}

_TOXIC_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
TOXIC_BERT_CONFIG = {
    "architectures": ["BertForSequenceClassification"], "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "id2label": {str(i): n for i, n in enumerate(_TOXIC_LABELS)}, "label2id": {n: i for i, n in enumerate(_TOXIC_LABELS)},
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "problem_type": "multi_label_classification",
    "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _save(model, config: dict, out: Path, extra_files: dict | None = None) -> None:
    """``save_pretrained`` (safetensors), then replace config.json with the real repo's keys."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for stray in ("generation_config.json",):
        (out / stray).unlink(missing_ok=True)
    _write_json(out / "config.json", config)
    for name, data in (extra_files or {}).items():
        _write_json(out / name, data)


def build_t5(out: Path, seed: int) -> dict:
    """flan-t5-base's shape (247.6M parameters) with seeded random weights."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(**{k: v for k, v in T5_CONFIG.items() if k != "architectures"})
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    # transformers 5 ties T5's head to the embedding whatever the config says
    # (the real checkpoint stays untied because it stores both tensors): give
    # the head its own tensor so both are saved, as in flan-t5's file.
    head = torch.empty(config.vocab_size, config.d_model).normal_(0.0, config.d_model ** -0.5)
    model.lm_head.weight = torch.nn.Parameter(head)
    _save(model, T5_CONFIG, out, {"generation_config.json": T5_GENERATION_CONFIG})
    return {"params": sum(p.numel() for p in model.parameters())}


def build_classifier(config: dict, out: Path, seed: int) -> dict:
    """A sequence classifier of ``config``'s shape (roberta-base or bert-base) with seeded random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(cfg)
    _save(model, config, out)
    return {"params": sum(p.numel() for p in model.parameters()), "labels": cfg.id2label}
