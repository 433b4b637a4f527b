"""rewardkit: PPO fine-tuning of LoRA seq2seq models against composable reward plugins.

The names a plugin author needs are importable from here::

    import rewardkit

    class Shouting(rewardkit.Reward):
        name = "shouting"
        class Params(rewardkit.Params):
            threshold: float = 0.5
        def score(self, batch: rewardkit.Batch) -> list[float]:
            ...

    @rewardkit.hookimpl
    def register_rewards(register):
        register(Shouting)
"""

from rewardkit.errors import RewardError, RewardkitError
from rewardkit.hookspecs import hookimpl
from rewardkit.reward import Batch, Params, Reward

__version__ = "0.1.0"

__all__ = ["Batch", "Params", "Reward", "RewardError", "RewardkitError", "hookimpl", "__version__"]
