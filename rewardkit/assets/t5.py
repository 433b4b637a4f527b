"""The tiny T5 policy: a flan-t5-shaped model, trained briefly on prompt -> summary.

flan-t5's shape in miniature: gated-GELU feed-forward, an lm_head not tied to
the embedding, relative position buckets, ``<pad>`` as decoder start. Unlike
flan-t5, dropout is 0: it cost a third of the training time (attention
dropout over long dialogues), a few minutes of training do not overfit, and
without it the policy's forward pass is deterministic for PPO. A few minutes of training on 2 cores is enough for it to write
summary-like text: it names the people and details of the dialogue, ends with
``</s>`` most of the time, and sums up rude dialogues rudely about as often
as its references do. It has seen polite summaries of rude dialogues too, so
PPO has a polite habit to strengthen rather than one to invent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from rewardkit.assets.training import length_batches, make_optimizer

#: The model's shape. ~0.6M parameters with a ~1.2k vocabulary.
T5_SHAPE = {"d_model": 96, "d_kv": 24, "d_ff": 192, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4,
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128}
MAX_SOURCE_TOKENS = 320
MAX_TARGET_TOKENS = 48


def build_t5(vocab_size: int, seed: int):
    """A freshly initialised tiny ``T5ForConditionalGeneration``."""
    import torch
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                      is_encoder_decoder=True, **T5_SHAPE)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    # transformers 5 ties T5's lm_head to the embedding whatever the config says
    # (flan-t5 checkpoints stay untied only because they store both tensors), so
    # give the head its own weights. Drawn with std d_model**-0.5, the scale of a
    # tied head: transformers' std 1.0 for an untied head starts training at a
    # loss of ~10 (uniform is ln(vocab) ~ 7) and wastes hundreds of steps.
    head = torch.empty(vocab_size, T5_SHAPE["d_model"]).normal_(0.0, T5_SHAPE["d_model"] ** -0.5)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return model


def save_t5(model, tokenizer, path) -> None:
    """``save_pretrained`` both, recording in ``config.json`` that the head is untied.

    transformers 5 writes ``tie_word_embeddings: true`` for every T5; older
    versions would believe it and tie the trained head away, so set it false,
    as flan-t5's own config does.
    """
    import json
    from pathlib import Path

    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    config_file = Path(path) / "config.json"
    config = json.loads(config_file.read_text())
    config["tie_word_embeddings"] = False
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _encode(tokenizer, prompts: Sequence[str], targets: Sequence[str]):
    sources = tokenizer(list(prompts), truncation=True, max_length=MAX_SOURCE_TOKENS)["input_ids"]
    labels = tokenizer(list(targets), truncation=True, max_length=MAX_TARGET_TOKENS)["input_ids"]
    return sources, labels


def _pad(rows: list[list[int]], value: int):
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def train_t5(model, tokenizer, prompts: Sequence[str], targets: Sequence[str], *, steps: int, seed: int,
             batch_size: int = 32, lr: float = 3e-3, log: Callable[[str], None] = print) -> dict:
    """Teacher-forced training on ``prompts`` -> ``targets`` for ``steps`` updates.

    :returns: ``{"steps", "final_loss", "seconds"}`` (loss averaged over the last 50 steps).
    """
    import torch

    sources, labels = _encode(tokenizer, prompts, targets)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer, scheduler = make_optimizer(model, lr, steps, warmup=max(1, steps // 20))
    model.train()
    losses: list[float] = []
    start, step = time.perf_counter(), 0
    while step < steps:
        for batch in length_batches([len(s) for s in sources], batch_size, rng):
            if step >= steps:
                break
            input_ids = _pad([sources[i] for i in batch], 0)
            target = _pad([labels[i] for i in batch], -100)  # -100: ignored by the loss
            loss = model(input_ids=input_ids, attention_mask=(input_ids != 0).long(), labels=target).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            if step % 50 == 0 or step == steps:
                recent = sum(losses[-50:]) / len(losses[-50:])
                log(f"  t5 step {step}/{steps}  loss {recent:.3f}  {time.perf_counter() - start:.0f}s")
    model.eval()
    return {"steps": steps, "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
            "seconds": round(time.perf_counter() - start, 1)}


def sample(model, tokenizer, prompts: Sequence[str], *, seed: int, max_new_tokens: int = 32,
           batch_size: int = 32) -> tuple[list[str], list[bool]]:
    """Sample one completion per prompt the way the PPO recipes do (top_k 0, top_p 1).

    :returns: the decoded texts and, per text, whether the model emitted ``</s>``.
    """
    import torch

    torch.manual_seed(seed)
    texts: list[str] = []
    ended: list[bool] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                            truncation=True, max_length=MAX_SOURCE_TOKENS)
            out = model.generate(**enc, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens)
            texts += tokenizer.batch_decode(out, skip_special_tokens=True)
            ended += [bool((row[1:] == 1).any()) for row in out]
    return texts, ended
