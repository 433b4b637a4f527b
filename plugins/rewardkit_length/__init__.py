"""Built-in reward plugin: ``length``, a penalty for completions outside a target length.

Written exactly as a third-party plugin would be (public ``rewardkit`` API,
``register_rewards`` hook, ``rewardkit`` entry point).

Why it exists: a policy trained against a classifier alone can learn that an
empty string is the least hateful text and collapse to writing nothing. A
length penalty, above all the one-sided ``hinge``, makes that hack cost reward.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

import rewardkit
from rewardkit import hub


class Length(rewardkit.Reward):
    """Penalty (<= 0) for completions whose length is outside target ± tolerance, in words or tokens.

    The length ``n`` of a completion is its number of whitespace-separated
    words (``target_words``) or of tokenizer tokens without special tokens
    (``target_tokens`` with ``tokenizer``). With ``t`` the target, ``tol``
    the tolerance and ``s`` the scale, the score is ``-penalty`` where:

    - ``linear``:  ``penalty = max(0, |n - t| - tol) / s``
    - ``squared``: ``penalty = (max(0, |n - t| - tol) / s) ** 2``
    - ``hinge``:   ``penalty = max(0, (t - tol) - n) / s``, one-sided: only
      completions *shorter* than the band pay, so long answers are free and
      the collapse to empty output is not.

    Worked example, ``target_words: 30, tolerance: 5, scale: 10``:

    ======  ==========  ===========  ===========
    words   linear      squared      hinge
    ======  ==========  ===========  ===========
    30      0           0            0
    33      0           0            0
    45      -1.0        -1.0         0
    50      -1.5        -2.25        0
    10      -1.5        -2.25        -1.5
    0       -2.5        -6.25        -2.5
    ======  ==========  ===========  ===========

    (45 words: 15 from the target, 10 past the tolerance, 10 / 10 = 1.0;
    0 words: 30 - 5 = 25 short, 25 / 10 = 2.5, squared 6.25.)
    """

    name = "length"
    #: the same text always gets the same score: safe to cache (``cache: true``)
    deterministic = True

    class Params(rewardkit.Params):
        """Parameters of the ``length`` reward; set exactly one of ``target_words``/``target_tokens``."""

        target_words: int | None = Field(None, ge=0, description="target length in whitespace-separated words")
        target_tokens: int | None = Field(None, ge=0, description="target length in tokens (needs `tokenizer`)")
        tolerance: float = Field(0.0, ge=0.0, description="no penalty within target ± tolerance")
        shape: Literal["linear", "squared", "hinge"] = Field(
            "linear", description="linear or squared distance outside the band, or hinge: only too-short pays")
        scale: float = Field(1.0, gt=0.0, description="the distance is divided by this before shaping")
        tokenizer: str | None = Field(None, description="tokenizer that counts tokens: hub id, path or asset:NAME")
        trust_remote_code: bool = Field(False, description="allow code from the tokenizer repo")

        @model_validator(mode="after")
        def _one_target(self):
            if (self.target_words is None) == (self.target_tokens is None):
                raise ValueError("set exactly one of target_words or target_tokens"
                                 + (" (both are set)" if self.target_words is not None else ""))
            if self.target_tokens is not None and not self.tokenizer:
                raise ValueError("target_tokens needs a tokenizer to count tokens with: set tokenizer "
                                 "(e.g. the policy's, google/flan-t5-base), or use target_words")
            if self.target_words is not None and self.tokenizer:
                raise ValueError("tokenizer is only used with target_tokens; remove it or use target_tokens")
            return self

    def __init__(self, params=None, *, device: str = "cpu"):
        super().__init__(params, device=device)
        self._tokenizer = None  # loaded on first use, only for target_tokens

    def lengths(self, completions) -> list[int]:
        """The length of each completion in the configured unit."""
        if self.params.target_words is not None:
            return [len(c.split()) for c in completions]
        if not completions:
            return []
        if self._tokenizer is None:
            self._tokenizer = hub.load_tokenizer(self.params.tokenizer,
                                                 trust_remote_code=self.params.trust_remote_code)
        ids = self._tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def penalty(self, n: int) -> float:
        """The (non-negative) penalty for a completion of length ``n``."""
        p = self.params
        target = p.target_words if p.target_words is not None else p.target_tokens
        if p.shape == "hinge":
            distance = max(0.0, (target - p.tolerance) - n)
        else:
            distance = max(0.0, abs(n - target) - p.tolerance)
        distance /= p.scale
        return distance * distance if p.shape == "squared" else distance

    def score(self, batch: rewardkit.Batch) -> list[float]:
        """``-penalty`` per completion: 0 inside the band, negative outside."""
        # `0.0 - x` rather than `-x` so an in-band score is 0.0, not -0.0.
        return [0.0 - self.penalty(n) for n in self.lengths(batch.completions)]


@rewardkit.hookimpl
def register_rewards(register):
    """Register the ``length`` reward."""
    register(Length)
