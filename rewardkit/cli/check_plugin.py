"""`rewardkit check-plugin` (not yet implemented)."""

import click


@click.command("check-plugin")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit check-plugin is not implemented yet")
