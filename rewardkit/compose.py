"""Composing reward components into the one number PPO optimises.

A recipe's ``rewards:`` list becomes a :class:`ComposedReward`. Calling it on
a :class:`~rewardkit.reward.Batch` scores every component and returns
:class:`Scores`: the total per sample,

    total = sum over components of weight * clip(normalise(component))

and the raw score of every component, so the runner can log each one and a
reward hack (one component rising while another falls) stays visible.

Every component's output is checked: the wrong number of scores, a non-number,
NaN or inf, or an exception inside the reward is a :class:`RewardError` naming
the reward, the plugin that registered it and, where there is one, the sample
(``on_error: stop``, the default). Under ``on_error: skip`` such samples get
no score and :attr:`Scores.valid` is False for them; under ``zero`` they
score 0.0. A reward may also return ``None`` for a sample it cannot score.
The rewards of one batch run concurrently (:mod:`rewardkit.scoring`): async
ones on an event loop, the first synchronous one in the caller's thread and
any other synchronous ones in worker threads. The PPO step never
sees which plugin produced a number.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pydantic

from rewardkit.cache import ScoreCache, reward_identity
from rewardkit.errors import RecipeError, RewardError, RewardkitError
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch, Reward
from rewardkit.scoring import (ComponentResult, FailureCounts, concurrency, policy_problems, runs_inline,
                               score_component, score_component_inline)

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
    :param cache: scores by content hash; created automatically when
        ``spec.cache`` is set (only for a deterministic reward).
    """

    spec: RewardSpec
    reward: Reward
    plugin: str | None = None
    normalizer: RunningMeanStd | None = None
    cache: ScoreCache | None = None

    def __post_init__(self):
        if self.spec.normalize and self.normalizer is None:
            self.normalizer = RunningMeanStd()
        if self.spec.cache and self.cache is None:
            self.cache = ScoreCache(reward_identity(self.spec.name, self.reward.params))

    @property
    def name(self) -> str:
        """The reward's name as the recipe writes it."""
        return self.spec.name


