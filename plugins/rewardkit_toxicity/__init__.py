"""Built-in reward plugin: ``toxicity``, the score of a text classifier's label.

Written exactly as a third-party plugin would be: it imports only the public
``rewardkit`` API and registers through the ``register_rewards`` hook and the
``rewardkit`` entry-point group (see ``pyproject.toml``).

By default it scores with Meta's RoBERTa hate-speech classifier
(``facebook/roberta-hate-speech-dynabench-r4-target``) and returns the logit of
its ``nothate`` label, the reward of the seed notebook. The label is looked up
by *name* in the model's config: the seed took item 0 of a list sorted by
score, so for a hateful text it rewarded the ``hate`` logit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import rewardkit
from rewardkit import hub

DEFAULT_MODEL = "facebook/roberta-hate-speech-dynabench-r4-target"


class Toxicity(rewardkit.Reward):
    """Logit (or probability) of a classifier label chosen by name; default: nothate of RoBERTa hate-speech.

    Higher is better: with the defaults, a polite text scores higher than a
    hateful one. The classifier loads on the first call to :meth:`score`, once,
    on :attr:`device`, and scores in batches of ``batch_size`` without grad.
    """

    name = "toxicity"

    class Params(rewardkit.Params):
        """Parameters of the ``toxicity`` reward."""

        model: str = Field(DEFAULT_MODEL, description="sequence classifier: hub id, local directory or asset:NAME")
        label: str = Field("nothate", description="the label whose score is the reward, by name (config.id2label)")
        output: Literal["logit", "probability"] = Field(
            "logit", description="the raw logit of the label (as the seed), or its probability (softmax; sigmoid "
                                 "for a multi_label_classification model)")
        text: Literal["completion", "prompt+completion"] = Field(
            "completion", description="what is classified; the seed scored prompt + completion")
        batch_size: int = Field(32, ge=1, description="texts per forward pass")
        max_length: int = Field(512, ge=1, description="longer texts are truncated to this many tokens")
        revision: str | None = Field(None, description="hub revision (branch, tag or commit) of the model")
        trust_remote_code: bool = Field(False, description="allow code from the model repo; off unless you opt in")

    def __init__(self, params=None, *, device: str = "cpu"):
        super().__init__(params, device=device)
        # Filled by _load() on the first score(); loading in __init__ would make
        # `rewardkit validate` and plugin listing pay for a model download.
        self._model = None
        self._tokenizer = None
        self._label_index: int | None = None

    def _load(self) -> None:
        """Load tokenizer and classifier once and find the label's index by name."""
        if self._model is not None:
            return
        from transformers import AutoModelForSequenceClassification

        p = self.params
        extra = {"revision": p.revision} if p.revision else {}
        tokenizer = hub.load_tokenizer(p.model, trust_remote_code=p.trust_remote_code, **extra)
        model = hub.load_model(AutoModelForSequenceClassification, p.model,
                               trust_remote_code=p.trust_remote_code, **extra)
        self._label_index = label_index(model.config, p.label, reward=self.name, model_name=p.model)
        if tokenizer.pad_token is None:
            # Batches need padding; a classifier's tokenizer without a pad token
            # (GPT-style) can reuse EOS because the attention mask hides it.
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self._tokenizer = tokenizer
        self._model = model.to(self.device).eval()

    def texts(self, batch: rewardkit.Batch) -> list[str]:
        """The strings the classifier sees, per :attr:`Params.text`.

        ``prompt+completion`` is plain concatenation, as the seed did (its
        prompt template ends in ``"Summary: "``, so the two stay separated).
        """
        if self.params.text == "prompt+completion":
            return [p + c for p, c in zip(batch.prompts, batch.completions)]
        return list(batch.completions)

    def score(self, batch: rewardkit.Batch) -> list[float]:
        """The chosen label's logit or probability for each sample."""
        import torch

        self._load()
        texts = self.texts(batch)
        max_length = self.params.max_length
        model_max = getattr(self._tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < max_length:
            # Past the model's position embeddings the forward pass would fail.
            max_length = model_max
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.params.batch_size):
                chunk = texts[start:start + self.params.batch_size]
                enc = self._tokenizer(chunk, padding=True, truncation=True, max_length=max_length,
                                      return_tensors="pt").to(self.device)
                logits = self._model(**enc).logits.float()  # float: bf16 softmax loses precision
                if self.params.output == "probability":
                    # multi-label classifiers (unitary/toxic-bert) score each label on its own
                    multi = getattr(self._model.config, "problem_type", None) == "multi_label_classification"
                    logits = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
                scores.extend(logits[:, self._label_index].tolist())
        return scores


def label_index(config, label: str, *, reward: str = "toxicity", model_name: str = "") -> int:
    """The output index of ``label`` in a classifier's ``config.id2label``.

    Matching is exact first, then case-insensitive (``"NOTHATE"`` finds
    ``"nothate"``) when that is unambiguous.

    :raises rewardkit.RewardError: the label is not one of the model's,
        listing the labels it does have.
    """
    id2label = {int(i): str(name) for i, name in (getattr(config, "id2label", None) or {}).items()}
    by_name = {name: i for i, name in id2label.items()}
    if label in by_name:
        return by_name[label]
    folded = [i for name, i in by_name.items() if name.lower() == label.lower()]
    if len(folded) == 1:
        return folded[0]
    available = ", ".join(f"'{id2label[i]}'" for i in sorted(id2label)) or "(none)"
    raise rewardkit.RewardError(
        reward, f"model '{model_name}' has no label '{label}'; its labels are {available} "
                f"(set params.label to one of them)")


@rewardkit.hookimpl
def register_rewards(register):
    """Register the ``toxicity`` reward."""
    register(Toxicity)
