"""The ``rouge`` reward on tiny strings whose ROUGE is easy to count by hand.

rouge-score lowercases, drops punctuation and (with use_stemmer) Porter-stems
words longer than 3 letters before matching.
"""

from __future__ import annotations

import pydantic
import pytest

from rewardkit import Batch, RewardError
from rewardkit_rouge import Rouge

REF = "the cat sat on the mat"
PRED = "the cat sat"


def score(completion: str, reference: str, **params) -> float:
    (value,) = Rouge(params).score(Batch.from_lists([completion], references=[reference]))
    return value


def test_needs_references():
    assert Rouge.needs_references is True


@pytest.mark.parametrize("metric, measure, expected", [
    # rouge1: all 3 completion words occur in the 6-word reference:
    # precision 3/3 = 1, recall 3/6 = 0.5, F = 2*1*0.5/(1+0.5) = 2/3
    ("rouge1", "precision", 1.0),
    ("rouge1", "recall", 0.5),
    ("rouge1", "fmeasure", 2 / 3),
    # rouge2: bigrams "the cat", "cat sat" both in the reference's 5 bigrams:
    # precision 2/2 = 1, recall 2/5 = 0.4, F = 2*0.4/1.4 = 4/7
    ("rouge2", "fmeasure", 4 / 7),
    ("rouge2", "recall", 0.4),
    # rougeL: the longest common subsequence is "the cat sat", 3 words, same as rouge1
    ("rougeL", "fmeasure", 2 / 3),
])
def test_metrics_and_measures(metric, measure, expected):
    assert score(PRED, REF, metric=metric, measure=measure) == pytest.approx(expected)


def test_default_is_rougeL_fmeasure_where_order_matters():
    # Same four words reversed: every unigram matches (rouge1 = 1) but the
    # longest common subsequence is a single word: 1/4 = 0.25.
    assert score("today bob met alice", "alice met bob today") == pytest.approx(0.25)
    assert score("today bob met alice", "alice met bob today", metric="rouge1") == pytest.approx(1.0)


def test_rougeLsum_splits_sentences_on_newlines():
    ref, pred = "the cat sat\nthe dog ran", "the dog ran\nthe cat sat"
    # As one sequence the LCS is 3 of 6 words -> rougeL = 0.5; per sentence
    # each reference line is matched in full by some completion line -> 1.0.
    assert score(pred, ref, metric="rougeL") == pytest.approx(0.5)
    assert score(pred, ref, metric="rougeLsum") == pytest.approx(1.0)


def test_stemmer():
    # "cats running" vs "cat runs": stemmed both are "cat run" -> 1.0; unstemmed no word matches -> 0.0
    assert score("cat runs", "cats running") == pytest.approx(1.0)
    assert score("cat runs", "cats running", use_stemmer=False, metric="rouge1") == 0.0


def test_case_and_punctuation_do_not_count():
    assert score("The cat, sat.", "the cat sat") == pytest.approx(1.0)


def test_as_penalty_is_zero_at_a_match_and_negative_as_it_drifts():
    assert score("The cat sat.", "the cat sat", as_penalty=True) == pytest.approx(0.0)
    # 2/3 - 1 = -1/3 (the rougeL F above)
    assert score(PRED, REF, as_penalty=True) == pytest.approx(-1 / 3)
    # nothing in common: 0 - 1
    assert score("", "the cat sat", as_penalty=True) == -1.0


def test_empty_completion_scores_zero_as_a_float():
    value = score("", "the cat sat")
    assert value == 0.0 and isinstance(value, float)


def test_one_score_per_sample_against_its_own_reference():
    batch = Batch.from_lists(["the cat sat", "a dog"], references=["a dog", "a dog"])
    # sample 0 shares nothing with its reference, sample 1 is identical
    assert Rouge().score(batch) == [0.0, 1.0]


def test_missing_references_is_a_clear_error():
    with pytest.raises(RewardError) as info:
        Rouge().score(Batch.from_lists(["the cat sat"]))
    assert "reward 'rouge'" in str(info.value) and "reference" in str(info.value)


@pytest.mark.parametrize("params", [{"metric": "rouge3"}, {"measure": "f1"}, {"stemmer": True}])
def test_bad_params(params):
    with pytest.raises(pydantic.ValidationError):
        Rouge(params)
