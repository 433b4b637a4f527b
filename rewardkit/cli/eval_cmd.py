"""`rewardkit eval` (not yet implemented)."""

import click


@click.command("eval")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit eval is not implemented yet")
