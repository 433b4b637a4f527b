"""``rewardkit probe NAME`` / ``--recipe FILE``: score degenerate completions beside real references.

The reward-hacking probes, on one reward or on a recipe's whole composed reward.

Exit status 0 (or 1 with ``--strict`` when the reward prefers any probe to
the references), 2 for a user error (unknown reward, invalid ``--param``,
invalid recipe).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rewardkit.cli.check_plugin import _validation_message, parse_param


@click.command("probe")
@click.argument("name", required=False)
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="Probe this recipe's composed reward (all of rewards:, weighted, clipped and normalised "
                   "as in training) instead of one reward NAME.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a value of the --recipe (repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A param of the reward, as in a recipe's params: (repeatable).")
@click.option("--samples", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE.jsonl",
              help='Real samples: one JSON object per line with "prompt" (or "dialogue"), "reference" '
                   '(or "summary") and optional "completion". Default: 16 shipped dialogues.')
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N samples.")
@click.option("--generated", type=click.IntRange(min=0), default=100, show_default=True,
              help="Hypothesis-generated texts to search for a high score (0: none).")
@click.option("--strict", is_flag=True, help="Exit 1 when any degenerate probe scores above the references.")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="Also load this module path or .py file as a plugin (repeatable).")
@click.option("--device", default="cpu", show_default=True, help="Where the reward loads its models.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(name, recipe, overrides, params, samples, limit, generated, strict, plugins, device, as_json):
    """Show which degenerate completions reward NAME prefers over real references.

    Scores the empty string, spaces, punctuation, a copy of the prompt, one
    word repeated, truncations, all capitals and the reference repeated 2-8
    times beside the references themselves, on the same prompts, and lists
    each probe with its mean score, its margin over the references' mean and
    on how many samples it wins. A policy trained on this reward can find
    every PREFERRED line.

    With --recipe, the score is the recipe's whole composed reward, the
    total a run optimises: does the composition close the holes its terms
    have alone?

    \b
    Examples:
      rewardkit probe toxicity --param model=asset:tiny-hate-roberta --strict
      rewardkit probe --recipe recipes/hacking-demo-composed.yaml
    """
    import pydantic

    from rewardkit.plugins import load_registry
    from rewardkit.testing.probe import default_samples, load_samples, probe_recipe, probe_reward

    if (name is None) == (recipe is None):
        raise click.UsageError("give a reward NAME or --recipe FILE (one of them)")
    if recipe is not None and (params or plugins):
        raise click.UsageError("--param and --plugin apply to a reward NAME; with --recipe, the recipe's "
                               "rewards: and plugins: say them (override with --set)")
    if overrides and recipe is None:
        raise click.UsageError("--set applies to a --recipe")
    try:
        rows = load_samples(samples) if samples is not None else default_samples()
    except (ValueError, OSError) as exc:
        raise click.BadParameter(str(exc), param_hint="--samples") from None
    rows = rows[:limit] if limit else rows
    if recipe is not None:  # an invalid recipe raises RecipeError: the group prints every problem, exit 2
        report = probe_recipe(recipe, overrides, samples=rows, generated=generated, device=device)
    else:
        registry = load_registry(plugins, base_dir=".")
        info = registry.get(name)
        values = dict(parse_param(p) for p in params)
        try:
            info.cls.Params.model_validate(values)
        except pydantic.ValidationError as exc:
            raise click.BadParameter(f"reward '{name}': {_validation_message(exc)}",
                                     param_hint="--param") from None
        report = probe_reward(info.cls, values, samples=rows, generated=generated, device=device)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.format())
    if strict and report.preferred:
        sys.exit(1)
