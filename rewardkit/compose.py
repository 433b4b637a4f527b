"""Composing reward components into the one number PPO optimises.

A recipe's ``rewards:`` list becomes a :class:`ComposedReward`. Calling it on
a :class:`~rewardkit.reward.Batch` scores every component and returns
:class:`Scores`: the total per sample,

    total = sum over components of weight * clip(normalise(component))

and the raw score of every component, so the runner can log each one and a
reward hack (one component rising while another falls) stays visible.

Every component's output is checked: the wrong number of scores, a non-number,
NaN or inf, or an exception inside the reward is a :class:`RewardError` naming
the reward, the plugin that registered it and, where there is one, the sample.
The PPO step never sees which plugin produced a number.
"""

from __future__ import annotations

import copy
import math
import statistics
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pydantic

from rewardkit.errors import RecipeError, RewardError, RewardkitError
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch, Reward, ScoreContractError, validate_scores

if TYPE_CHECKING:
    from rewardkit.plugins import Registry


class RunningMeanStd:
    """Running mean and (population) standard deviation of a stream of scores.

    Batches are merged with the parallel form of Welford's update (Chan,
    Golub & LeVeque, 1979), which stays accurate where the naive
    sum-of-squares formula cancels catastrophically.
    """

    #: below this std the scores are only centred, not divided: with one
    #: sample, or a constant reward, dividing would blow a rounding error up.
    min_std = 1e-6

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0):
        self.count, self.mean, self.m2 = count, mean, m2

    @property
    def std(self) -> float:
        """Population standard deviation of everything seen so far (0 before any data)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def update(self, values: list[float]) -> None:
        """Merge a batch of values into the running statistics."""
        n = len(values)
        if n == 0:
            return
        batch_mean = sum(values) / n
        batch_m2 = sum((v - batch_mean) ** 2 for v in values)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta * delta * self.count * n / total
        self.count = total

    def normalize(self, values: list[float]) -> list[float]:
        """``(v - mean) / std`` with the current statistics (only centred while std is ~0)."""
        std = self.std
        div = std if std >= self.min_std else 1.0
        return [(v - self.mean) / div for v in values]

    def state_dict(self) -> dict:
        """The statistics as plain numbers (JSON- and torch.save-friendly)."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_state_dict(cls, state: dict) -> "RunningMeanStd":
        """Rebuild from :meth:`state_dict`'s output."""
        return cls(int(state["count"]), float(state["mean"]), float(state["m2"]))


@dataclass
class Component:
    """One reward of the composition: its recipe entry, the reward, and where it came from.

    :param spec: the recipe's entry (name, weight, normalize, clip).
    :param reward: the instantiated reward.
    :param plugin: the plugin (distribution or module) that registered it,
        for error messages.
    :param normalizer: running statistics; created automatically when
        ``spec.normalize`` is set.
    """

    spec: RewardSpec
    reward: Reward
    plugin: str | None = None
    normalizer: RunningMeanStd | None = None

    def __post_init__(self):
        if self.spec.normalize and self.normalizer is None:
            self.normalizer = RunningMeanStd()

    @property
    def name(self) -> str:
        """The reward's name as the recipe writes it."""
        return self.spec.name


@dataclass
class Scores:
    """The composed reward of one batch.

    :param total: per sample, the sum over components of weight x processed
        (normalised, clipped) component score; this is what PPO optimises.
    :param components: per component (keyed by reward name, in recipe order),
        the raw scores, before normalisation, clipping and weighting.
    """

    total: list[float]
    components: dict[str, list[float]] = field(default_factory=dict)

    def stats(self) -> dict[str, float]:
        """Mean and population std of the total and of each raw component, keyed for logging.

        Keys: ``reward/total_mean``, ``reward/total_std``, then
        ``reward/<name>_mean`` and ``reward/<name>_std`` per component.
        An empty batch gives NaN.
        """
        out: dict[str, float] = {}
        for key, values in [("total", self.total), *self.components.items()]:
            out[f"reward/{key}_mean"] = statistics.fmean(values) if values else math.nan
            out[f"reward/{key}_std"] = statistics.pstdev(values) if values else math.nan
        return out


