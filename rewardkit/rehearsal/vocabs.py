"""Tokenizers of the real models' sizes, trained on the project's own text.

The project's dialogues use a few thousand distinct words, so a trainer asked
for roberta's 50,265 entries stops far short of it. Each tokenizer is
therefore trained as far as the text supports, then filled up to the real
size with *filler* entries, deterministically:

- T5 (Unigram, 32,000 pieces + 100 sentinels = 32,100): fillers are
  substrings of the corpus words (most frequent first), scored below every
  trained piece, so they change how text splits only where no trained piece
  fits;
- RoBERTa (byte-level BPE, 50,265): fillers are extra merges of two existing
  tokens, applied after every trained merge; ``<mask>`` is the last id
  (50,264), as in roberta-base;
- BERT (WordPiece, uncased, 30,522): ``[PAD]`` 0, ``[unused0..98]``,
  ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103 and
  ``[unused99..993]`` as in bert-base-uncased, then trained pieces, then
  ``##`` fillers.

The ids of special tokens, the vocabulary sizes and the tokenizer classes are
the real models'; the pieces are not, so token counts of a text differ from
the real tokenizers' (the shapes the models see stay realistic: dialogues of
200-1000 characters come to roughly 60-300 tokens).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence

from rewardkit.assets.vocab import _t5_pre_tokenizer, canonical_unigram

#: Sizes of the real tokenizers (len(tokenizer)).
T5_PIECES, T5_EXTRA_IDS = 32000, 100
ROBERTA_SIZE = 50265
BERT_SIZE = 30522


def _word_counts(texts: Iterable[str]) -> Counter:
    return Counter(w for t in texts for w in t.split())


def _substrings(counts: Counter, prefix: str, lengths=range(2, 11)) -> list[str]:
    """Substrings of the corpus words, most frequent first (ties by text), with word starts marked by ``prefix``."""
    subs: Counter = Counter()
    for word, n in counts.items():
        marked = prefix + word
        for size in lengths:
            for i in range(len(marked) - size + 1):
                piece = marked[i:i + size]
                if piece != prefix:
                    subs[piece] += n
    return [p for p, _ in sorted(subs.items(), key=lambda kv: (-kv[1], kv[0]))]


def _synthetic(prefix: str):
    """An endless, fixed sequence of made-up pieces, for when the corpus runs out of substrings."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    n = 0
    while True:
        n += 1
        word, k = "", n
        while k:
            k, r = divmod(k - 1, 26)
            word = letters[r] + word
        yield prefix + "zq" + word


def train_t5(texts: Sequence[str]):
    """A ``T5Tokenizer`` of 32,100 entries (32,000 pieces, then ``<extra_id_99>`` .. ``<extra_id_0>``)."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = _t5_pre_tokenizer()
    trainer = trainers.UnigramTrainer(vocab_size=T5_PIECES, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", max_piece_length=16, shrinking_factor=0.75,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    trained = canonical_unigram([(p, float(s)) for p, s in json.loads(tok.to_str())["model"]["vocab"]], 3)
    have = {p for p, _ in trained}
    floor = min(s for _, s in trained[3:])
    fillers: list[str] = []
    for piece in _substrings(_word_counts(texts), "\u2581"):
        if len(trained) + len(fillers) >= T5_PIECES:
            break
        if piece not in have:
            fillers.append(piece)
            have.add(piece)
    synthetic = _synthetic("\u2581")
    while len(trained) + len(fillers) < T5_PIECES:
        fillers.append(next(synthetic))
    # Below every trained piece, and decreasing, so the order is the ranking.
    vocab = trained + [(p, round(floor - 2.0 - i * 1e-4, 6)) for i, p in enumerate(fillers)]
    # Sentinels in flan-t5's order: <extra_id_0> is the last id (32,099).
    sentinels = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, additional_special_tokens=sentinels, model_max_length=512)
    return tokenizer, {"trained_pieces": len(trained), "filler_pieces": len(fillers), "size": len(tokenizer)}


def train_roberta(texts: Sequence[str]):
    """A ``RobertaTokenizer`` of 50,265 entries: byte-level BPE, ``<mask>`` = 50,264."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=ROBERTA_SIZE - 1, min_frequency=2,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    trained = len(vocab)
    # Extra merges of two existing tokens (the second never word-initial, as
    # byte-level BPE never merges across a word start); every part exists, so
    # the merge table stays valid.
    by_id = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][4:]
    tails = [t for t in by_id if not t.startswith("\u0120")]
    i = 0
    while len(vocab) < ROBERTA_SIZE - 1:
        first = by_id[i % len(by_id)]
        for second in tails[:64]:
            if len(vocab) >= ROBERTA_SIZE - 1:
                break
            if first + second not in vocab:
                vocab[first + second] = len(vocab)
                merges.append((first, second))
        i += 1
    vocab["<mask>"] = len(vocab)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=False, model_max_length=512)
    return tokenizer, {"trained_tokens": trained, "filler_tokens": len(vocab) - trained - 1, "size": len(tokenizer)}


def train_bert(texts: Sequence[str]):
    """An uncased ``BertTokenizer`` of 30,522 entries with bert-base-uncased's special ids."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=BERT_SIZE, special_tokens=[], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    pieces = [t for t, _ in sorted(json.loads(tok.to_str())["model"]["vocab"].items(), key=lambda kv: kv[1])]
    head = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    head += [f"[unused{i}]" for i in range(99, 994)]
    vocab = list(head)
    seen = set(vocab)
    for piece in pieces:
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    trained = len(vocab) - len(head)
    lowered = Counter()
    for word, n in _word_counts(texts).items():
        lowered[word.lower()] += n
    for piece in _substrings(lowered, ""):
        if len(vocab) >= BERT_SIZE:
            break
        for cand in (piece, "##" + piece):
            if cand not in seen and len(vocab) < BERT_SIZE:
                vocab.append(cand)
                seen.add(cand)
    synthetic = _synthetic("##")
    while len(vocab) < BERT_SIZE:
        piece = next(synthetic)
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True, model_max_length=512)
    return tokenizer, {"trained_pieces": trained, "filler_pieces": len(vocab) - trained - len(head),
                       "size": len(tokenizer)}
