"""`rewardkit run` (not yet implemented)."""

import click


@click.command("run")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit run is not implemented yet")
