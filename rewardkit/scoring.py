"""Running one reward component on a batch: chunks, concurrency, timeouts, failure policy, cache.

:func:`score_component` is a coroutine. It splits the batch into chunks of
the reward's ``max_batch_size``, runs up to ``max_concurrency`` of them at
once (an ``async def score`` is awaited on the event loop, a synchronous one
runs in a worker thread, or in the caller's thread through
:func:`score_component_inline`), and applies the recipe's failure policy to what
comes back:

- ``on_error: stop`` (default): an exception, a timeout or a broken return
  value is a :class:`~rewardkit.errors.RewardError` naming the reward, its
  plugin and (where there is one) the sample;
- ``on_error: skip``: the samples of the failed call (or the one bad sample)
  get no score, ``None``, and are counted as skipped;
- ``on_error: zero``: they score 0.0 and are counted as zeroed.

A reward returning ``None`` for a sample is never an error: that sample has
no score and is counted as ``none``. A :class:`~rewardkit.errors.RewardkitError`
raised by the reward (a missing model, a label the model lacks) always stops:
it is a setup problem the user must fix, not a flaky call.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from rewardkit.errors import RewardError, RewardkitError
from rewardkit.reward import Batch, ScoreContractError, check_shape, score_problem

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from rewardkit.compose import Component


@dataclass
class FailureCounts:
    """What happened to one reward's samples in one batch.

    :param skipped: samples left without a score by ``on_error: skip`` (error or timeout).
    :param zeroed: samples scored 0.0 by ``on_error: zero``.
    :param timed_out: samples whose call ran past ``timeout`` (also counted as skipped or zeroed).
    :param none: samples for which the reward returned ``None``.
    :param cache_hits: samples answered from the cache.
    :param cache_lookups: samples looked up in the cache (0 when caching is off).
    :param first_error: the first error's message, for the log and for ``max_skipped_frac``.
    """

    skipped: int = 0
    zeroed: int = 0
    timed_out: int = 0
    none: int = 0
    cache_hits: int = 0
    cache_lookups: int = 0
    first_error: str | None = None

    @property
    def no_score(self) -> int:
        """Samples without a score of this reward: skipped plus ``None``."""
        return self.skipped + self.none

    def __add__(self, other: "FailureCounts") -> "FailureCounts":
        """The counts of two batches (or two processes) together; the first error kept is the earlier."""
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name)
                  for f in fields(self) if f.name != "first_error"}
        return FailureCounts(**summed, first_error=self.first_error or other.first_error)

    def log_keys(self, name: str) -> dict[str, float]:
        """``reward/<name>/skipped`` etc., for the step's metrics; the hit rate only when caching is on."""
        out: dict[str, float] = {f"reward/{name}/{key}": float(getattr(self, key))
                                 for key in ("skipped", "zeroed", "timed_out", "none")}
        if self.cache_lookups:
            out[f"reward/{name}/cache_hit_rate"] = self.cache_hits / self.cache_lookups
        return out


@dataclass
class ComponentResult:
    """One component's scores of a batch.

    :param scores: per sample, the checked score, or ``None`` (no score: the
        reward returned ``None``, or the sample was skipped).
    :param zeroed: indices of samples scored 0.0 by ``on_error: zero``.
    :param counts: what happened, for logging.
    """

    scores: list[float | None]
    zeroed: set[int] = field(default_factory=set)
    counts: FailureCounts = field(default_factory=FailureCounts)


def chunks(indices: list[int], size: int | None) -> list[list[int]]:
    """``indices`` cut into consecutive pieces of at most ``size`` (one piece when ``size`` is None)."""
    if not indices:
        return []
    if size is None:
        return [indices]
    return [indices[i:i + size] for i in range(0, len(indices), size)]


