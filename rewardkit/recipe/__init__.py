"""Recipes: the YAML files that describe a run, and how they are read and checked.

:func:`load_recipe` is the entry point: it reads a recipe safely, applies
``--set`` overrides, validates it (reward params included) and reports every
problem at once as a :class:`rewardkit.errors.RecipeError`.
"""

from rewardkit.recipe.loader import KeyPath, format_path, read_yaml
from rewardkit.recipe.schema import Recipe
from rewardkit.recipe.validate import LoadedRecipe, apply_overrides, format_errors, load_recipe, parse_assignment

__all__ = ["KeyPath", "LoadedRecipe", "Recipe", "apply_overrides", "format_errors", "format_path",
           "load_recipe", "parse_assignment", "read_yaml"]
