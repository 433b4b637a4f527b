"""Contract checks every reward should pass.

Each ``check_*`` function takes a reward instance (``check_params_validated``
also takes a class), runs one part of the contract on a small standard batch
and raises :class:`AssertionError` with a message naming the reward, the
sample and the values when the reward breaks it. :func:`check_reward` runs
them all and reports each as a :class:`CheckResult`; ``rewardkit
check-plugin`` prints those.

Why these checks: the PPO loop scores rollouts in mini-batches whose size and
order are accidents of the configuration, sometimes on an empty or runaway
completion; a reward whose score depends on those accidents, or that crashes
or returns NaN on them, breaks a run hours in.
"""

from __future__ import annotations

import copy
import math
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import pydantic

from rewardkit.errors import RewardkitError
from rewardkit.reward import Batch, Params, Reward, ScoreContractError, call_score, validate_scores
from rewardkit.testing import samples
from rewardkit.testing.runner import make_reward, reward_class, seed_everything

#: Tolerances for "the same score": batched model inference pads inputs, which
#: moves float32 results by ~1e-6, so equality would fail honest rewards.
ATOL = 1e-4
RTOL = 1e-4
#: Scoring the same batch twice with the same seed should agree much tighter.
DETERMINISM_TOL = 1e-6

_UNKNOWN_KEY = "__rewardkit_unknown_param__"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one contract check.

    :param name: the check's name, e.g. ``"batch_order_invariant"``.
    :param status: ``"PASS"``, ``"FAIL"`` or ``"SKIP"`` (an earlier failure made it impossible).
    :param detail: what was found on a pass; the reason on a failure.
    :param seconds: how long the check took.
    """

    name: str
    status: str
    detail: str
    seconds: float = 0.0
    #: True when the failure is a :class:`RewardkitError` (a setup problem such
    #: as a missing model), not a bug in the reward.
    setup_error: bool = False

    @property
    def passed(self) -> bool:
        """True when the check passed."""
        return self.status == "PASS"


def _label(reward: Reward) -> str:
    return f"reward '{reward.name or type(reward).__name__}'"


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame that raised, to point at the bug.

    Empty for a :class:`RewardkitError`, whose message already tells the user what to do.
    """
    if isinstance(exc, RewardkitError):
        return ""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def score_checked(reward: Reward, batch: Batch, what: str = "the sample batch") -> list[float]:
    """Score ``batch`` and check the result as training does (:func:`rewardkit.reward.validate_scores`).

    Also checks that ``score`` left its input as it was: in training every
    reward gets its own copy, but a reward that edits its batch is a bug.

    :param what: describes the batch in failure messages.
    :returns: the scores as plain floats (``None`` where the reward returned it).
    :raises AssertionError: ``score`` raised, modified the batch, or returned
        anything but a list of ``len(batch)`` finite real numbers or ``None``.
    """
    before = copy.deepcopy(batch)
    try:
        scores = call_score(reward, batch)  # an async score is awaited
    except Exception as exc:
        raise AssertionError(f"{_label(reward)}: score() raised {type(exc).__name__}: {exc} "
                             f"on {what}{_where(exc)}") from exc
    changed = [f for f in ("prompts", "completions", "references", "metadata")
               if getattr(before, f) != getattr(batch, f)]
    if changed:
        raise AssertionError(f"{_label(reward)}: score() modified its input ({', '.join(f'batch.{f}' for f in changed)}) "
                             f"on {what}; treat the batch as read-only")
    try:
        return validate_scores(scores, len(batch))
    except ScoreContractError as exc:
        sample = "" if exc.index is None else f", sample {exc.index}"
        detail = f"; completion: {_short(batch.completions[exc.index])}" if exc.index is not None else ""
        raise AssertionError(f"{_label(reward)}: score() on {what}{sample}: {exc}{detail}") from None


def _default_batch(reward: Reward, batch: Batch | None) -> Batch:
    return batch if batch is not None else samples.sample_batch(references=reward.needs_references)