class ComposedReward:
    """Weighted sum of reward components, with optional normalisation and clipping per component.

    Normalisation order: each call first merges the batch's raw scores into
    the component's running statistics, then normalises the batch with the
    updated statistics. So the very first batch is already on a unit scale
    (it is normalised by its own mean/std), and every batch counts towards
    the statistics it is judged by. With ``update_stats=False`` (evaluation)
    the statistics are frozen; if there are none yet, the batch's own
    statistics are used and not kept. Clipping to ``[-clip, clip]`` comes
    after normalisation, weighting last.
    """

    def __init__(self, components: list[Component]):
        """:param components: the components, in recipe order; names must be unique."""
        names = [c.name for c in components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"each reward may appear once in a composition; repeated: {', '.join(dupes)}")
        self.components = list(components)

    @classmethod
    def from_specs(cls, specs: list[RewardSpec], registry: "Registry", *, device: str = "cpu") -> "ComposedReward":
        """Instantiate each recipe entry's reward with its params.

        Nothing heavy loads here (rewards load models on first use).

        :param specs: the recipe's ``rewards:`` list.
        :param registry: rewards found by :func:`rewardkit.plugins.load_registry`.
        :param device: where the rewards should put their models.
        :raises RecipeError: with every unknown name (at ``rewards[i].name``)
            and invalid param (at ``rewards[i].params.<key>``) of all specs.
        """
        errors: list[tuple[str, str]] = []
        components: list[Component] = []
        for i, spec in enumerate(specs):
            if spec.name not in registry.rewards:
                errors.append((f"rewards[{i}].name", registry.unknown_message(spec.name)))
                continue
            info = registry.rewards[spec.name]
            try:
                reward = info.cls(spec.params, device=device)
            except pydantic.ValidationError as exc:
                errors.extend(params_errors(i, exc))
                continue
            except RewardkitError:
                raise
            except Exception as exc:  # a plugin bug in __init__: say whose
                raise RewardError(spec.name, f"could not be created: {type(exc).__name__}: {exc}",
                                  plugin=info.plugin) from exc
            components.append(Component(spec, reward, info.plugin))
        if errors:
            raise RecipeError(errors)
        return cls(components)

    @property
    def names(self) -> list[str]:
        """The components' reward names, in recipe order."""
        return [c.name for c in self.components]

    @property
    def needs_references(self) -> bool:
        """True when any component compares against ``batch.references``."""
        return any(c.reward.needs_references for c in self.components)

    def __call__(self, batch: Batch, *, update_stats: bool = True) -> Scores:
        """Score ``batch`` with every component and combine.

        :param update_stats: merge this batch into the running normalisation
            statistics (training); ``False`` freezes them (evaluation).
        :raises RewardError: a component raised, returned the wrong number of
            scores, or a score that is not a finite number; or the weighted
            total is not finite.
        """
        return self.combine(self.score_components(batch), update_stats=update_stats)

    def score_components(self, batch: Batch) -> dict[str, list[float]]:
        """Every component's raw, checked scores of ``batch``, keyed by reward name (recipe order).

        :raises RewardError: as :meth:`__call__`.
        """
        return {comp.name: _checked_scores(comp, batch) for comp in self.components}

    def combine(self, raw: dict[str, list[float]], *, update_stats: bool = True, gather=None,
                check: bool = True) -> Scores:
        """Normalise, clip and weight raw component scores into :class:`Scores`.

        :param raw: :meth:`score_components`'s output.
        :param update_stats: as for :meth:`__call__`.
        :param gather: in a multi-process run, a function taking this
            process's scores of one component and returning every process's
            (the same list on every process). The running statistics are
            updated with all of them, so every process normalises alike and
            holds the same state, which is what a checkpoint stores. ``None``:
            this process's scores only.
        :param check: raise RewardError when a total is not finite (finite
            components can still overflow once weighted and summed). The
            runner passes ``False``: its trainer checks the totals with every
            process agreeing, so that all of them stop together.
        """
        n = len(next(iter(raw.values()))) if raw else 0
        total = [0.0] * n
        for comp in self.components:
            scores = raw[comp.name]
            processed = scores
            if comp.normalizer is not None:
                stats = comp.normalizer
                seen = scores if gather is None else gather(scores)
                if not update_stats and stats.count == 0:
                    stats = RunningMeanStd()  # nothing to freeze yet: use this batch alone, keep nothing
                    stats.update(seen)
                elif update_stats:
                    stats.update(seen)
                processed = stats.normalize(scores)
            if comp.spec.clip is not None:
                c = comp.spec.clip
                processed = [min(max(v, -c), c) for v in processed]
            w = comp.spec.weight
            total = [t + w * v for t, v in zip(total, processed)]
        bad = next((i for i, t in enumerate(total) if not math.isfinite(t)), None) if check else None
        if bad is not None:
            weights = ", ".join(f"{c.name} x {c.spec.weight}" for c in self.components)
            raise RewardError("total", f"the composed reward is {total[bad]} (components: {weights})", index=bad)
        return Scores(total=total, components=raw)

    def state_dict(self) -> dict:
        """The running normalisation statistics, keyed by reward name (for checkpoints)."""
        return {"normalizers": {c.name: c.normalizer.state_dict()
                                for c in self.components if c.normalizer is not None}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s statistics (on resume).

        A normalised component missing from ``state`` (the recipe gained
        ``normalize: true`` since the checkpoint) starts fresh, with a warning;
        entries for components no longer normalised are ignored.
        """
        saved = state.get("normalizers", {})
        for comp in self.components:
            if comp.normalizer is None:
                continue
            if comp.name in saved:
                comp.normalizer = RunningMeanStd.from_state_dict(saved[comp.name])
            else:
                warnings.warn(f"no saved normalisation statistics for reward '{comp.name}'; starting fresh",
                              stacklevel=2)


def params_errors(index: int, exc: pydantic.ValidationError) -> list[tuple[str, str]]:
    """A reward's params ``ValidationError`` as ``(location, message)`` pairs under ``rewards[index].params``.

    A cross-field rule (a ``model_validator``) has no field of its own and is
    located at ``rewards[index].params``.
    """
    out = []
    for err in exc.errors():
        loc = f"rewards[{index}].params"
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else f".{part}"
        msg = err["msg"]
        if msg.startswith("Value error, "):  # pydantic's prefix for a validator's ValueError
            msg = msg[len("Value error, "):]
        out.append((loc, msg))
    return out


def _checked_scores(comp: Component, batch: Batch) -> list[float]:
    """Run one component on its own copy of ``batch`` and check what it returns.

    The copy means a reward that edits its input (``batch.completions[i] =
    ...``) cannot change what the next reward scores or what is logged.
    """
    name, plugin = comp.name, comp.plugin
    try:
        scores = comp.reward.score(copy.deepcopy(batch))
    except RewardError as exc:  # the reward's own message; add the plugin it came from
        raise RewardError(name, exc.detail, plugin=plugin or exc.plugin, index=exc.index) from exc
    except RewardkitError:
        raise  # e.g. ModelNotFoundError: already a message for the user
    except Exception as exc:
        raise RewardError(name, f"raised {type(exc).__name__}: {exc}", plugin=plugin) from exc
    try:
        return validate_scores(scores, len(batch))
    except ScoreContractError as exc:
        raise RewardError(name, str(exc), plugin=plugin, index=exc.index) from None
