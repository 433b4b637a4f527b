"""The ``length`` reward: each shape on hand-picked word counts, and its params rules."""

from __future__ import annotations

import pydantic
import pytest

from rewardkit import Batch
from rewardkit_length import Length


def words(n: int) -> str:
    """A completion of exactly ``n`` whitespace-separated words."""
    return " ".join(["word"] * n)


COUNTS = [30, 33, 35, 45, 50, 10, 0]


def scores(**params) -> list[float]:
    return Length(params).score(Batch.from_lists([words(n) for n in COUNTS]))


def test_linear():
    # target 30, tolerance 5, scale 10: penalty = max(0, |n - 30| - 5) / 10
    # 30, 33, 35 are inside 30 ± 5 -> 0; 45 -> (15-5)/10 = 1; 50 -> 1.5;
    # 10 -> (20-5)/10 = 1.5; 0 -> (30-5)/10 = 2.5
    assert scores(target_words=30, tolerance=5, scale=10) == [0.0, 0.0, 0.0, -1.0, -1.5, -1.5, -2.5]


def test_squared():
    # the linear distances above, squared: 1 -> 1, 1.5 -> 2.25, 2.5 -> 6.25
    assert scores(target_words=30, tolerance=5, scale=10, shape="squared") == pytest.approx(
        [0.0, 0.0, 0.0, -1.0, -2.25, -2.25, -6.25])


def test_hinge_penalises_only_too_short():
    # one-sided: penalty = max(0, (30 - 5) - n) / 10; 45 and 50 words are free,
    # 10 words -> (25-10)/10 = 1.5, the empty completion -> 25/10 = 2.5
    assert scores(target_words=30, tolerance=5, scale=10, shape="hinge") == [0.0, 0.0, 0.0, 0.0, 0.0, -1.5, -2.5]


def test_defaults_no_tolerance_unit_scale():
    # tolerance 0, scale 1, linear: the penalty is the distance in words
    out = Length({"target_words": 3}).score(Batch.from_lists(["a b c", "a", "a b c d e", ""]))
    assert out == [0.0, -2.0, -2.0, -3.0]


def test_in_band_score_is_positive_zero():
    # -0.0 would print as "-0.0" in logs and the CLI; the reward returns plain 0.0
    (value,) = Length({"target_words": 1}).score(Batch.from_lists(["one"]))
    assert str(value) == "0.0"


def test_words_are_whitespace_separated():
    # newlines, tabs and repeated spaces all separate words: 4 words, target 4
    assert Length({"target_words": 4}).score(Batch.from_lists(["a  b\nc\td "])) == [0.0]


def test_design_recipe_params_are_valid():
    # DESIGN.md's recipe example: `params: {target_words: 30}`
    assert Length({"target_words": 30}).params.shape == "linear"


def test_target_tokens_counts_tokenizer_tokens(monkeypatch):
    class FakeTokenizer:
        """Counts characters as tokens, so the expected lengths are easy to see."""

        def __call__(self, texts, add_special_tokens=True):
            assert add_special_tokens is False  # special tokens are not part of the completion
            return {"input_ids": [list(t) for t in texts]}

    import rewardkit_length

    monkeypatch.setattr(rewardkit_length.hub, "load_tokenizer", lambda name, **kw: FakeTokenizer())
    reward = Length({"target_tokens": 4, "tokenizer": "fake"})
    # "abcd" is 4 tokens -> 0; "ab" is 2 short -> -2; "abcdefg" is 3 long -> -3
    assert reward.score(Batch.from_lists(["abcd", "ab", "abcdefg"])) == [0.0, -2.0, -3.0]


@pytest.mark.parametrize("params, message", [
    ({}, "exactly one of target_words or target_tokens"),
    ({"target_words": 5, "target_tokens": 5, "tokenizer": "t"}, "both are set"),
    ({"target_tokens": 5}, "target_tokens needs a tokenizer"),
    ({"target_words": 5, "tokenizer": "t"}, "tokenizer is only used with target_tokens"),
])
def test_param_rules_have_clear_messages(params, message):
    with pytest.raises(pydantic.ValidationError) as info:
        Length(params)
    assert message in str(info.value)


@pytest.mark.parametrize("params", [
    {"target_words": -1}, {"target_words": 5, "tolerance": -1}, {"target_words": 5, "scale": 0},
    {"target_words": 5, "shape": "cubic"}, {"target_words": 5, "unit": "words"},
])
def test_out_of_range_and_unknown_params_are_errors(params):
    with pytest.raises(pydantic.ValidationError):
        Length(params)
