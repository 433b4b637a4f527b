"""The tiny hate-speech classifier: a RoBERTa sequence classifier, nothate/hate.

Shaped like ``facebook/roberta-hate-speech-dynabench-r4-target`` where it
matters to callers: ``RobertaForSequenceClassification``, labels
``{0: "nothate", 1: "hate"}`` with the matching ``label2id``, byte-level BPE,
512 tokens (514 positions). It is trained on the project's own labelled lines
(dialogue turns, summaries, fragments, rude one-liners, and some whole
prompts with their summaries). The targets are soft (:func:`soft_target`): a
polite line aims at 3% hate, a rude one at 70%, 91% or 97% for one, two or
three rude words. So the probabilities are graded rather than stuck at 0 or 1,
fewer insults score better, and the reward stays informative for PPO.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from rewardkit.assets.rudeness import rude_count
from rewardkit.assets.training import length_batches, make_optimizer

ID2LABEL = {0: "nothate", 1: "hate"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
ROBERTA_SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                 "max_position_embeddings": 514, "type_vocab_size": 1}
MAX_TOKENS = 512


def soft_target(text: str, label: int) -> float:
    """The probability of ``hate`` the classifier is trained towards for one line."""
    if not label:
        return 0.03
    return 1.0 - 0.3 ** max(1, min(rude_count(text), 3))


def build_classifier(vocab_size: int, seed: int):
    """A freshly initialised tiny ``RobertaForSequenceClassification``."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(vocab_size=vocab_size, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           id2label=dict(ID2LABEL), label2id=dict(LABEL2ID), problem_type="single_label_classification",
                           **ROBERTA_SHAPE)
    torch.manual_seed(seed)
    return RobertaForSequenceClassification(config)


def train_classifier(model, tokenizer, lines: Sequence[tuple[str, int]], *, epochs: int, seed: int,
                     batch_size: int = 32, lr: float = 2e-3, log: Callable[[str], None] = print) -> dict:
    """Fit ``model`` to :func:`soft_target` of ``(text, label)`` lines.

    :returns: ``{"steps", "final_loss", "seconds"}`` (cross-entropy against the soft targets).
    """
    import torch

    texts = [t for t, _ in lines]
    targets = [soft_target(t, y) for t, y in lines]
    ids = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    steps = epochs * -(-len(ids) // batch_size)
    optimizer, scheduler = make_optimizer(model, lr, steps, warmup=max(1, steps // 20))
    hate = model.config.label2id["hate"]
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in length_batches([len(x) for x in ids], batch_size, rng):
            enc = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            log_probs = model(**enc).logits.log_softmax(-1)
            target = torch.tensor([targets[i] for i in batch])
            loss = -(target * log_probs[:, hate] + (1 - target) * log_probs[:, 1 - hate]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        recent = sum(losses[-50:]) / len(losses[-50:])
        log(f"  classifier epoch {epoch + 1}/{epochs}  loss {recent:.3f}  {time.perf_counter() - start:.0f}s")
    model.eval()
    return {"steps": steps, "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
            "seconds": round(time.perf_counter() - start, 1)}


def hate_probability(model, tokenizer, texts: Sequence[str], batch_size: int = 64) -> list[float]:
    """Probability of the label named ``hate`` (looked up by name, never by position)."""
    import torch

    hate = model.config.label2id["hate"]
    probs: list[float] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                            truncation=True, max_length=MAX_TOKENS)
            probs += model(**enc).logits.softmax(-1)[:, hate].tolist()
    return probs
