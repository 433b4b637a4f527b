"""The ``toxicity`` reward against a tiny random RoBERTa built in a temp dir.

The classifier's labels are deliberately in the *reverse* order of Meta's
model (id 0 = ``hate``, id 1 = ``nothate``): a reward that picked a label by
position, the seed notebook's bug, returns the wrong column and fails here.
Expected values come from a direct forward pass of the same model.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from rewardkit import Batch, RewardError  # noqa: E402
from rewardkit.errors import ModelNotFoundError  # noqa: E402
from rewardkit.hub import assets_dir  # noqa: E402
from rewardkit_toxicity import Toxicity, label_index  # noqa: E402

WORDS = "you are kind nice idiot stupid hello the a thank summary : please".split()
TEXTS = ["you are kind", "you idiot", "", "thank you please", "the stupid a summary : hello nice"]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A 1-layer RoBERTa classifier with a word-level tokenizer, labels {0: hate, 1: nothate}."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", model_max_length=32)
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, id2label={0: "hate", 1: "nothate"}, label2id={"hate": 0, "nothate": 1})
    model = RobertaForSequenceClassification(config).eval()
    path = tmp_path_factory.mktemp("tiny-reversed-roberta")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), model, tokenizer


#: Tolerance for "the same logit, computed another way" (batched and padded vs one text alone). The logits
#: of this random classifier are ~3e-3, each a float32 sum of terms ~0.1 in size, so another batch shape or
#: CPU changes them by ~1e-8 (2e-9 here): 1e-7 absolute, relative 1e-5 for larger logits. Well under the
#: smallest real difference the tests tell apart, 1.2e-5 (the completion alone vs prompt + completion).
SAME = dict(rel=1e-5, abs=1e-7)


def direct_logits(model, tokenizer, texts):
    """The logits of each text alone (no padding), straight from the model."""
    with torch.no_grad():
        return [model(**tokenizer(t, return_tensors="pt")).logits[0] for t in texts]


def test_returns_the_nothate_logit_chosen_by_name(tiny_classifier):
    path, model, tokenizer = tiny_classifier
    scores = Toxicity({"model": path}).score(Batch.from_lists(TEXTS))
    # nothate is column 1 in this model; the seed's positional pick would take column 0.
    expected = [row[1].item() for row in direct_logits(model, tokenizer, TEXTS)]
    assert scores == pytest.approx(expected, **SAME)
    hate = [row[0].item() for row in direct_logits(model, tokenizer, TEXTS)]
    assert scores != pytest.approx(hate, **SAME)  # the two columns really differ, so the test can fail


def test_probability_of_nothate_and_hate_sum_to_one(tiny_classifier):
    path, model, tokenizer = tiny_classifier
    batch = Batch.from_lists(TEXTS)
    nothate = Toxicity({"model": path, "output": "probability"}).score(batch)
    hate = Toxicity({"model": path, "output": "probability", "label": "hate"}).score(batch)
    # Two labels, so softmax gives p(nothate) + p(hate) = 1 for every text. Probabilities of about 0.5 in
    # float32: 1e-6 is ~10 ulps (the sums are off by 6e-8 here); the other label would be off by 4e-4.
    assert [a + b for a, b in zip(nothate, hate)] == pytest.approx([1.0] * len(TEXTS), abs=1e-6)
    # And p(nothate) = softmax(logits)[1] of the direct forward pass.
    expected = [torch.softmax(row, -1)[1].item() for row in direct_logits(model, tokenizer, TEXTS)]
    assert nothate == pytest.approx(expected, abs=1e-6)


def test_prompt_plus_completion_scores_the_concatenation(tiny_classifier):
    path, model, tokenizer = tiny_classifier
    prompts = ["summary : ", "hello "]
    completions = ["you are kind", "you idiot"]
    batch = Batch.from_lists(completions, prompts=prompts)
    scores = Toxicity({"model": path, "text": "prompt+completion"}).score(batch)
    # The seed classified prompt + response as one plain string.
    expected = [row[1].item() for row in direct_logits(model, tokenizer, ["summary : you are kind", "hello you idiot"])]
    assert scores == pytest.approx(expected, **SAME)
    completion_only = Toxicity({"model": path}).score(batch)
    assert completion_only != pytest.approx(scores, **SAME)


def test_small_batches_equal_one_big_batch(tiny_classifier):
    path, _, _ = tiny_classifier
    batch = Batch.from_lists(TEXTS)
    # batch_size=2 over 5 texts: chunks of 2, 2 and 1, padded differently; the
    # attention mask makes the padding invisible, so the scores are the same.
    chunked = Toxicity({"model": path, "batch_size": 2}).score(batch)
    whole = Toxicity({"model": path, "batch_size": 32}).score(batch)
    assert len(chunked) == 5
    assert chunked == pytest.approx(whole, **SAME)


def test_model_loads_once_lazily(tiny_classifier):
    path, _, _ = tiny_classifier
    reward = Toxicity({"model": path})
    assert reward._model is None  # nothing loads at construction (validate stays cheap)
    reward.score(Batch.from_lists(["hello"]))
    first = reward._model
    reward.score(Batch.from_lists(["hello"]))
    assert reward._model is first


def test_unknown_label_lists_the_model_labels(tiny_classifier):
    path, _, _ = tiny_classifier
    with pytest.raises(RewardError) as info:
        Toxicity({"model": path, "label": "toxic"}).score(Batch.from_lists(["hello"]))
    msg = str(info.value)
    assert "label 'toxic'" in msg and "'hate', 'nothate'" in msg


def test_label_lookup_by_name_and_case():
    class Config:
        id2label = {0: "NotHate", 1: "hate"}

    assert label_index(Config, "hate") == 1
    assert label_index(Config, "nothate") == 0  # case-insensitive when unambiguous


def test_bad_params_are_rejected_before_loading():
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        Toxicity({"output": "logits"})
    with pytest.raises(pydantic.ValidationError):
        Toxicity({"batch_size": 0})
    with pytest.raises(pydantic.ValidationError):
        Toxicity({"modle": "x"})  # unknown keys are errors, never ignored


def test_missing_model_offline_is_model_not_found(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once at import; patch the constant too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so the id cannot be a directory by accident
    reward = Toxicity({"model": "rewardkit-test/no-such-classifier"})
    with pytest.raises(ModelNotFoundError) as info:
        reward.score(Batch.from_lists(["hello"]))
    assert "rewardkit-test/no-such-classifier" in str(info.value)


@pytest.mark.skipif(not (assets_dir() / "tiny-hate-roberta").exists(), reason="asset tiny-hate-roberta not built")
def test_shipped_tiny_classifier_prefers_polite_text():
    # The real path: asset:NAME -> hub.resolve -> from_pretrained, labels found by name.
    reward = Toxicity({"model": "asset:tiny-hate-roberta"})
    polite, rude = reward.score(Batch.from_lists(
        ["Thank you so much for your help, have a lovely day.",
         "You are a stupid idiot and everyone knows it."]))
    assert math.isfinite(polite) and math.isfinite(rude)
    assert polite > rude
