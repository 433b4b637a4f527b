"""The plugin author's contract: :class:`Reward`, :class:`Params`, :class:`Batch`.

A reward turns a batch of (prompt, completion) pairs into one float per
sample (or ``None`` for a sample it cannot score). ``score`` may be a plain
method or ``async def``; the host awaits the latter. It declares its parameters as a pydantic model so a recipe's
``params:`` are checked before anything heavy loads. Heavy resources
(classifiers, tokenizers) are loaded lazily, once, on :attr:`Reward.device`.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import pydantic


class Params(pydantic.BaseModel):
    """Base class of a reward's parameters.

    Unknown keys are errors (``extra="forbid"``), NaN and inf are refused in
    float fields (a subclass that needs them sets ``allow_inf_nan=True`` in
    its own ``model_config`` and documents why), and the instance is frozen,
    so a reward cannot change its own configuration halfway through a run.
    """

    # NaN/inf are refused too: a reward's params in a recipe that validates are finite numbers
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Batch:
    """The samples a reward scores, all lists of equal length.

    :param prompts: the text the policy was given (template applied).
    :param completions: the text the policy wrote, special tokens removed.
    :param references: the reference output of each sample (e.g. the human
        summary), or ``None`` when the data has none.
    :param metadata: one dict per sample with the remaining dataset fields.
    """

    prompts: Sequence[str]
    completions: Sequence[str]
    references: Sequence[str] | None = None
    metadata: Sequence[dict[str, Any]] | None = field(default=None)

    def __post_init__(self):
        n = len(self.completions)
        if len(self.prompts) != n:
            raise ValueError(f"Batch: {len(self.prompts)} prompts but {n} completions")
        if self.references is not None and len(self.references) != n:
            raise ValueError(f"Batch: {len(self.references)} references but {n} completions")
        if self.metadata is None:
            object.__setattr__(self, "metadata", [{} for _ in range(n)])
        elif len(self.metadata) != n:
            raise ValueError(f"Batch: {len(self.metadata)} metadata entries but {n} completions")

    def __len__(self) -> int:
        return len(self.completions)

    @classmethod
    def from_lists(cls, completions, prompts=None, references=None, metadata=None) -> "Batch":
        """Build a batch from plain lists; missing prompts become empty strings."""
        completions = list(completions)
        prompts = [""] * len(completions) if prompts is None else list(prompts)
        return cls(prompts, completions, None if references is None else list(references),
                   None if metadata is None else list(metadata))

    def select(self, indices: Sequence[int]) -> "Batch":
        """The sub-batch of the given sample indices, in that order."""
        pick = lambda xs: None if xs is None else [xs[i] for i in indices]  # noqa: E731
        return Batch(pick(self.prompts), pick(self.completions), pick(self.references), pick(self.metadata))


class Reward:
    """Base class of every reward.

    Subclasses set :attr:`name`, optionally a nested ``Params`` model, and
    implement :meth:`score`. Set :attr:`needs_references` when the reward
    compares against ``batch.references``; a recipe whose data has none is
    then rejected before the run starts.
    """

    #: The name recipes and the CLI use for this reward.
    name: ClassVar[str] = ""
    #: True when :meth:`score` needs ``batch.references``.
    needs_references: ClassVar[bool] = False
    #: The reward's parameters; subclasses override with their own model.
    Params: ClassVar[type[Params]] = Params
    #: True when the same (prompt, completion, reference, metadata) always
    #: gets the same score: the host may then cache scores by content
    #: (``cache: true`` in a recipe is refused for a reward that is not).
    #: An instance may set its own (e.g. from its params) in ``__init__``.
    deterministic: bool = False
    #: At most this many samples per ``score`` call; larger batches are split
    #: into chunks of this size (``None``: the whole batch in one call).
    max_batch_size: int | None = None
    #: At most this many ``score`` calls of this reward in flight at once
    #: (chunks of one batch run concurrently up to this limit). A
    #: synchronous ``score`` runs in worker threads, so above 1 it must be
    #: thread-safe.
    max_concurrency: int = 1

    def __init__(self, params: Params | dict | None = None, *, device: str = "cpu"):
        """Validate ``params`` against :attr:`Params` and remember the device.

        :param params: a ``Params`` instance, a plain dict, or ``None`` for defaults.
        :param device: where heavy resources should load (``"cpu"``, ``"cuda:0"``...).
        :raises pydantic.ValidationError: when the params are invalid.
        """
        if params is None:
            params = {}
        if not isinstance(params, self.Params):
            params = self.Params.model_validate(params if isinstance(params, dict) else dict(params))
        self.params = params
        self.device = device

    def score(self, batch: Batch) -> list[float | None]:
        """Return one finite float per sample of ``batch`` (higher is better).

        ``None`` for a sample the reward cannot score: that sample is then
        masked out of the loss, never given a made-up number. Subclasses may
        define ``async def score`` instead; the host awaits it.
        """
        raise NotImplementedError(f"{type(self).__name__}.score")

    @classmethod
    def is_async(cls) -> bool:
        """True when :meth:`score` is ``async def`` (awaited, cancellable on a timeout)."""
        return inspect.iscoroutinefunction(cls.score)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"


class ScoreContractError(ValueError):
    """What a reward returned breaks the contract of :meth:`Reward.score`.

    :param message: what is wrong, and what to return instead.
    :param index: the offending sample, when one is at fault.
    """

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def check_shape(scores: Any, n: int) -> None:
    """Check that ``scores`` is a list (or tuple) of ``n`` items.

    :raises ScoreContractError: it is something else, or has the wrong length.
    """
    if not isinstance(scores, (list, tuple)):
        hint = " (use .tolist())" if hasattr(scores, "tolist") else ""
        raise ScoreContractError(f"returned a {type(scores).__name__}, not a list of floats{hint}")
    if len(scores) != n:
        raise ScoreContractError(f"returned {len(scores)} scores for {n} samples")


def score_problem(value: Any) -> str | None:
    """Why one returned value is not a valid score, or ``None`` when it is (``None`` itself is valid)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = " (use .item())" if hasattr(value, "item") else ""
        return f"returned {value!r} (a {type(value).__name__}), not a number{hint}"
    if not math.isfinite(float(value)):
        return f"returned {float(value)} (scores must be finite)"
    return None