async def _call(comp: "Component", sub: Batch, executor: "Executor | None") -> Any:
    """One ``score`` call on ``sub``, awaited, under the component's timeout."""
    reward, timeout = comp.reward, comp.spec.timeout
    if type(reward).is_async():
        call = reward.score(sub)
    else:
        # A synchronous score runs in a worker thread so the other rewards of the step overlap it.
        call = asyncio.get_running_loop().run_in_executor(executor, reward.score, sub)
    if timeout is None:
        return await call
    return await asyncio.wait_for(call, timeout)


def concurrency(reward) -> int:
    """How many ``score`` calls of ``reward`` may be in flight at once (its ``max_concurrency``, at least 1)."""
    return max(1, int(getattr(reward, "max_concurrency", 1) or 1))


def _plan(comp: "Component", batch: Batch) -> tuple[ComponentResult, dict[int, bytes], list[list[int]]]:
    """Answer what the cache can; the rest of ``batch`` cut into the calls to make.

    :returns: the result so far, the cache key of each sample still to score,
        and the calls (lists of sample indices, at most ``max_batch_size`` each).
    """
    n = len(batch)
    result = ComponentResult(scores=[None] * n)
    counts = result.counts
    todo = list(range(n))
    keys: dict[int, bytes] = {}
    cache = comp.cache
    if cache is not None:
        todo = []
        for i in range(n):
            key = cache.key(batch.prompts[i], batch.completions[i],
                            None if batch.references is None else batch.references[i], batch.metadata[i])
            hit, value = cache.lookup(key)
            counts.cache_lookups += 1
            if hit:
                counts.cache_hits += 1
                result.scores[i] = value
                counts.none += value is None
            else:
                keys[i] = key
                todo.append(i)
    return result, keys, chunks(todo, getattr(comp.reward, "max_batch_size", None))


def _collect(comp: "Component", result: ComponentResult, keys: dict[int, bytes], pieces: list[list[int]],
             outcomes: list[Any]) -> ComponentResult:
    """Check each call's outcome (a list of scores or the exception it raised) and apply the failure policy."""
    counts = result.counts
    for idx, outcome in zip(pieces, outcomes):
        if isinstance(outcome, BaseException):
            _failed_call(comp, result, idx, outcome)
            continue
        try:
            check_shape(outcome, len(idx))
        except ScoreContractError as exc:
            _fail(comp, result, idx, str(exc))
            continue
        for j, value in zip(idx, outcome):
            problem = score_problem(value)
            if problem is not None:
                _fail(comp, result, [j], problem, index=j)
                continue
            score = None if value is None else float(value)
            result.scores[j] = score
            counts.none += score is None
            if j in keys:
                comp.cache.put(keys[j], score)
    return result


async def score_component(comp: "Component", batch: Batch, executor: "Executor | None" = None) -> ComponentResult:
    """Score ``batch`` with one component, honouring its failure policy, limits and cache.

    :param executor: where a synchronous ``score`` runs (default: the loop's).
    :raises RewardError: under ``on_error: stop``, on an exception, a timeout
        or a return value that breaks the contract; under any policy, when
        the reward raised a :class:`RewardkitError`.
    """
    result, keys, pieces = _plan(comp, batch)
    limit = asyncio.Semaphore(concurrency(comp.reward))

    async def run(idx: list[int]) -> Any:
        async with limit:
            # Each call gets its own copy: a reward that edits its input cannot reach another's.
            return await _call(comp, copy.deepcopy(batch.select(idx)), executor)

    outcomes = await asyncio.gather(*(run(idx) for idx in pieces), return_exceptions=True)
    return _collect(comp, result, keys, pieces, outcomes)


def runs_inline(comp: "Component") -> bool:
    """True when ``comp`` can be scored by :func:`score_component_inline`: a synchronous ``score`` whose
    calls run one at a time (``max_concurrency`` 1), so nothing is lost by making them in the caller's thread."""
    return not type(comp.reward).is_async() and concurrency(comp.reward) == 1


