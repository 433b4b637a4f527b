"""Before/after statistics: mean, std, relative change, bootstrap CI of the difference.

Every function here takes plain lists of floats and returns plain numbers
(or ``None`` where a number would be meaningless), so results go straight
into ``eval.json``. ``None`` rather than NaN because strict JSON has no NaN.

Standard deviations are population ones (``ddof=0``), as the seed notebook's
``np.std`` and the runner's per-step statistics are, so numbers line up.

The confidence interval is a percentile bootstrap (Efron & Tibshirani 1993,
ch. 13) of ``mean(after) - mean(before)``. When both samples come from the
same prompts (``paired=True``, the eval's case) the two lists are resampled
*together*, index by index: prompt difficulty then cancels out and the
interval is much tighter than resampling each side on its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

#: Bootstrap resamples; 2,000 keeps the 2.5/97.5 percentiles stable to ~1e-3 of a std.
DEFAULT_RESAMPLES = 2000
#: Two-sided confidence level of the interval.
DEFAULT_CONFIDENCE = 0.95
#: Seed of the bootstrap's generator: the same inputs always give the same interval.
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Summary:
    """Mean and population standard deviation of one sample (``None`` when empty)."""

    n: int
    mean: float | None
    std: float | None

    def to_dict(self) -> dict:
        """The summary as a JSON-ready dict."""
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """:class:`Summary` of ``values``; empty -> mean and std ``None``, one value -> std 0."""
    n = len(values)
    if n == 0:
        return Summary(0, None, None)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return Summary(n, mean, math.sqrt(var))


def relative_change(before: float | None, after: float | None) -> float | None:
    """``(after - before) / |before|``: -0.187 means 18.7% lower.

    ``None`` when either is missing or ``before`` is 0 (a change from nothing
    has no relative size), except 0 -> 0, which is no change at all.
    """
    if before is None or after is None:
        return None
    if before == 0:
        return 0.0 if after == 0 else None
    return (after - before) / abs(before)


def bootstrap_diff_ci(before: Sequence[float], after: Sequence[float], *, paired: bool = True,
                      resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                      seed: int = DEFAULT_SEED) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of ``mean(after) - mean(before)``.

    :param paired: ``after[i]`` and ``before[i]`` belong together (same
        prompt); resample indices jointly. Needs equal lengths.
    :param seed: seeds a private generator; the global RNG is untouched.
    :returns: ``(low, high)``, or ``None`` when a side has fewer than two
        values: one value has no spread to resample, and a zero-width
        interval would claim a certainty the data cannot give.
    :raises ValueError: ``paired`` with lists of different lengths, or a
        confidence outside (0, 1).
    """
    import numpy as np

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if paired and len(a) != len(b):
        raise ValueError(f"paired bootstrap needs equal lengths, got {len(b)} before and {len(a)} after")
    if len(a) < 2 or len(b) < 2:
        return None
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(a), size=(resamples, len(a)))
        diffs = (a[idx] - b[idx]).mean(axis=1)
    else:
        diffs = (a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
                 - b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return float(low), float(high)


def compare(before: Sequence[float], after: Sequence[float], *, paired: bool = True,
            resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
            seed: int = DEFAULT_SEED) -> dict:
    """Everything the report says about one measure, as a JSON-ready dict.

    Keys: ``before`` and ``after`` (:class:`Summary` dicts), ``diff``
    (after - before of the means), ``relative_change``, ``ci`` (``[low,
    high]`` or ``None``), ``confidence``, ``significant`` (the interval
    excludes 0; ``None`` without an interval).
    """
    sb, sa = summarize(before), summarize(after)
    diff = None if sb.mean is None or sa.mean is None else sa.mean - sb.mean
    ci = bootstrap_diff_ci(before, after, paired=paired, resamples=resamples, confidence=confidence, seed=seed)
    return {
        "before": sb.to_dict(),
        "after": sa.to_dict(),
        "diff": diff,
        "relative_change": relative_change(sb.mean, sa.mean),
        "ci": None if ci is None else [ci[0], ci[1]],
        "confidence": confidence,
        "significant": None if ci is None else bool(ci[0] > 0 or ci[1] < 0),
    }