class ComponentScores(dict):
    """:meth:`ComposedReward.score_components`'s result: a dict of raw scores per reward, plus what failed.

    Values are lists of floats, with ``None`` for a sample that has no score
    of that reward (it returned ``None``, or the sample was skipped).

    :param failures: per reward, the :class:`~rewardkit.scoring.FailureCounts` of this batch.
    :param zeroed: per reward, the indices scored 0.0 by ``on_error: zero``.
    """

    def __init__(self, *args, failures=None, zeroed=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures: dict[str, FailureCounts] = dict(failures or {})
        self.zeroed: dict[str, set[int]] = dict(zeroed or {})


@dataclass
class Scores:
    """The composed reward of one batch.

    :param total: per sample, the sum over components of weight x processed
        (normalised, clipped) component score; this is what PPO optimises.
        A sample that is not :attr:`valid` has 0.0 here, a placeholder that
        is not a score: it must get no gradient (mask it out of the loss).
    :param components: per component (keyed by reward name, in recipe order),
        the raw scores, before normalisation, clipping and weighting;
        ``None`` where that reward gave the sample no score.
    :param valid: per sample, False when any component has no score for it
        (returned ``None``, or skipped under ``on_error: skip``, a timeout
        included). Samples scored 0.0 under ``on_error: zero`` stay valid.
        Empty means every sample is valid (filled in on creation).
    :param failures: per component, the :class:`~rewardkit.scoring.FailureCounts` of this batch.
    """

    total: list[float]
    components: dict[str, list[float | None]] = field(default_factory=dict)
    valid: list[bool] = field(default_factory=list)
    failures: dict[str, FailureCounts] = field(default_factory=dict)

    def __post_init__(self):
        if not self.valid:
            self.valid = [True] * len(self.total)

    @property
    def all_valid(self) -> bool:
        """True when every sample has a score (nothing to mask)."""
        return all(self.valid)

    def stats(self) -> dict[str, float]:
        """Mean and population std of the total and of each raw component, keyed for logging.

        Keys: ``reward/total_mean``, ``reward/total_std``, then
        ``reward/<name>_mean`` and ``reward/<name>_std`` per component.
        Only samples with a score count (valid ones for the total); none gives NaN.
        """
        out: dict[str, float] = {}
        total = [t for t, ok in zip(self.total, self.valid) if ok]
        for key, values in [("total", total), *self.components.items()]:
            values = [v for v in values if v is not None]
            out[f"reward/{key}_mean"] = statistics.fmean(values) if values else math.nan
            out[f"reward/{key}_std"] = statistics.pstdev(values) if values else math.nan
        return out

    def failure_stats(self) -> dict[str, float]:
        """Per reward, this batch's ``reward/<name>/skipped``, ``/zeroed``, ``/timed_out``, ``/none``
        (sample counts) and, for a cached reward, ``/cache_hit_rate``; plus ``reward/valid_frac``.

        For the step's metrics; all zeros when nothing failed.
        """
        out: dict[str, float] = {}
        for name in self.components:
            out.update(self.failures.get(name, FailureCounts()).log_keys(name))
        out["reward/valid_frac"] = sum(self.valid) / len(self.valid) if self.valid else math.nan
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
    after normalisation, weighting last. Samples without a score (``None``,
    skipped) and samples zeroed by ``on_error: zero`` neither update nor
    use the statistics.

    Scoring is asynchronous inside (:meth:`ascore_components`); the
    synchronous :meth:`__call__` and :meth:`score_components` run the
    first synchronous reward in the caller's thread and the others on a
    private event loop in a background thread, so they work the same from
    plain code, from a thread, or from inside someone else's running loop.
    """

    def __init__(self, components: list[Component]):
        """:param components: the components, in recipe order; names must be unique."""
        names = [c.name for c in components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"each reward may appear once in a composition; repeated: {', '.join(dupes)}")
        self.components = list(components)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_specs(cls, specs: list[RewardSpec], registry: "Registry", *, device: str = "cpu") -> "ComposedReward":
        """Instantiate each recipe entry's reward with its params.

        Nothing heavy loads here (rewards load models on first use).

        :param specs: the recipe's ``rewards:`` list.
        :param registry: rewards found by :func:`rewardkit.plugins.load_registry`.
        :param device: where the rewards should put their models.
        :raises RecipeError: with every unknown name (at ``rewards[i].name``),
            invalid param (at ``rewards[i].params.<key>``) and failure policy
            the reward cannot honour (``rewards[i].timeout``, ``.cache``) of all specs.
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
            errors += [(f"rewards[{i}].{key}", msg) for key, msg in policy_problems(spec, reward)]
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

    def score_components(self, batch: Batch) -> ComponentScores:
        """Every component's raw, checked scores of ``batch``, keyed by reward name (recipe order).

        All components run at once. The first synchronous one that makes
        one call at a time (:func:`~rewardkit.scoring.runs_inline`) runs
        here, in the caller's thread, while the others run on the private
        event loop (async ones) and in worker threads (synchronous ones).
        With one synchronous reward, the usual case, no thread is started at
        all: a torch model scored from a worker thread slows every later
        torch op of the process (see :func:`~rewardkit.scoring.score_component_inline`).

        :returns: a dict (``None`` for a sample without a score) that also
            carries the batch's failure counts, which :meth:`combine` passes on.
        :raises RewardError: as :meth:`__call__`.
        """
        inline = next((c for c in self.components if runs_inline(c)), None)
        rest = [c for c in self.components if c is not inline]
        pending = self._submit(self._gather(rest, batch)) if rest else None
        mine: ComponentResult | BaseException | None = None
        if inline is not None:
            try:
                mine = score_component_inline(inline, batch)
            except Exception as exc:  # raised below in recipe order, once the other components are done
                mine = exc
            except BaseException:  # Ctrl-C: stop waiting for the others
                if pending is not None:
                    pending.cancel()
                raise
        others = iter(pending.result() if pending is not None else [])
        return self._checked([mine if c is inline else next(others) for c in self.components])

    async def ascore_components(self, batch: Batch) -> ComponentScores:
        """:meth:`score_components` as a coroutine, for callers with their own event loop.

        Every component starts at once (synchronous ones in worker threads
        that live for this call only); each applies its own failure policy.
        When several stop, the error raised is the first in recipe order, and
        only after every component has finished, so no call is left running.
        """
        return self._checked(await self._gather(self.components, batch))

    async def _gather(self, components: list[Component], batch: Batch) -> list:
        """Each component's :class:`ComponentResult`, or the exception it raised, in the given order.

        Synchronous rewards run in a thread pool made for this call and shut
        down after it: an idle worker thread that ran a torch model keeps its
        OpenMP team alive, which slows every torch op of the process.
        """
        workers = sum(concurrency(c.reward) for c in components if not type(c.reward).is_async())
        executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="rewardkit-reward") if workers else None
        try:
            return await asyncio.gather(*(score_component(c, batch, executor) for c in components),
                                        return_exceptions=True)
        finally:
            if executor is not None:
                executor.shutdown(wait=True)  # every call has returned: the threads only have to exit

    def _checked(self, results: list) -> ComponentScores:
        """The components' results as :class:`ComponentScores`; the first exception (recipe order) raised."""
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
        return ComponentScores(
            {c.name: r.scores for c, r in zip(self.components, results)},
            failures={c.name: r.counts for c, r in zip(self.components, results)},
            zeroed={c.name: r.zeroed for c, r in zip(self.components, results)})

    def _submit(self, coro):
        """Start ``coro`` on the private loop (started on first use); returns its concurrent future."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_run_loop, args=(loop,), name="rewardkit-rewards", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                # Only signals the loop: a finalizer may run anywhere (inside a GC pass), so it must not wait.
                weakref.finalize(self, _stop_loop, loop)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        """Stop the private event loop and worker threads (a later call starts them again)."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is not None:
            _stop_loop(loop)
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def check_skipped_frac(self, scores: Scores, *, failures: dict[str, FailureCounts] | None = None,
                           n: int | None = None) -> None:
        """Stop a run whose rewards leave too many samples without a score (``max_skipped_frac``).

        For each component with ``max_skipped_frac`` set, the fraction of the
        batch it left without a score (skipped after errors, or ``None``) is
        compared with the limit.

        :param scores: the step's :class:`Scores`.
        :param failures: counts to judge instead of ``scores.failures``, e.g.
            summed over processes (``FailureCounts`` support ``+``).
        :param n: the number of samples those counts are out of (default ``len(scores.total)``).
        :raises RewardError: naming the first reward over its limit, the
            counts, the limit and the first error seen.
        """
        failures = scores.failures if failures is None else failures
        n = len(scores.total) if n is None else n
        for i, comp in enumerate(self.components):
            limit = comp.spec.max_skipped_frac
            counts = failures.get(comp.name)
            if limit is None or counts is None or not n:
                continue
            frac = counts.no_score / n
            if frac > limit:
                why = f"; first error: {counts.first_error}" if counts.first_error else ""
                raise RewardError(comp.name, f"{counts.no_score} of {n} samples ({frac:.0%}) got no score this step "
                                             f"({counts.skipped} skipped after errors, {counts.none} returned None), "
                                             f"over rewards[{i}].max_skipped_frac = {limit:g}{why}",
                                  plugin=comp.plugin)

    def combine(self, raw: dict[str, list[float]], *, update_stats: bool = True, gather=None,
                check: bool = True) -> Scores:
        """Normalise, clip and weight raw component scores into :class:`Scores`.

        A sample without a score in any component (``None``) is invalid:
        its total is 0.0, a placeholder, and ``Scores.valid`` is False for it.
        A sample zeroed by ``on_error: zero`` adds exactly 0.0 for that
        component (after normalisation and weighting) and stays valid.

        :param raw: :meth:`score_components`'s output (a plain dict works too:
            then nothing counts as zeroed or failed, ``None`` still means no score).
        :param update_stats: as for :meth:`__call__`.
        :param gather: in a multi-process run, a function taking this
            process's scores of one component and returning every process's
            (the same list on every process). The running statistics are
            updated with all of them, so every process normalises alike and
            holds the same state, which is what a checkpoint stores. ``None``:
            this process's scores only. It is given NaN for the samples that
            do not count (no score, zeroed), so every process sends a list of
            the same length; NaNs are dropped from what it returns.
        :param check: raise RewardError when a total is not finite (finite
            components can still overflow once weighted and summed). The
            runner passes ``False``: its trainer checks the totals with every
            process agreeing, so that all of them stop together.
        """
        n = len(next(iter(raw.values()))) if raw else 0
        zeroed_all = getattr(raw, "zeroed", {})
        valid = [all(raw[c.name][i] is not None for c in self.components) for i in range(n)]
        total = [0.0] * n
        for comp in self.components:
            scores = raw[comp.name]
            zeroed = zeroed_all.get(comp.name, set())
            # Only real scores count: a placeholder would pull the statistics towards it.
            counts = [s is not None and i not in zeroed for i, s in enumerate(scores)]
            processed = [s if ok else 0.0 for s, ok in zip(scores, counts)]
            if comp.normalizer is not None:
                stats = comp.normalizer
                mine = [s if ok else math.nan for s, ok in zip(processed, counts)]
                seen = mine if gather is None else gather(mine)
                seen = [v for v in seen if not math.isnan(v)]
                if not update_stats and stats.count == 0:
                    stats = RunningMeanStd()  # nothing to freeze yet: use this batch alone, keep nothing
                    stats.update(seen)
                elif update_stats:
                    stats.update(seen)
                processed = stats.normalize(processed)
            if comp.spec.clip is not None:
                c = comp.spec.clip
                processed = [min(max(v, -c), c) for v in processed]
            w = comp.spec.weight
            total = [t + (w * v if ok else 0.0) for t, v, ok in zip(total, processed, counts)]
        total = [t if ok else 0.0 for t, ok in zip(total, valid)]
        bad = next((i for i, t in enumerate(total) if not math.isfinite(t)), None) if check else None
        if bad is not None:
            weights = ", ".join(f"{c.name} x {c.spec.weight}" for c in self.components)
            raise RewardError("total", f"the composed reward is {total[bad]} (components: {weights})", index=bad)
        failures = dict(getattr(raw, "failures", {}))
        return Scores(total=total, components=dict(raw), valid=valid, failures=failures)

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


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The private loop's thread: run until stopped, then close the loop here, in its own thread."""
    try:
        loop.run_forever()
    finally:
        loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Ask a private event loop to stop (from any thread; returns at once)."""
    if not loop.is_closed():
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed meanwhile
            pass
