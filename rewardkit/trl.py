"""rewardkit rewards as TRL reward functions, for decoder-only training with GRPO or RLOO.

The same plugins that score rewardkit's seq2seq PPO serve TRL's
``GRPOTrainer`` and ``RLOOTrainer``::

    from trl import GRPOConfig, GRPOTrainer
    from rewardkit.trl import reward_funcs

    funcs = reward_funcs("recipes/detox-composed.yaml")      # or a list of RewardSpec
    args = GRPOConfig(output_dir="out", reward_weights=funcs.weights)
    trainer = GRPOTrainer(model=..., reward_funcs=funcs, args=args, train_dataset=...)

**One callable per component** (the default): TRL then logs each component
as ``rewards/<name>/mean`` and ``/std``, the per-component view rewardkit
keeps so that a reward hack stays visible, and TRL's own
``multi_objective_aggregation="normalize_then_sum"`` can work per component.
Each callable returns its component after the recipe's ``normalize``/``clip``
but *before* the weight; the recipe's weights are in ``funcs.weights``, to be
passed as ``GRPOConfig(reward_weights=funcs.weights)`` (TRL multiplies and
sums, so the total equals rewardkit's). Forgetting them means every weight
is 1. With ``combine=True`` the result is instead a single callable that
returns rewardkit's weighted total (``funcs.weights == [1.0]``), for
trainers or setups that want one number.

How TRL calls a reward function (trl 1.16, ``GRPOTrainer._calculate_rewards``
and ``RLOOTrainer._calculate_rewards``)::

    reward_func(prompts=prompts, completions=completions, completion_ids=completion_ids_list,
                **{column: [...] for every other dataset column},
                trainer_state=..., log_extra=..., log_metric=...)   # (+ environments=... in GRPO)

A component whose reward has an ``async def score`` becomes an
:class:`AsyncRewardFunc` (``async def __call__``), which TRL awaits on its own
event loop together with its other async reward functions.

``prompts`` and ``completions`` are strings, or, for conversational data,
lists of ``{"role", "content"}`` messages; references come from a dataset
column (``reference_column``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from rewardkit.errors import RewardkitError
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch

#: Keyword arguments TRL passes that are not dataset columns.
TRL_RESERVED = frozenset({"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"})
#: Columns tried, in order, for the references when no ``reference_column`` is given.
DEFAULT_REFERENCE_COLUMNS = ("reference", "summary")


def message_text(value: Any, *, prompt: bool = False) -> str:
    """The text of a TRL prompt or completion: a string as is, or a conversation's text.

    For a completion (a list of messages) the assistant messages' contents
    are joined by newlines; for a prompt, the last message's content is
    taken (the user turn the model answers). Multimodal contents (lists of
    ``{"type": "text", "text": ...}`` blocks) keep only their text blocks.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a single message
        value = [value]
    messages = list(value or [])
    if prompt:
        messages = messages[-1:]
    else:
        messages = [m for m in messages if m.get("role") == "assistant"] or messages
    return "\n".join(_content_text(m.get("content")) for m in messages)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


class RewardFunc:
    """A TRL reward function backed by a :class:`rewardkit.compose.ComposedReward`.

    :param composed: the rewardkit reward(s) to run.
    :param name: ``__name__``, which TRL uses in its logs (``rewards/<name>/mean``).
    :param reference_column: the dataset column with the references, or
        ``None`` to try :data:`DEFAULT_REFERENCE_COLUMNS`.
    :param log_components: also report each raw component's mean through
        TRL's ``log_metric`` (used by the combined form).
    """

    def __init__(self, composed, name: str, *, reference_column: str | None = None, log_components: bool = False):
        self.composed = composed
        self.__name__ = name
        self.reference_column = reference_column
        self.log_components = log_components

    def __repr__(self) -> str:
        return f"RewardFunc({self.__name__!r}, rewards={self.composed.names})"

    def batch(self, prompts: Sequence, completions: Sequence, **kwargs) -> Batch:
        """The rewardkit :class:`Batch` for TRL's arguments (dataset columns become references and metadata)."""
        n = len(completions)
        columns = {k: v for k, v in kwargs.items()
                   if k not in TRL_RESERVED and isinstance(v, (list, tuple)) and len(v) == n}
        references = self._references(columns)
        meta_keys = [k for k in columns if k != self._reference_key(columns)]
        metadata = [{k: columns[k][i] for k in meta_keys} for i in range(n)]
        return Batch(
            prompts=[message_text(p, prompt=True) for p in prompts],
            completions=[message_text(c) for c in completions],
            references=references,
            metadata=metadata,
        )

    def _reference_key(self, columns: dict) -> str | None:
        if self.reference_column is not None:
            return self.reference_column if self.reference_column in columns else None
        return next((c for c in DEFAULT_REFERENCE_COLUMNS if c in columns), None)

    def _references(self, columns: dict) -> list[str] | None:
        key = self._reference_key(columns)
        if key is not None:
            return [message_text(r) if r is not None else "" for r in columns[key]]
        if self.composed.needs_references:
            wanted = repr(self.reference_column) if self.reference_column else \
                " or ".join(repr(c) for c in DEFAULT_REFERENCE_COLUMNS)
            needy = [c.name for c in self.composed.components if c.reward.needs_references]
            raise RewardkitError(
                f"TRL reward '{self.__name__}': reward(s) {', '.join(needy)} need references, but the dataset has "
                f"no column {wanted} (columns: {', '.join(sorted(columns)) or 'none'}); "
                f"pass reference_column= to rewardkit.trl.reward_funcs")
        return None

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        """Score one TRL batch; called by the trainer with keyword arguments.

        :returns: one float per completion, or ``None`` for a completion
            without a score (a reward returned ``None``, or ``on_error: skip``):
            TRL reads ``None`` as "no reward from this function", never as 0.
        """
        return self._outputs(self.composed(self.batch(prompts, completions, **kwargs)), kwargs)

    def _outputs(self, scores, kwargs) -> list[float | None]:
        """TRL's values of ``scores`` (``None`` where there is no score), logging components when asked."""
        log_metric = kwargs.get("log_metric")
        if self.log_components and callable(log_metric):
            for name, values in scores.components.items():
                values = [v for v in values if v is not None]
                if values:
                    log_metric(f"rewardkit/{name}", sum(values) / len(values))
        return [t if ok else None for t, ok in zip(scores.total, scores.valid)]