def _compare(reward: Reward, expected, got, how: str, *, atol=ATOL, rtol=RTOL, hint: str = "") -> None:
    """Raise naming up to three samples whose scores differ."""
    def same(a, b) -> bool:  # None (cannot score) must stay None
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)

    fmt = lambda v: "None" if v is None else f"{v:.6g}"  # noqa: E731
    bad = [i for i, (a, b) in enumerate(zip(expected, got)) if not same(a, b)]
    if bad:
        shown = "; ".join(f"sample {i}: {fmt(expected[i])} vs {fmt(got[i])}" for i in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise AssertionError(f"{_label(reward)}: scores change {how}: {shown}{more}{hint}")


def _spread(scores: list[float | None]) -> str:
    numbers = [s for s in scores if s is not None]
    nones = f", {len(scores) - len(numbers)} None" if len(numbers) < len(scores) else ""
    if not numbers:
        return f"{len(scores)} samples{nones}"
    return f"{len(scores)} samples, scores from {min(numbers):.4g} to {max(numbers):.4g}{nones}"


def check_scores(reward: Reward, batch: Batch | None = None) -> list[float]:
    """One finite float per sample on the standard batch (or ``batch``).

    :returns: the scores.
    """
    return score_checked(reward, _default_batch(reward, batch))


def check_deterministic(reward: Reward, batch: Batch | None = None, *, seed: int = 0) -> list[float]:
    """The same scores for a fixed seed: twice on this instance, once on a fresh one.

    The repeat catches a reward that keeps state between calls or draws
    unseeded random numbers; the fresh instance (same params and device)
    catches one that initialises something at random when it loads.
    """
    batch = _default_batch(reward, batch)
    seed_everything(seed)
    first = score_checked(reward, batch)
    seed_everything(seed)
    _compare(reward, first, score_checked(reward, batch), "when the same instance scores the batch again",
             atol=DETERMINISM_TOL, rtol=DETERMINISM_TOL,
             hint=" (does score() keep state between calls, or draw random numbers?)")
    seed_everything(seed)
    fresh = type(reward)(reward.params, device=reward.device)
    _compare(reward, first, score_checked(fresh, batch), f"on a fresh instance with the same seed ({seed})",
             atol=DETERMINISM_TOL, rtol=DETERMINISM_TOL,
             hint=" (is something initialised at random, e.g. an untrained layer?)")
    return first


def check_order_invariant(reward: Reward, batch: Batch | None = None) -> list[float]:
    """A sample's score does not depend on where it sits in the batch (reversed order)."""
    batch = _default_batch(reward, batch)
    forward = score_checked(reward, batch)
    order = list(reversed(range(len(batch))))
    backward = score_checked(reward, batch.select(order), "the batch in reverse order")
    unreversed = [0.0] * len(batch)
    for pos, i in enumerate(order):
        unreversed[i] = backward[pos]
    _compare(reward, forward, unreversed, "when the batch is reversed (in order vs reversed)",
             hint=" (does the score depend on other samples in the batch?)")
    return forward


def check_batch_size_invariant(reward: Reward, batch: Batch | None = None) -> list[float]:
    """The same scores whether the batch is scored whole, in two halves, or one sample at a time."""
    batch = _default_batch(reward, batch)
    whole = score_checked(reward, batch)
    half = len(batch) // 2
    halves = (score_checked(reward, batch.select(range(half)), "the first half of the batch")
              + score_checked(reward, batch.select(range(half, len(batch))), "the second half of the batch"))
    _compare(reward, whole, halves, "when the batch is split in halves (whole vs halves)",
             hint=" (does the score depend on the batch size or on other samples?)")
    singles = [score_checked(reward, batch.select([i]), f"sample {i} alone")[0] for i in range(len(batch))]
    _compare(reward, whole, singles, "when samples are scored one at a time (whole vs single)",
             hint=" (does the score depend on the batch size or on other samples?)")
    return whole


def _refs(reward: Reward, references: bool | None) -> bool:
    return reward.needs_references if references is None else references


def check_empty_strings(reward: Reward, *, references: bool | None = None) -> list[float]:
    """An empty completion, and a sample empty everywhere, get finite scores.

    :param references: give the batch references; by default when the
        reward declares ``needs_references`` (likewise below).
    """
    return score_checked(reward, samples.empty_batch(references=_refs(reward, references)), "empty strings")


def check_long_inputs(reward: Reward, *, words: int = samples.LONG_WORDS,
                      references: bool | None = None) -> list[float]:
    """A ``words``-word completion and prompt (5,000 by default) get finite scores.

    A model-based reward must truncate; this is where one that does not fails.
    """
    batch = samples.long_batch(references=_refs(reward, references), words=words)
    return score_checked(reward, batch, f"a {words:,}-word completion")


def check_non_ascii(reward: Reward, *, references: bool | None = None) -> list[float]:
    """Accents, CJK, emoji, right-to-left and combining characters get finite scores."""
    batch = samples.non_ascii_batch(references=_refs(reward, references))
    return score_checked(reward, batch, "non-ASCII text")


def check_declared_limits(reward: Reward) -> None:
    """The optional attributes the host honours have usable values.

    ``deterministic`` a bool, ``max_batch_size`` a positive int or ``None``,
    ``max_concurrency`` a positive int (on the instance: a reward may set
    them from its params in ``__init__``).
    """
    label = _label(reward)
    det = getattr(reward, "deterministic", False)
    if not isinstance(det, bool):
        raise AssertionError(f"{label}: deterministic = {det!r}; it must be True or False")
    for attr, optional in (("max_batch_size", True), ("max_concurrency", False)):
        value = getattr(reward, attr, None)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AssertionError(f"{label}: {attr} = {value!r}; it must be a positive integer"
                                 f"{' or None' if optional else ''}")


def _is_unconstrained(annotation: Any) -> bool:
    return annotation in (Any, object)


def check_params_validated(reward: type[Reward] | Reward, params: dict | None = None) -> list[str]:
    """Bad params raise :class:`pydantic.ValidationError` when the reward is created.

    Tries ``params`` plus an unknown key, then ``params`` with each field set
    to a value of no sensible type (fields typed ``Any`` are skipped).
    Nothing heavy should load: validation comes before loading.

    :returns: the names of the fields checked.
    """
    cls = reward_class(reward)
    label = f"reward '{cls.name or cls.__name__}'"
    params = dict(params or {})
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, Params)):
        raise AssertionError(f"{label}: Params must subclass rewardkit.Params (got {cls.Params!r})")

    def expect_rejected(bad: dict, what: str) -> None:
        try:
            cls(bad, device="cpu")
        except pydantic.ValidationError:
            return
        except Exception as exc:
            raise AssertionError(f"{label}: {what} raised {type(exc).__name__} instead of "
                                 f"pydantic.ValidationError: {exc}{_where(exc)}") from exc
        raise AssertionError(f"{label}: {what} was accepted; validate params with a rewardkit.Params "
                             f"model (extra='forbid') and let Reward.__init__ validate them")

    expect_rejected({**params, _UNKNOWN_KEY: 1}, f"an unknown param '{_UNKNOWN_KEY}'")
    checked = []
    for field_name, field in cls.Params.model_fields.items():
        if _is_unconstrained(field.annotation):
            continue
        expect_rejected({**params, field_name: object()}, f"param '{field_name}' set to a bare object()")
        checked.append(field_name)
    return checked


