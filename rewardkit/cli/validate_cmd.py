"""``rewardkit validate RECIPE``: check a recipe completely without loading any model."""

from __future__ import annotations

import sys

import click

from rewardkit.errors import RecipeError


@click.command("validate")
@click.argument("recipe", type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a recipe value (repeatable), e.g. --set ppo.learning_rate=1e-4")
def command(recipe: str, overrides: tuple[str, ...]):
    """Check RECIPE (schema, plugins, every reward's params) before any model loads.

    Prints a one-line summary and exits 0 when the recipe is valid; prints
    every problem as `location: message` and exits 2 when it is not.
    """
    from rewardkit.recipe import load_recipe
    from rewardkit.recipe.validate import check_output_dir

    try:
        loaded = load_recipe(recipe, overrides)
        check_output_dir(loaded.recipe, loaded.path)
    except RecipeError as exc:
        for location, message in exc.errors:
            click.echo(f"{location}: {message}" if location else message, err=True)
        count = len(exc.errors)
        click.secho(f"{recipe}: not valid ({count} error{'s' if count != 1 else ''})", fg="red", err=True)
        sys.exit(exc.exit_code)
    click.echo(f"{recipe}: valid — {loaded.summary()}")
