"""Training algorithms beside PPO (:mod:`rewardkit.ppo`): GRPO and RLOO, and the update machinery all share.

- :mod:`rewardkit.algorithms.update`: :class:`~rewardkit.algorithms.update.Updater`,
  the shared half of every trainer (reference/old logprobs, micro-batched
  backward, finite checks, optimizer and scheduler steps);
- :mod:`rewardkit.algorithms.group`: the GRPO/RLOO formulas, pure functions;
- :mod:`rewardkit.algorithms.grpo`: :class:`~rewardkit.algorithms.grpo.GroupTrainer`.

The algorithms own their config types (:class:`~rewardkit.algorithms.grpo.GroupConfig`,
:class:`~rewardkit.ppo.trainer.PPOConfig`); they do not import the recipe schema.
"""
