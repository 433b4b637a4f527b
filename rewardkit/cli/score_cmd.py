"""`rewardkit score` (not yet implemented)."""

import click


@click.command("score")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit score is not implemented yet")
