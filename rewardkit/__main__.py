"""``python -m rewardkit`` (and ``accelerate launch -m rewardkit``) runs the CLI."""

from rewardkit.cli import main

main()