class AsyncRewardFunc(RewardFunc):
    """A :class:`RewardFunc` whose rewards include an ``async def score``: TRL awaits it.

    TRL's trainers run async reward functions together on their own event
    loop (``asyncio.gather``), so an API-backed reward overlaps the others
    instead of blocking the step. Synchronous rewards inside it run in
    rewardkit's worker threads, as in rewardkit's own runs.
    """

    async def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        """As :meth:`RewardFunc.__call__`, awaited."""
        raw = await self.composed.ascore_components(self.batch(prompts, completions, **kwargs))
        return self._outputs(self.composed.combine(raw), kwargs)


class RewardFuncs(list):
    """The list of :class:`RewardFunc` to pass as ``reward_funcs``, with the recipe's weights.

    :attr weights: one weight per function, for ``GRPOConfig(reward_weights=...)``
        / ``RLOOConfig(reward_weights=...)``.
    """

    def __init__(self, funcs, weights):
        super().__init__(funcs)
        self.weights = list(weights)


def _specs_and_registry(rewards, registry):
    """Resolve ``rewards`` (a recipe path or a list of specs) to (specs, registry, reference field)."""
    if isinstance(rewards, (str, Path)):
        from rewardkit.recipe.validate import load_recipe

        loaded = load_recipe(rewards, registry=registry)
        return list(loaded.recipe.rewards), loaded.registry, loaded.recipe.data.reference_field
    specs = [s if isinstance(s, RewardSpec) else RewardSpec.model_validate(s) for s in rewards]
    if registry is None:
        from rewardkit.plugins import load_registry

        registry = load_registry()
    return specs, registry, None


def reward_funcs(
    rewards: Sequence[RewardSpec | dict] | str | Path,
    *,
    registry=None,
    device: str = "cpu",
    reference_column: str | None = None,
    combine: bool = False,
    name: str = "rewardkit",
) -> RewardFuncs:
    """Wrap rewardkit rewards as TRL reward functions.

    :param rewards: a recipe's ``rewards:`` list (``RewardSpec`` or plain
        dicts), or the path of a recipe (its ``plugins:`` are loaded and its
        ``data.reference_field`` names the reference column).
    :param registry: where reward names are looked up (default: installed
        plugins, plus the recipe's own plugins when a path is given).
    :param device: where the rewards load their models.
    :param reference_column: the dataset column holding references
        (default: the recipe's ``data.reference_field``, else ``reference``
        or ``summary``, whichever the dataset has).
    :param combine: return one callable with the weighted total instead of
        one per component.
    :param name: the combined callable's ``__name__``.
    :returns: a :class:`RewardFuncs` list; pass ``.weights`` as TRL's ``reward_weights``.
    :raises rewardkit.errors.RecipeError: an unknown reward or invalid params.
    """
    from rewardkit.compose import Component, ComposedReward

    specs, registry, recipe_column = _specs_and_registry(rewards, registry)
    column = reference_column or recipe_column
    # Creating all specs together reports every bad entry at once, each with its index.
    composed = ComposedReward.from_specs(specs, registry, device=device)
    def wrap(rewards: ComposedReward, func_name: str, **kw) -> RewardFunc:
        # a reward with an async score makes the function async, so TRL awaits it beside the others
        cls = AsyncRewardFunc if any(c.reward.is_async() for c in rewards.components) else RewardFunc
        return cls(rewards, func_name, reference_column=column, **kw)

    if combine:
        return RewardFuncs([wrap(composed, name, log_components=True)], [1.0])
    funcs = []
    for comp in composed.components:
        # The weight goes to TRL (reward_weights); normalize/clip stay with the component.
        unweighted = comp.spec.model_copy(update={"weight": 1.0})
        funcs.append(wrap(ComposedReward([Component(unweighted, comp.reward, comp.plugin)]), comp.name))
    return RewardFuncs(funcs, [spec.weight for spec in specs])
