"""Built-in reward plugin: ``rouge``, ROUGE of each completion against its sample's reference.

Written exactly as a third-party plugin would be (public ``rewardkit`` API,
``register_rewards`` hook, ``rewardkit`` entry point). Scores come from the
``rouge-score`` package (Google's reference implementation of Lin, 2004).

Used as a reward it pulls completions towards the references; with
``as_penalty: true`` it is 0 for a perfect match and negative as a completion
drifts away, which keeps a detoxified policy summarising instead of collapsing
to whatever text the classifier likes best.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import rewardkit


class Rouge(rewardkit.Reward):
    """ROUGE-1/2/L/Lsum of completion vs reference, in [0, 1]; or ROUGE - 1 in [-1, 0] as a penalty.

    ``rougeLsum`` treats newlines as sentence boundaries (summary-level LCS);
    for single-line text it equals ``rougeL``. Text is lowercased and split
    on non-alphanumerics by rouge-score's tokenizer, so punctuation and case
    do not count. An empty completion or reference scores 0 (penalty -1).
    """

    name = "rouge"
    needs_references = True
    #: the same text always gets the same score: safe to cache (``cache: true``)
    deterministic = True

    class Params(rewardkit.Params):
        """Parameters of the ``rouge`` reward."""

        metric: Literal["rouge1", "rouge2", "rougeL", "rougeLsum"] = Field(
            "rougeL", description="unigram, bigram, longest-common-subsequence, or summary-level LCS")
        measure: Literal["fmeasure", "precision", "recall"] = Field(
            "fmeasure", description="precision: share of the completion in the reference; recall: the reverse")
        use_stemmer: bool = Field(True, description="Porter-stem words before matching (runs ~ running)")
        as_penalty: bool = Field(False, description="score ROUGE - 1 (0 at a perfect match) instead of ROUGE")

    def __init__(self, params=None, *, device: str = "cpu"):
        super().__init__(params, device=device)
        self._scorer = None  # rouge_score imports nltk: built on first use

    def score(self, batch: rewardkit.Batch) -> list[float]:
        """ROUGE (or ROUGE - 1) of each completion against ``batch.references``."""
        if batch.references is None:
            raise rewardkit.RewardError(
                self.name, "needs a reference per sample, but the batch has none "
                           "(set data.reference_field in the recipe, or pass references to `rewardkit score`)")
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer([self.params.metric], use_stemmer=self.params.use_stemmer)
        offset = -1.0 if self.params.as_penalty else 0.0
        scores = []
        for completion, reference in zip(batch.completions, batch.references):
            # rouge-score's signature is score(target, prediction): reference first.
            result = self._scorer.score(reference, completion)[self.params.metric]
            # float(): for empty text rouge-score returns the int 0
            scores.append(float(getattr(result, self.params.measure)) + offset)
        return scores


@rewardkit.hookimpl
def register_rewards(register):
    """Register the ``rouge`` reward."""
    register(Rouge)
