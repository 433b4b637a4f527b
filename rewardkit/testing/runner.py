"""Running one reward by hand: build a batch from lists, score it, get floats.

These are the helpers a plugin author's unit tests call directly::

    from rewardkit.testing import run_reward

    assert run_reward("length", ["one two three"], params={"target_words": 3}) == [0.0]
"""

from __future__ import annotations

import importlib.util
import random
import sys
from typing import Any, Sequence

from rewardkit.reward import Batch, Reward, call_score


def make_batch(
    completions: Sequence[str],
    prompts: Sequence[str] | None = None,
    references: Sequence[str] | None = None,
    metadata: Sequence[dict[str, Any]] | None = None,
) -> Batch:
    """A :class:`~rewardkit.Batch` from plain lists.

    Missing prompts become empty strings; ``references`` and ``metadata``
    stay absent (``None`` and empty dicts) unless given.

    :raises TypeError: ``completions`` is a single string (a common slip that
        would otherwise score each character as a sample).
    :raises ValueError: the lists differ in length.
    """
    for label, value in (("completions", completions), ("prompts", prompts), ("references", references)):
        if isinstance(value, str):
            raise TypeError(f"make_batch: {label} must be a list of strings, not one string ({value[:40]!r})")
    return Batch.from_lists(completions, prompts=prompts, references=references, metadata=metadata)


def reward_class(name_or_class: str | type[Reward] | Reward, registry=None) -> type[Reward]:
    """The reward class for a registered name, a class, or an instance.

    :param registry: where to look names up; by default every installed
        plugin (:func:`rewardkit.plugins.load_registry`).
    :raises rewardkit.errors.PluginError: an unknown name (with did-you-mean).
    :raises TypeError: something that is neither a name nor a Reward.
    """
    if isinstance(name_or_class, Reward):
        return type(name_or_class)
    if isinstance(name_or_class, type) and issubclass(name_or_class, Reward):
        return name_or_class
    if isinstance(name_or_class, str):
        if registry is None:
            from rewardkit.plugins import load_registry

            registry = load_registry()
        return registry.get(name_or_class).cls
    raise TypeError(f"expected a reward name, a rewardkit.Reward subclass or instance; got {name_or_class!r}")


def make_reward(name_or_class, params=None, *, registry=None, device: str = "cpu") -> Reward:
    """An instance of the reward, its ``params`` validated (an instance is returned as is).

    :raises pydantic.ValidationError: the params are invalid.
    """
    if isinstance(name_or_class, Reward):
        if params is not None:
            raise TypeError("make_reward: pass params with a name or class, not with a ready instance")
        return name_or_class
    return reward_class(name_or_class, registry)(params, device=device)


def run_reward(
    name_or_class: str | type[Reward] | Reward,
    completions: Sequence[str],
    *,
    params: dict | None = None,
    prompts: Sequence[str] | None = None,
    references: Sequence[str] | None = None,
    metadata: Sequence[dict[str, Any]] | None = None,
    registry=None,
    device: str = "cpu",
) -> list[float]:
    """Score ``completions`` with one reward and return plain floats.

    :param name_or_class: a registered reward name, a Reward subclass, or an instance.
    :param params: the reward's params (validated like a recipe's ``params:``).
    :returns: one float per completion, in order (``None`` where the reward returned it).
        An ``async def score`` is awaited.
    :raises AssertionError: the reward returned the wrong number of scores.
    """
    reward = make_reward(name_or_class, params, registry=registry, device=device)
    batch = make_batch(completions, prompts=prompts, references=references, metadata=metadata)
    scores = call_score(reward, batch)
    if len(scores) != len(batch):
        raise AssertionError(f"reward '{reward.name}' returned {len(scores)} scores for {len(batch)} samples")
    return [None if s is None else float(s) for s in scores]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (those installed)."""
    random.seed(seed)
    if "numpy" in sys.modules or importlib.util.find_spec("numpy") is not None:
        import numpy

        numpy.random.seed(seed)
    # Imported even when the reward has not imported it yet: a reward that
    # imports torch lazily inside score() must meet a seeded generator too.
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)
