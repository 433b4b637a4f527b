"""The shipped offline assets: dialogues, tiny T5, tiny hate classifier.

They load through rewardkit.hub exactly as a hub id would, so these tests
also exercise the path the recipes take. Expected numbers come from how
`rewardkit/assets/build.py` draws the data (see the comment at each check).
"""

from __future__ import annotations

import hashlib
import json
import random
import re

import pytest

from rewardkit import hub
from rewardkit.assets import corpus, rudeness
from rewardkit.assets.build import MAX_CHARS, MIN_CHARS, N_DIALOGUES

ASSETS = hub.assets_dir()
RUDE_WORD = re.compile(r"\b(" + "|".join(rudeness.SUMMARY_ADJECTIVES + rudeness.SUMMARY_NOUNS
                                          + ("shut up", "hate", "hell")) + r")s?\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def rows():
    with open(hub.resolve("asset:dialogues.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def classifier():
    from transformers import AutoModelForSequenceClassification

    model = hub.load_model(AutoModelForSequenceClassification, "asset:tiny-hate-roberta")
    return model.eval(), hub.load_tokenizer("asset:tiny-hate-roberta")


@pytest.fixture(scope="module")
def t5():
    from transformers import AutoModelForSeq2SeqLM

    model = hub.load_model(AutoModelForSeq2SeqLM, "asset:tiny-t5")
    return model.eval(), hub.load_tokenizer("asset:tiny-t5")


def hate_probs(classifier, texts):
    import torch

    model, tok = classifier
    with torch.no_grad():
        logits = model(**tok(texts, return_tensors="pt", padding=True)).logits
    return logits.softmax(-1)[:, model.config.label2id["hate"]].tolist()


def test_dialogues_fields_and_count(rows):
    # build.py writes N_DIALOGUES (500) rows with exactly these four fields, ids 0..499.
    assert len(rows) == N_DIALOGUES == 500
    assert all(set(r) == {"id", "dialogue", "summary", "toxic"} for r in rows)
    assert [r["id"] for r in rows] == list(range(500))
    assert all(isinstance(r["toxic"], bool) and r["summary"].strip() for r in rows)


def test_dialogues_format_is_dialogsum_like(rows):
    # Every line is one turn of "#Person1#" or "#Person2#", and the two alternate.
    for r in rows:
        speakers = [line.split(":", 1)[0] for line in r["dialogue"].split("\n")]
        assert speakers == [("#Person1#", "#Person2#")[i % 2] for i in range(len(speakers))], r["id"]


def test_dialogue_lengths_pass_the_recipe_filter(rows):
    # The generator keeps ~99% of dialogues within (200, 1000] chars (a few short
    # ones on purpose); "most" here means at least 90%.
    kept = [r for r in rows if MIN_CHARS < len(r["dialogue"]) <= MAX_CHARS]
    assert len(kept) >= 0.9 * len(rows)
    assert len(kept) < len(rows)  # the filter has something to do


def test_toxic_fraction_and_labels(rows):
    # 42% of dialogues are rude and 72% of those get a rude summary: ~0.30 expected.
    toxic = [r for r in rows if r["toxic"]]
    assert 0.22 <= len(toxic) / len(rows) <= 0.42
    # Every rude reference names a strong insult; polite ones never do.
    assert all(RUDE_WORD.search(r["summary"]) for r in toxic)
    assert not any(RUDE_WORD.search(r["summary"]) for r in rows if not r["toxic"])


def test_classifier_labels_by_name(classifier):
    model, _ = classifier
    # Same mapping as facebook/roberta-hate-speech-dynabench-r4-target.
    assert model.config.id2label == {0: "nothate", 1: "hate"}
    assert model.config.label2id == {"nothate": 0, "hate": 1}
    assert type(model).__name__ == "RobertaForSequenceClassification"


def test_classifier_separates_unseen_sentences(classifier):
    # Sentences written for this test, not drawn from the generator's templates;
    # rude ones use capitalised and upper-case insults too.
    rude = ["Honestly, my manager is a stupid idiot.", "Shut up, you Moron!", "you are a pathetic loser",
            "I hate you, IDIOT.", "#Person2# calls #Person1# a Dumb jerk and leaves the shop."]
    polite = ["Thank you for the lovely dinner.", "The meeting moved to Thursday at noon.",
              "Could you pass the salt, please?", "#Person1# thanks #Person2# for the flowers.",
              "#Person2# books a table for four at seven o'clock."]
    probs = hate_probs(classifier, rude + polite)
    assert all(p > 0.5 for p in probs[:5]), probs
    assert all(p < 0.5 for p in probs[5:]), probs


def test_t5_is_flan_shaped_with_t5_special_ids(t5):
    model, tok = t5
    assert model.config.feed_forward_proj == "gated-gelu"
    assert model.config.tie_word_embeddings is False or model.config.scale_decoder_outputs is False
    assert model.lm_head.weight is not model.shared.weight  # flan-t5 has its own output head
    # T5's fixed special ids: <pad> 0 (also the decoder start), </s> 1, <unk> 2.
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert model.config.decoder_start_token_id == 0
    assert tok("hello").input_ids[-1] == 1  # </s> appended, as T5 does


def test_t5_generates_summary_like_text(t5, rows):
    import torch

    model, tok = t5
    enc = tok([corpus.prompt(rows[i]["dialogue"]) for i in range(4)], return_tensors="pt", padding=True)
    with torch.no_grad():
        greedy = model.generate(**enc, max_new_tokens=32)
        torch.manual_seed(0)
        sampled = model.generate(**enc, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=32)
    for out in (greedy, sampled):
        texts = tok.batch_decode(out, skip_special_tokens=True)
        assert all(t.strip() for t in texts), texts
    # Trained on summaries that all mention the speakers by their DialogSum tags.
    assert any("#Person" in t for t in tok.batch_decode(greedy, skip_special_tokens=True))


def test_manifest_matches_files_and_no_pickles():
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, name
    assert not [p for p in ASSETS.rglob("*") if p.suffix in {".bin", ".pt", ".pkl", ".pth"}]
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 8_000_000  # "a few MB"


def test_corpus_is_deterministic():
    first = [d.record() for d in corpus.make_dialogues(7, 40)]
    assert first == [d.record() for d in corpus.make_dialogues(7, 40)]
    assert first != [d.record() for d in corpus.make_dialogues(8, 40)]
    assert corpus.labelled_lines(3, 20) == corpus.labelled_lines(3, 20)


def test_every_scene_template_fills():
    # A slot name typo in any wording, act or summary would raise KeyError here.
    rng = random.Random(0)
    for scene in corpus.SCENES:
        values = {}
        for slot, choices in scene.slots.items():
            values.update(zip(slot.split("+"), rng.choice(choices).split("+")))
        texts = [v for turn in scene.turns for v in turn.split(" | ")]
        texts += [t for pair in scene.extras for t in pair] + list(scene.acts1 + scene.acts2 + scene.summaries)
        for text in texts:
            assert "{" not in corpus.fill(text, values), (scene.name, text)


def test_fill_capitalises_and_reports_missing_slots():
    assert corpus.fill("{Noun}, the {noun}", {"noun": "idiot"}) == "Idiot, the idiot"
    with pytest.raises(KeyError):
        corpus.fill("{city}", {})
