"""Judges: scorers that are *not* the reward PPO optimised.

A policy trained against a reward model can learn what fools that model
rather than what the model was meant to measure (the design notes saw a
lowercase-only classifier miss capitalised insults). So eval scores the
samples a second time with a judge the policy never saw:

- the seed notebook's metric by default: the probability of ``hate`` from
  ``facebook/roberta-hate-speech-dynabench-r4-target``, label chosen by
  *name* (any sequence classifier and label can stand in: hub id, local
  directory or ``asset:NAME``);
- ``profanity-check``: the ``alt-profanity-check`` package, a linear SVM
  over word and character n-grams whose weights ship inside the package, so
  it works offline and knows nothing of rewardkit's tiny models;
- any installed reward plugin, by name (``reward:NAME`` forces that reading).

Every judge says whether higher is better, so the report can tell an
improvement from a regression whichever way the numbers run.

A judge that needs an optional package raises :class:`JudgeUnavailable`
from :meth:`Judge.load` when the package is not installed; the evaluation
skips that judge with a warning (naming the pip command) and runs the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from rewardkit.errors import RewardError, RewardkitError
from rewardkit.reward import Batch

#: The seed notebook's evaluation classifier and label.
DEFAULT_JUDGE = "facebook/roberta-hate-speech-dynabench-r4-target"
#: ``--judge`` value for the alt-profanity-check classifier.
PROFANITY_CHECK = "profanity-check"
#: Prefix that makes a judge spec a reward plugin's name.
REWARD_PREFIX = "reward:"


class JudgeUnavailable(RewardkitError):
    """A judge cannot run here: an optional package it needs is not installed.

    Not the end of an evaluation: :func:`rewardkit.evaluate.pipeline.evaluate`
    skips the judge with a warning and records it under ``skipped_judges``.

    :param spec: the judge as the user named it (``profanity-check``).
    :param package: the distribution to install (``alt-profanity-check``).
    :param detail: why the import failed, when not simply the package's absence.
    """

    def __init__(self, spec: str, package: str, detail: str = ""):
        self.spec, self.package, self.detail = spec, package, detail
        self.install = f"pip install {package}"
        why = f" ({detail})" if detail else ""
        super().__init__(f"judge '{spec}' needs the {package} package, which is not installed{why}: {self.install}")


@dataclass
class Judge:
    """Base of every judge.

    :param key: short identifier, used in ``eval.json`` and file names.
    :param title: what the number is, for report headings (e.g. ``P(hate)``).
    :param description: where the number comes from, one sentence.
    :param higher_is_better: direction of improvement.
    :param independent: ``False`` when the judge is (or shares a model
        with) a reward the policy was trained on; its verdict then proves
        little, and the report says so.
    :param text: what is scored: ``completion`` or ``prompt+completion``.
    """

    key: str
    title: str
    description: str
    higher_is_better: bool
    independent: bool = True
    text: str = "completion"

    def load(self) -> None:
        """Load whatever the judge needs; called before sampling so a missing model fails fast.

        :raises JudgeUnavailable: an optional package the judge needs is missing
            (the evaluation then skips this judge).
        """

    def score(self, batch: Batch) -> list[float]:
        """One float per sample."""
        raise NotImplementedError

    def texts(self, batch: Batch) -> list[str]:
        """The strings scored: completions, or prompt + completion as the seed's evaluation did."""
        if self.text == "prompt+completion":
            return [f"{p} {c}" for p, c in zip(batch.prompts, batch.completions)]
        return list(batch.completions)

    def info(self) -> dict:
        """The judge's description for ``eval.json``."""
        return {"key": self.key, "title": self.title, "description": self.description,
                "higher_is_better": self.higher_is_better, "independent": self.independent, "text": self.text}


@dataclass
class ClassifierJudge(Judge):
    """Probability of one label (by name) of a sequence classifier.

    Softmax over the labels, or the label's own sigmoid when the config says
    ``problem_type: multi_label_classification``.
    """

    model_name: str = DEFAULT_JUDGE
    label: str = "hate"
    device: str = "cpu"
    base_dir: Any = None
    batch_size: int = 32
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _index: int | None = field(default=None, repr=False)
    _multi_label: bool = field(default=False, repr=False)

    def load(self) -> None:
        """Load the classifier once and find the label's output index by name."""
        if self._model is not None:
            return
        from transformers import AutoModelForSequenceClassification

        from rewardkit import hub

        self._tokenizer = hub.load_tokenizer(self.model_name, base_dir=self.base_dir)
        model = hub.load_model(AutoModelForSequenceClassification, self.model_name, base_dir=self.base_dir)
        self._index = find_label(model.config, self.label, self.model_name)
        self._multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
            model.config.pad_token_id = self._tokenizer.pad_token_id
        self._model = model.to(self.device).eval()

    def score(self, batch: Batch) -> list[float]:
        """P(label) of each text, in batches, without grad."""
        import torch

        self.load()
        texts = self.texts(batch)
        limit = getattr(self._tokenizer, "model_max_length", 512)
        limit = limit if isinstance(limit, int) and limit < 100_000 else 512
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                enc = self._tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                      max_length=limit, return_tensors="pt").to(self.device)
                logits = self._model(**enc).logits.float()
                # A multi-label classifier (unitary/toxic-bert) scores each label on
                # its own: its probability is the sigmoid, and a softmax across
                # labels would understate "toxic" whenever "insult" is also high.
                probs = torch.sigmoid(logits) if self._multi_label else torch.softmax(logits, dim=-1)
                out.extend(probs[:, self._index].tolist())
        return out


