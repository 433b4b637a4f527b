"""`rewardkit plugins` (not yet implemented)."""

import click


@click.command("plugins")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit plugins is not implemented yet")
