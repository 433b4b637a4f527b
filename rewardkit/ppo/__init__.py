"""PPO for seq2seq policies.

- :mod:`rewardkit.ppo.core`: the PPO math (masked statistics, logprobs,
  KL-shaped rewards, GAE, clipped losses) as small pure tensor functions.
- :mod:`rewardkit.ppo.kl`: fixed and adaptive KL coefficient controllers.

Nothing is imported here, so importing the package does not pull in torch.
"""
