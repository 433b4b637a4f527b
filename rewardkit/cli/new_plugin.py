"""`rewardkit new-plugin` (not yet implemented)."""

import click


@click.command("new-plugin")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit new-plugin is not implemented yet")
