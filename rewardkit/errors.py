"""Exceptions that carry a message meant for the user.

Everything raised on bad input (a recipe, a plugin, a model id) is a
:class:`RewardkitError`; the CLI prints its message without a traceback and
exits with :attr:`RewardkitError.exit_code`.
"""

from __future__ import annotations


class RewardkitError(Exception):
    """Base class for errors whose message is shown to the user as is."""

    exit_code = 1


class RecipeError(RewardkitError):
    """A recipe is missing, unreadable or invalid.

    :param errors: every problem found, each as ``(location, message)``;
        ``location`` is ``file:line: key.path`` where the line is known.
    """

    exit_code = 2

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = list(errors)
        super().__init__("\n".join(f"{loc}: {msg}" if loc else msg for loc, msg in self.errors))


class PluginError(RewardkitError):
    """A plugin failed to load, or two plugins claim the same reward name."""

    exit_code = 2


class RewardError(RewardkitError):
    """A reward raised, or returned the wrong number of scores or a non-finite one.

    :param reward: the reward's name.
    :param plugin: the plugin (distribution or module) that registered it.
    :param index: the index of the offending sample in the batch, when known.
    """

    def __init__(self, reward: str, message: str, *, plugin: str | None = None, index: int | None = None):
        self.reward, self.plugin, self.index = reward, plugin, index
        #: the message without the "reward 'x' (plugin p)" prefix, for re-raising with more context
        self.detail = message
        where = f"reward '{reward}'" + (f" (plugin {plugin})" if plugin else "")
        if index is not None:
            where += f", sample {index}"
        super().__init__(f"{where}: {message}")


class ModelNotFoundError(RewardkitError):
    """A model or dataset id could neither be found locally nor downloaded."""

    exit_code = 2


class NonFiniteError(RewardkitError):
    """A training quantity (KL, advantages, loss, gradient norm, ...) is NaN or infinite.

    Raised before the optimizer steps on it. The runner adds the step and
    says which checkpoint is kept.

    :param quantity: what was not finite, in words (``"gradient norm"``).
    :param detail: where and how (mini-batch, how many values, the first one).
    :param weights_changed: True when earlier mini-batches of the same step
        already updated the weights, so the state before the step is gone.
    """

    def __init__(self, quantity: str, detail: str = "", *, weights_changed: bool = False):
        self.quantity, self.detail, self.weights_changed = quantity, detail, weights_changed
        super().__init__(f"{quantity} is not finite{': ' + detail if detail else ''}")