def score_component_inline(comp: "Component", batch: Batch) -> ComponentResult:
    """:func:`score_component` for a component that :func:`runs_inline`, in the caller's own thread.

    Same chunks, cache, checks and failure policy; the calls are made one
    after the other, as ``max_concurrency: 1`` asks. Why not a worker
    thread: a torch model run from another thread gets its own OpenMP team,
    and while that thread lives the process has more OpenMP threads than
    cores, so libgomp stops spinning between parallel regions in *every*
    team; each small op of sampling and of the update then pays a futex
    wake-up (measured: the whole PPO step 2x slower on 2 cores,
    ``bench/results/omp_threads.md``).
    """
    result, keys, pieces = _plan(comp, batch)
    outcomes: list[Any] = []
    for idx in pieces:
        try:
            outcomes.append(comp.reward.score(copy.deepcopy(batch.select(idx))))
        except Exception as exc:  # the policy decides; KeyboardInterrupt and the like propagate
            outcomes.append(exc)
    return _collect(comp, result, keys, pieces, outcomes)


def _failed_call(comp: "Component", result: ComponentResult, idx: list[int], exc: BaseException) -> None:
    """A call raised or timed out: apply the policy to all of its samples."""
    name, plugin = comp.name, comp.plugin
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and comp.spec.timeout is not None:
        result.counts.timed_out += len(idx) if comp.spec.on_error != "stop" else 0
        detail = f"timed out after {comp.spec.timeout:g} s (timeout) on {len(idx)} samples"
        _fail(comp, result, idx, detail, exc=exc)
        return
    if isinstance(exc, RewardError):  # the reward's own message; add the plugin, map its sample index
        index = idx[exc.index] if exc.index is not None and 0 <= exc.index < len(idx) else None
        raise RewardError(name, exc.detail, plugin=plugin or exc.plugin, index=index) from exc
    if isinstance(exc, RewardkitError):
        raise exc  # e.g. ModelNotFoundError: already a message for the user, and no policy fixes it
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit, cancellation: never a score
    _fail(comp, result, idx, f"raised {type(exc).__name__}: {exc}", exc=exc)


def _fail(comp: "Component", result: ComponentResult, idx: list[int], detail: str, *,
          index: int | None = None, exc: BaseException | None = None) -> None:
    """Apply ``on_error`` to the samples ``idx``: raise, leave them without a score, or score them 0.0."""
    policy = comp.spec.on_error
    if policy == "stop":
        err = RewardError(comp.name, detail, plugin=comp.plugin, index=index)
        if exc is not None:
            raise err from exc
        raise err from None
    counts = result.counts
    if counts.first_error is None:
        counts.first_error = detail if index is None else f"sample {index}: {detail}"
    for i in idx:
        if policy == "skip":
            result.scores[i] = None
            counts.skipped += 1
        else:
            result.scores[i] = 0.0
            result.zeroed.add(i)
            counts.zeroed += 1


def policy_problems(spec, reward) -> list[tuple[str, str]]:
    """The recipe settings of ``spec`` that ``reward`` cannot honour, as ``(field, message)``.

    - ``timeout`` on a reward whose ``score`` is synchronous: a running
      thread cannot be interrupted, so the call would go on (holding its
      model, racing the next step's call) after the run moved on;
    - ``cache: true`` on a reward that does not declare ``deterministic``:
      a cached score would silently stand in for a fresh one;
    - declared limits that are not positive integers (a plugin bug).
    """
    name = spec.name
    out: list[tuple[str, str]] = []
    if spec.timeout is not None and not type(reward).is_async():
        out.append(("timeout", f"reward '{name}' has a synchronous score(), which cannot be interrupted once "
                               f"it runs; drop timeout, or use a reward whose score is async def"))
    if spec.cache and not getattr(reward, "deterministic", False):
        out.append(("cache", f"reward '{name}' does not declare itself deterministic (deterministic = True), "
                             f"so its scores cannot stand in for each other; drop cache"))
    for attr in ("max_batch_size", "max_concurrency"):
        value = getattr(reward, attr, None)
        if value is None and attr == "max_batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            out.append(("name", f"reward '{name}' declares {attr} = {value!r}; it must be a positive integer"
                                f"{' or None' if attr == 'max_batch_size' else ''}"))
    return out
