"""Tokenizers trained locally, with the `tokenizers` library, on the project's text.

Two tokenizers, shaped like the real models' ones so that downstream code sees
the same ids for special tokens:

- a T5 tokenizer: Unigram pieces, ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2,
  whitespace split + metaspace pre-tokenisation, ``</s>`` appended;
- a RoBERTa tokenizer: byte-level BPE, ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2,
  ``<unk>`` = 3, ``<mask>`` = 4; unlike roberta-base it adds a prefix space.

Reproducibility: the Unigram trainer iterates hash maps, so two runs give
the same pieces but not always the same order or the last bits of the
scores. :func:`canonical_unigram` fixes both, which makes the saved
``tokenizer.json`` byte-identical from run to run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

T5_SPECIALS = ("<pad>", "</s>", "<unk>")
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def _t5_pre_tokenizer():
    from tokenizers import pre_tokenizers

    # The same pre-tokenizer transformers' T5Tokenizer installs: newlines and
    # runs of spaces become single word boundaries, words get a leading "▁".
    return pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
    ])


def canonical_unigram(vocab: list[tuple[str, float]], n_special: int) -> list[tuple[str, float]]:
    """Put a trained Unigram vocabulary into one canonical order.

    Scores are rounded to 6 decimals (the run-to-run noise is ~1e-14). Single
    characters the trainer appends after pruning get scores that depend on
    hash order, so every single character scored at or below the weakest
    multi-character piece gets one shared score. Pieces are then sorted by
    (score descending, text), special tokens staying first.
    """
    specials, pieces = vocab[:n_special], vocab[n_special:]
    floor = min(score for piece, score in pieces if len(piece) > 1)
    tail = round(floor - 1.0, 6)
    fixed = [(p, tail if len(p) == 1 and s <= floor else round(s, 6)) for p, s in pieces]
    fixed.sort(key=lambda item: (-item[1], item[0]))
    return [(p, 0.0) for p, _ in specials] + fixed


def train_t5_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a Unigram vocabulary and wrap it as a ``T5Tokenizer`` (no sentinel ids)."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = _t5_pre_tokenizer()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(T5_SPECIALS),
                                      unk_token="<unk>", max_piece_length=12, shrinking_factor=0.75,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    trained = [(p, float(s)) for p, s in json.loads(tok.to_str())["model"]["vocab"]]
    vocab = canonical_unigram(trained, len(T5_SPECIALS))
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    assert [tokenizer.convert_tokens_to_ids(t) for t in T5_SPECIALS] == [0, 1, 2]
    return tokenizer


def train_roberta_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE vocabulary and wrap it as a ``RobertaTokenizer``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    tok = Tokenizer(models.BPE())
    # A prefix space makes a text's first word look like any other ("Idiot!"
    # and "You idiot!" share the token "Ġidiot"); without it a bare "idiot" at
    # the start of a text splits into rare pieces the tiny model misreads.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(ROBERTA_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = RobertaTokenizer(vocab=model["vocab"], merges=merges, add_prefix_space=True, model_max_length=512)
    assert [tokenizer.convert_tokens_to_ids(t) for t in ROBERTA_SPECIALS] == [0, 1, 2, 3, 4]
    return tokenizer