def _timed(name: str, fn: Callable[[], str]) -> CheckResult:
    start = time.perf_counter()
    setup = False
    try:
        detail = fn()
        status = "PASS"
    except AssertionError as exc:
        detail, status = str(exc), "FAIL"
        setup = isinstance(exc.__cause__, RewardkitError)
    except Exception as exc:  # a crash in the reward or its loading is a failure, not a kit error
        detail, status = f"raised {type(exc).__name__}: {exc}{_where(exc)}", "FAIL"
        setup = isinstance(exc, RewardkitError)
    return CheckResult(name, status, detail, time.perf_counter() - start, setup)


#: The checks :func:`check_reward` runs, in this order.
CHECK_NAMES = ("instantiate", "params_validated", "one_finite_float_per_sample", "deterministic",
               "batch_order_invariant", "batch_size_invariant", "empty_strings", "long_inputs", "non_ascii")


def check_reward(
    name_or_class: str | type[Reward],
    params: dict | None = None,
    *,
    references: bool | None = None,
    registry=None,
    device: str = "cpu",
    seed: int = 0,
) -> list[CheckResult]:
    """Run every contract check on one reward and report each.

    :param name_or_class: a registered reward name or a Reward subclass.
    :param params: the params to create it with (e.g. a tiny model for a
        classifier reward).
    :param references: give the batches references; by default exactly when
        the reward declares ``needs_references``.
    :param registry: where to look a name up (default: installed plugins).
    :returns: one :class:`CheckResult` per name in :data:`CHECK_NAMES`;
        when the reward cannot be created, the checks that need an
        instance are ``SKIP``.
    """
    cls = reward_class(name_or_class, registry)
    refs = cls.needs_references if references is None else references
    holder: dict[str, Reward] = {}

    def instantiate() -> str:
        reward = make_reward(cls, params, device=device)
        check_declared_limits(reward)
        holder["reward"] = reward
        return f"{cls.__module__}.{cls.__name__} with params {reward.params.model_dump()}"

    def params_validated() -> str:
        fields = check_params_validated(cls, params)
        typed = f"wrong types for {', '.join(fields)}" if fields else "no typed fields to check"
        return f"rejects an unknown key; {typed}"

    results = [_timed("instantiate", instantiate), _timed("params_validated", params_validated)]
    if "reward" not in holder:
        return results + [CheckResult(n, "SKIP", "the reward could not be created") for n in CHECK_NAMES[2:]]
    reward = holder["reward"]
    batch = samples.sample_batch(references=refs)

    def finite() -> str:
        return _spread(check_scores(reward, batch))

    def deterministic() -> str:
        check_deterministic(reward, batch, seed=seed)
        return f"same scores on a repeat and on a fresh instance (seed {seed})"

    def order() -> str:
        check_order_invariant(reward, batch)
        return "same scores with the batch reversed"

    def size() -> str:
        check_batch_size_invariant(reward, batch)
        return f"same scores whole, in halves and one at a time ({len(batch)} samples)"

    def empty() -> str:
        return _spread(check_empty_strings(reward, references=refs))

    def long() -> str:
        return f"{samples.LONG_WORDS:,}-word completion: " + _spread(check_long_inputs(reward, references=refs))

    def non_ascii() -> str:
        return _spread(check_non_ascii(reward, references=refs))

    first = _timed(CHECK_NAMES[2], finite)
    results.append(first)
    if first.setup_error:
        # e.g. a model that is not available offline: every other check would
        # fail with the same message, so say it once.
        reason = f"the reward cannot score at all (see {CHECK_NAMES[2]})"
        return results + [CheckResult(n, "SKIP", reason) for n in CHECK_NAMES[3:]]
    runs = (deterministic, order, size, empty, long, non_ascii)
    return results + [_timed(name, fn) for name, fn in zip(CHECK_NAMES[3:], runs)]


def assert_reward_contract(name_or_class, params: dict | None = None, **kwargs) -> list[CheckResult]:
    """Run :func:`check_reward` and raise one AssertionError listing every failed check.

    :returns: the results when all passed.
    """
    results = check_reward(name_or_class, params, **kwargs)
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.status} {r.name}: {r.detail}" for r in failed)
        raise AssertionError(f"{len(failed)} of {len(results)} contract checks did not pass:\n{lines}")
    return results
