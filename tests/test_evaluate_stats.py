"""Statistics of the before/after comparison, against hand-computed values."""

import math

import numpy as np
import pytest

from rewardkit.evaluate.stats import bootstrap_diff_ci, compare, relative_change, summarize


def test_summarize_population_std():
    # mean (1+2+3+4)/4 = 2.5; squared deviations 2.25, 0.25, 0.25, 2.25 sum to 5; /4 (population) = 1.25
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean) == (4, 2.5)
    assert s.std == pytest.approx(math.sqrt(1.25))


def test_summarize_empty_and_single():
    # nothing to average: both undefined (None, which JSON can hold; NaN it cannot)
    assert summarize([]).to_dict() == {"n": 0, "mean": None, "std": None}
    # one value: its own mean, no spread
    assert summarize([0.7]).to_dict() == {"n": 1, "mean": 0.7, "std": 0.0}


def test_relative_change_reproduces_the_seed():
    # the seed notebook: mean hate probability 0.03364 before, 0.02734 after, "18.7% lower"
    # (0.02734 - 0.03364) / 0.03364 = -0.00630 / 0.03364 = -0.18728
    assert relative_change(0.03364, 0.02734) == pytest.approx(-0.18728, abs=1e-5)


def test_relative_change_edge_cases():
    assert relative_change(0.0, 0.0) == 0.0      # no change from nothing is still no change
    assert relative_change(0.0, 1.0) is None     # a change from 0 has no relative size
    assert relative_change(None, 1.0) is None    # empty side
    # a negative reward moving towards 0 is an increase: (-1 - -2) / |-2| = +0.5
    assert relative_change(-2.0, -1.0) == 0.5


def test_bootstrap_constant_shift_is_exact():
    # paired, every after[i] = before[i] + 0.5: every resample's mean difference is exactly 0.5
    before = [0.1, 0.9, 0.4, 0.3, 0.7]
    after = [b + 0.5 for b in before]
    low, high = bootstrap_diff_ci(before, after)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)


def test_bootstrap_two_pairs_hand_computed():
    # paired differences d = [0, 1]; a resample of 2 draws has mean 0 (p=1/4), 0.5 (p=1/2) or 1 (p=1/4),
    # so the 2.5% and 97.5% percentiles of 2,000 resamples are 0 and 1
    assert bootstrap_diff_ci([0.0, 0.0], [0.0, 1.0]) == (0.0, 1.0)


def test_bootstrap_fixed_seed_is_reproducible_and_seed_matters():
    rng = np.random.default_rng(7)
    before = rng.normal(0.3, 0.1, 50).tolist()
    after = (np.array(before) - 0.05 + rng.normal(0, 0.05, 50)).tolist()
    a = bootstrap_diff_ci(before, after, seed=3)
    assert a == bootstrap_diff_ci(before, after, seed=3)
    assert a != bootstrap_diff_ci(before, after, seed=4)
    # the interval brackets the observed difference of means
    observed = np.mean(after) - np.mean(before)
    assert a[0] < observed < a[1]


def test_bootstrap_leaves_global_rng_alone():
    np.random.seed(11)
    expected = np.random.rand()
    np.random.seed(11)
    bootstrap_diff_ci([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    assert np.random.rand() == expected


def test_paired_is_tighter_than_unpaired_when_prompts_differ():
    # prompt difficulty varies a lot (0..9), the tuned side is uniformly 0.1 lower with small noise:
    # pairing cancels the difficulty, unpaired resampling does not
    before = [float(i) for i in range(10)]
    after = [b - 0.1 + 0.01 * (-1) ** i for i, b in enumerate(before)]
    paired = bootstrap_diff_ci(before, after, paired=True)
    unpaired = bootstrap_diff_ci(before, after, paired=False)
    assert paired[1] - paired[0] < 0.05 < unpaired[1] - unpaired[0]


def test_bootstrap_undefined_with_fewer_than_two():
    assert bootstrap_diff_ci([], []) is None
    assert bootstrap_diff_ci([0.2], [0.1]) is None
    assert bootstrap_diff_ci([0.2], [0.1, 0.3], paired=False) is None


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_diff_ci([1.0, 2.0], [1.0, 2.0, 3.0], paired=True)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_diff_ci([1.0, 2.0], [1.0, 2.0], confidence=1.0)


def test_compare_everything_at_once():
    c = compare([0.2, 0.4], [0.1, 0.1])
    # means 0.3 -> 0.1: diff -0.2, relative -0.2 / 0.3 = -2/3
    assert c["before"]["mean"] == pytest.approx(0.3) and c["after"]["mean"] == pytest.approx(0.1)
    assert c["diff"] == pytest.approx(-0.2)
    assert c["relative_change"] == pytest.approx(-2 / 3)
    # paired differences [-0.1, -0.3]: resample means are -0.1, -0.2 or -0.3, all below 0
    assert c["ci"] == [pytest.approx(-0.3), pytest.approx(-0.1)]
    assert c["significant"] is True


def test_compare_empty_and_single():
    empty = compare([], [])
    assert (empty["diff"], empty["relative_change"], empty["ci"], empty["significant"]) == (None, None, None, None)
    single = compare([0.5], [0.25])
    # one pair: the change (-0.25, -50%) is known, its uncertainty is not
    assert single["diff"] == -0.25 and single["relative_change"] == -0.5
    assert single["ci"] is None and single["significant"] is None
