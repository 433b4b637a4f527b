"""`rewardkit validate` (not yet implemented)."""

import click


@click.command("validate")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit validate is not implemented yet")
