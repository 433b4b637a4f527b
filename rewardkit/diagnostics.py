"""Live reward-hacking signals the runner can log each step.

A reward that is being gamed often shows it through length first: outputs
collapse to nothing, or balloon, and the score follows. :func:`length_correlation`
gives, per component, the Pearson correlation of its raw score with the
completion's length over the step's samples; a component whose correlation
swings towards +1 or -1 while its mean rises is worth a look at the samples.
"""

from __future__ import annotations

import math
from typing import Sequence

from rewardkit.compose import Scores


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's r of two equal-length sequences; NaN with fewer than 2 pairs or a constant side."""
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"pearson: {n} x values but {len(ys)} y values")
    if n < 2:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def length_correlation(scores: Scores, completions: Sequence[str], *,
                       lengths: Sequence[int] | None = None) -> dict[str, float]:
    """Per component, the correlation of its raw score with completion length, keyed for logging.

    :param scores: the step's :class:`~rewardkit.compose.Scores`.
    :param completions: the step's completions, in the same order.
    :param lengths: lengths to use instead of word counts (e.g. generated token counts).
    :returns: ``{"reward/<name>/length_corr": r}`` per component, plus
        ``reward/total/length_corr`` over valid samples. Samples a component
        did not score (``None``) are left out of its correlation; NaN when
        fewer than two remain or either side is constant.
    """
    if lengths is None:
        lengths = [len(c.split()) for c in completions]
    if len(lengths) != len(scores.total):
        raise ValueError(f"length_correlation: {len(lengths)} lengths for {len(scores.total)} samples")
    out: dict[str, float] = {}
    for name, values in scores.components.items():
        pairs = [(float(n), v) for n, v in zip(lengths, values) if v is not None]
        out[f"reward/{name}/length_corr"] = pearson([p[0] for p in pairs], [p[1] for p in pairs])
    pairs = [(float(n), t) for n, t, ok in zip(lengths, scores.total, scores.valid) if ok]
    out["reward/total/length_corr"] = pearson([p[0] for p in pairs], [p[1] for p in pairs])
    return out
