"""Fake reward plugins shared by the recipe, plugin and CLI tests.

The rewards are tiny and deterministic so every expected score can be worked
out by hand. :func:`installed` makes plugin modules look installed through
the ``rewardkit`` entry-point group, the way a pip-installed package is
found, and removes them again in ``finally``.
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from typing import Literal

from pydantic import Field

import rewardkit
import rewardkit.plugins


class Shouting(rewardkit.Reward):
    """Share of a completion's letters written in capitals."""

    name = "shouting"

    class Params(rewardkit.Params):
        """Parameters of the fake ``shouting`` reward."""

        threshold: float = Field(0.5, ge=0.0, le=1.0)
        mode: Literal["share", "binary"] = "share"

    def score(self, batch):
        out = []
        for text in batch.completions:
            letters = [c for c in text if c.isalpha()]
            share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
            out.append(float(share >= self.params.threshold) if self.params.mode == "binary" else share)
        return out


class Overlap(rewardkit.Reward):
    """Share of a completion's words that appear in its reference."""

    name = "overlap"
    needs_references = True

    class Params(rewardkit.Params):
        """Parameters of the fake ``overlap`` reward."""

        lowercase: bool = True

    def score(self, batch):
        out = []
        for text, ref in zip(batch.completions, batch.references):
            if self.params.lowercase:
                text, ref = text.lower(), ref.lower()
            words = text.split()
            out.append(sum(w in ref.split() for w in words) / len(words) if words else 0.0)
        return out


class FakeToxicity(rewardkit.Reward):
    """Stands in for the built-in toxicity reward: 1.0 unless the text says 'idiot'."""

    name = "toxicity"

    class Params(rewardkit.Params):
        """A subset of the real toxicity reward's params."""

        model: str = "facebook/roberta-hate-speech-dynabench-r4-target"
        output: Literal["logit", "probability"] = "logit"

    def score(self, batch):
        return [0.0 if "idiot" in c else 1.0 for c in batch.completions]


class Exploding(rewardkit.Reward):
    """Fails if it is ever instantiated: validation must only touch its Params."""

    name = "exploding"

    class Params(rewardkit.Params):
        """One bounded parameter, so validation has something to check."""

        size: int = Field(1, ge=1)

    def __init__(self, params=None, *, device="cpu"):
        raise AssertionError("a reward was instantiated (a model would have loaded)")


class Miscounting(rewardkit.Reward):
    """Returns one score too few: the CLI must say so, naming the reward."""

    name = "miscounting"

    def score(self, batch):
        return [0.0] * (len(batch) - 1)


def make_plugin(module_name: str, *rewards: type[rewardkit.Reward], version: str | None = None) -> types.ModuleType:
    """A plugin module, as a third party would write it, registering ``rewards``."""
    module = types.ModuleType(module_name)

    @rewardkit.hookimpl
    def register_rewards(register):
        for cls in rewards:
            register(cls)

    module.register_rewards = register_rewards
    if version is not None:
        module.__version__ = version
    return module


class FakeDistribution:
    """Just enough of ``importlib.metadata.Distribution`` for :mod:`rewardkit.plugins`."""

    def __init__(self, name: str, version: str):
        self.metadata = {"Name": name}
        self.version = version


class FakeEntryPoint:
    """An entry point of the ``rewardkit`` group whose ``load()`` returns ``target`` or raises it."""

    def __init__(self, name: str, target, dist: FakeDistribution | None = None):
        self.name, self.value, self.group, self.dist = name, f"fake_{name}", "rewardkit", dist
        self._target = target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@contextmanager
def installed(*entry_points: FakeEntryPoint):
    """Make ``entry_points`` the only installed rewardkit plugins, for the ``with`` block."""
    real = rewardkit.plugins.metadata
    fake = types.SimpleNamespace(
        entry_points=lambda group=None: list(entry_points) if group == "rewardkit" else real.entry_points(group=group))
    rewardkit.plugins.metadata = fake
    try:
        yield
    finally:
        rewardkit.plugins.metadata = real


def standard_plugins() -> list[FakeEntryPoint]:
    """Two installed fake packages: shouting + overlap, and a toxicity stand-in."""
    return [
        FakeEntryPoint("shouting", make_plugin("rk_shouting", Shouting, Overlap),
                       FakeDistribution("rewardkit-shouting", "1.2.0")),
        FakeEntryPoint("faketox", make_plugin("rk_faketox", FakeToxicity),
                       FakeDistribution("rewardkit-faketox", "0.3.1")),
    ]


def forget_module(name: str) -> None:
    """Remove a module imported by a test (e.g. a plugin file beside a recipe) from ``sys.modules``."""
    sys.modules.pop(name, None)
