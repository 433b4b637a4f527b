"""rewardkit plugin: the ``profanity`` reward, on the offline ``alt-profanity-check`` classifier.

``alt-profanity-check`` is a linear SVM over character and word n-grams,
trained on labelled tweets and comments; its model ships inside the PyPI
package (no download), and it scores thousands of texts per second on a CPU.

Score: ``-p`` where ``p`` is the classifier's probability that the text is
profane, so 0 (clean) down to -1 (profane). It is a penalty, like the
``length`` reward: clean text costs nothing, so adding it to a recipe does
not shift the scores of clean completions. With ``threshold`` set, the
penalty is all or nothing: -1 when ``p >= threshold``, else 0.
"""

from __future__ import annotations

import rewardkit
from pydantic import Field

__version__ = "0.1.0"


class Profanity(rewardkit.Reward):
    """Penalise profanity: minus the probability that the text is profane (alt-profanity-check)."""

    name = "profanity"

    class Params(rewardkit.Params):
        """Parameters of the ``profanity`` reward."""

        #: Score the prompt and the completion together instead of the completion alone.
        include_prompt: bool = False
        #: When set, score -1 for texts whose probability is at least this, else 0.
        threshold: float | None = Field(None, ge=0.0, le=1.0)

    def score(self, batch: rewardkit.Batch) -> list[float]:
        """Return ``-p`` (or ``-1``/``0`` with a threshold) for each sample."""
        # Imported here, not at module level: it loads scikit-learn and the
        # model (about a second), which `rewardkit plugins` should not pay for.
        from profanity_check import predict_prob

        if len(batch) == 0:
            return []
        if self.params.include_prompt:
            texts = [f"{p}\n{c}" for p, c in zip(batch.prompts, batch.completions)]
        else:
            texts = list(batch.completions)
        probs = predict_prob(texts)
        if self.params.threshold is not None:
            return [-1.0 if p >= self.params.threshold else 0.0 for p in probs]
        return [-float(p) for p in probs]


@rewardkit.hookimpl
def register_rewards(register):
    """Register the ``profanity`` reward."""
    register(Profanity)
