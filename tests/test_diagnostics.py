"""rewardkit.diagnostics: per-component correlation of score with completion length."""

from __future__ import annotations

import math

import pytest

from rewardkit.compose import Scores
from rewardkit.diagnostics import length_correlation, pearson


def test_pearson_by_hand():
    # y = 2x + 1 exactly: r = 1; y = -x: r = -1
    assert pearson([1, 2, 3], [3, 5, 7]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [-1, -2, -3]) == pytest.approx(-1.0)
    # x = 1,2,3 (mean 2), y = 1,3,2 (mean 2): sum dx*dy = (-1)(-1) + 0 + (1)(0) = 1; sxx = 2, syy = 2 -> r = 0.5
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert math.isnan(pearson([1], [2])) and math.isnan(pearson([1, 1], [2, 3]))


def test_length_correlation_per_component_skips_samples_without_a_score():
    completions = ["a", "a b", "a b c", "a b c d"]
    scores = Scores(total=[1.0, 2.0, 0.0, 4.0],
                    components={"brevity": [-1.0, -2.0, -3.0, -4.0], "judge": [0.5, None, 0.5, 0.9]},
                    valid=[True, True, False, True])
    out = length_correlation(scores, completions)
    assert out["reward/brevity/length_corr"] == pytest.approx(-1.0)
    # judge without sample 1: lengths 1, 3, 4 vs 0.5, 0.5, 0.9
    assert out["reward/judge/length_corr"] == pytest.approx(pearson([1, 3, 4], [0.5, 0.5, 0.9]))
    # total over valid samples only: lengths 1, 2, 4 vs 1, 2, 4
    assert out["reward/total/length_corr"] == pytest.approx(1.0)
    assert length_correlation(scores, completions, lengths=[4, 3, 2, 1])["reward/brevity/length_corr"] == \
        pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 lengths for 4 samples"):
        length_correlation(scores, completions, lengths=[1, 2, 3])