def find_label(config, label: str, model_name: str) -> int:
    """Output index of ``label`` in ``config.id2label``: exact, else unambiguous case-insensitive match.

    :raises RewardkitError: the model has no such label (its labels are listed).
    """
    id2label = {int(i): str(n) for i, n in (getattr(config, "id2label", None) or {}).items()}
    exact = [i for i, n in id2label.items() if n == label]
    folded = [i for i, n in id2label.items() if n.lower() == label.lower()]
    if exact or len(folded) == 1:
        return (exact or folded)[0]
    labels = ", ".join(f"'{id2label[i]}'" for i in sorted(id2label)) or "(none)"
    raise RewardkitError(f"judge '{model_name}' has no label '{label}'; its labels are {labels} "
                         f"(set eval.judge_label, or --judge-label)")


@dataclass
class ProfanityCheckJudge(Judge):
    """Probability that the text is profane, from the ``alt-profanity-check`` package."""

    def load(self) -> None:
        """Import the package (it unpickles its bundled scikit-learn model, about a second).

        :raises JudgeUnavailable: alt-profanity-check (or a package it needs,
            such as scikit-learn) cannot be imported.
        """
        try:
            import profanity_check  # noqa: F401
        except ImportError as exc:
            # the package itself absent, or installed without what it imports (e.g. scikit-learn)
            detail = "" if getattr(exc, "name", None) == "profanity_check" else f"importing it failed: {exc}"
            raise JudgeUnavailable(PROFANITY_CHECK, "alt-profanity-check", detail) from None

    def score(self, batch: Batch) -> list[float]:
        """P(profane) of each text."""
        from profanity_check import predict_prob

        texts = self.texts(batch)
        return [float(p) for p in predict_prob(texts)] if texts else []


@dataclass
class RewardJudge(Judge):
    """A reward plugin used as a judge (its own direction: higher is better)."""

    reward: Any = None
    plugin: str | None = None

    def score(self, batch: Batch) -> list[float]:
        """The reward's scores, checked like the composition checks them."""
        import math

        try:
            scores = [float(s) for s in self.reward.score(batch)]
        except RewardkitError:
            raise
        except Exception as exc:
            raise RewardError(self.reward.name, f"failed as a judge: {type(exc).__name__}: {exc}",
                              plugin=self.plugin) from exc
        if len(scores) != len(batch) or not all(math.isfinite(s) for s in scores):
            raise RewardError(self.reward.name, f"returned {len(scores)} scores (not all finite?) for "
                              f"{len(batch)} samples", plugin=self.plugin)
        return scores


def make_judge(spec: str, *, registry, rewards: Sequence = (), label: str = "hate", params: dict | None = None,
               text: str = "completion", device: str = "cpu", base_dir=None) -> Judge:
    """Build the judge named by ``spec`` (``--judge`` / ``eval.judge``).

    :param spec: ``profanity-check``; ``reward:NAME`` or a registered reward
        name; else a classifier (hub id, directory or ``asset:NAME``).
    :param registry: the rewards available (:class:`rewardkit.plugins.Registry`).
    :param rewards: the recipe's ``rewards:`` specs: a reward judge takes the
        recipe's params for that reward, and a judge that repeats one of them
        is marked not independent.
    :param label: the classifier label whose probability is the score.
    :param params: params for a reward judge, over the recipe's.
    """
    if spec == PROFANITY_CHECK:
        return ProfanityCheckJudge(
            key="profanity", title="P(profane)", higher_is_better=False, text=text,
            description="probability of profanity from the alt-profanity-check package (linear SVM, offline)")
    name = spec[len(REWARD_PREFIX):] if spec.startswith(REWARD_PREFIX) else spec
    if spec.startswith(REWARD_PREFIX) or name in registry.rewards:
        info = registry.get(name)  # PluginError with did-you-mean for an unknown name
        recipe_spec = next((r for r in rewards if r.name == name), None)
        merged = {**(recipe_spec.params if recipe_spec else {}), **(params or {})}
        try:
            reward = info.cls(merged, device=device)
        except Exception as exc:
            raise RewardkitError(f"judge 'reward:{name}': invalid params {merged}: {exc}") from None
        same = recipe_spec is not None and not params
        return RewardJudge(key=f"reward-{name}", title=f"{name} (reward as judge)", higher_is_better=True,
                           description=f"reward plugin '{name}' ({info.plugin}) with params {merged}",
                           independent=not same, text="completion", reward=reward, plugin=info.plugin)
    return ClassifierJudge(
        key=f"p-{label}", title=f"P({label})", higher_is_better=False, text=text,
        description=f"probability of label '{label}' from the classifier {spec}",
        independent=not _used_by_rewards(spec, rewards, registry, base_dir), model_name=spec, label=label,
        device=device, base_dir=base_dir)


def _used_by_rewards(model: str, rewards: Sequence, registry, base_dir) -> bool:
    """True when some recipe reward uses the same model, named in its params or by its defaults.

    The defaults count: ``toxicity`` with no params *is* the RoBERTa
    classifier, so judging a detox run with it is not independent.
    """
    from rewardkit.hub import resolve

    def norm(name: str) -> str:
        try:
            return resolve(name, base_dir)
        except RewardkitError:
            return name

    target = norm(model)
    for spec in rewards:
        values = dict(spec.params)
        info = registry.rewards.get(spec.name)
        if info is not None:
            try:
                values = info.cls.Params.model_validate(spec.params).model_dump()
            except Exception:  # invalid params were reported by load_recipe; use them as written
                pass
        if any(isinstance(v, str) and norm(v) == target for v in values.values()):
            return True
    return False
