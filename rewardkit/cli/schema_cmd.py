"""``rewardkit schema``: the recipe's JSON Schema, for editors and linters."""

from __future__ import annotations

import json

import click


@click.command("schema")
def command():
    """Print the JSON Schema of a recipe.

    Point an editor's YAML support at it for completion and checking, e.g.
    `rewardkit schema > recipe.schema.json` and, at the top of a recipe,
    `# yaml-language-server: $schema=recipe.schema.json`. Reward `params:`
    are checked by `rewardkit validate`, since they depend on the plugins
    installed.
    """
    from rewardkit.recipe.schema import Recipe

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Recipe.model_json_schema()}
    click.echo(json.dumps(schema, indent=2, ensure_ascii=False))