def validate_scores(scores: Any, n: int, *, allow_none: bool = True) -> list[float | None]:
    """Check ``scores`` against the contract of :meth:`Reward.score` and return them as floats.

    The contract: a list (or tuple) of ``n`` items, each a real, finite
    number or ``None`` (a sample the reward cannot score); ``bool`` is not a
    number here. Anything else (a dict, a string, a tensor or array, a list
    of strings, NaN, inf) is refused. The one checker behind training
    (:mod:`rewardkit.compose`) and ``rewardkit check-plugin``
    (:mod:`rewardkit.testing`), so a reward that passes one passes the other.

    :param allow_none: ``False`` refuses ``None`` too (for callers that need a number everywhere).
    :returns: the scores as floats, ``None`` kept where the reward returned it.
    :raises ScoreContractError: naming the first problem.
    """
    check_shape(scores, n)
    out: list[float | None] = []
    for i, value in enumerate(scores):
        if value is None and not allow_none:
            raise ScoreContractError("returned None (this caller needs a number for every sample)", i)
        problem = score_problem(value)
        if problem is not None:
            raise ScoreContractError(problem, i)
        out.append(None if value is None else float(value))
    return out


def call_score(reward: Reward, batch: Batch) -> Any:
    """Call ``reward.score(batch)`` from synchronous code, awaiting it when it is ``async def``.

    Inside a running event loop (a notebook, an async test) the coroutine
    runs on a fresh loop in a helper thread, since this thread's loop is busy
    waiting for us. Returns what ``score`` returned, unchecked.
    """
    result = reward.score(batch)
    if not inspect.isawaitable(result):
        return result
    import asyncio

    async def _await():
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await())
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _await()).result()
