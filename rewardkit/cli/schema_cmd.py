"""`rewardkit schema` (not yet implemented)."""

import click


@click.command("schema")
def command():
    """Not yet implemented."""
    raise click.ClickException("rewardkit schema is not implemented yet")
