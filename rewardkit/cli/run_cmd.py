"""``rewardkit run RECIPE [--set key.path=value ...] [--resume RUN_DIR]``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("run")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a recipe value, e.g. --set ppo.max_ppo_steps=5 (repeatable).")
@click.option("--resume", "resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in RUN_DIR from its newest checkpoint (uses RUN_DIR/recipe.yaml).")
@click.option("--output-dir", "output_dir", type=click.Path(file_okay=False), default=None,
              help="Write the run here instead of the recipe's output.dir.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def command(recipe, overrides, resume, output_dir, no_progress):
    """Fine-tune the recipe's policy with PPO against its composed reward.

    \b
    Examples:
      rewardkit run recipes/quickstart.yaml
      rewardkit run recipes/detox.yaml --set ppo.max_ppo_steps=20
      rewardkit run --resume runs/quickstart-20261126-101500
      accelerate launch -m rewardkit run recipes/detox.yaml
    """
    from rewardkit.errors import RewardkitError
    from rewardkit.recipe import load_recipe

    if resume:
        run_dir = Path(resume)
        if not (run_dir / "recipe.yaml").is_file():
            raise RewardkitError(f"--resume: {run_dir} is not a run directory (no recipe.yaml)")
        if overrides:
            raise click.UsageError("--set cannot be combined with --resume: a resumed run keeps its recipe")
        loaded = load_recipe(run_dir / "recipe.yaml", base_dir=_source_dir(run_dir))
    elif recipe is None:
        raise click.UsageError("give a RECIPE, or --resume RUN_DIR")
    else:
        loaded = load_recipe(recipe, overrides)
        run_dir = Path(output_dir) if output_dir else None

    from rewardkit.runner import Runner

    runner = Runner(loaded, run_dir=run_dir, resume=bool(resume), progress=not no_progress)
    out = runner.run()
    if runner.acc.is_main_process:
        click.echo(f"done: {out}  (adapter: {out / 'final' / 'adapter'}; metrics: {out / 'metrics.jsonl'})")
        click.echo(f"next: rewardkit eval {out}")


def _source_dir(run_dir: Path) -> Path | None:
    """The directory of the original recipe, so relative paths resolve as they did."""
    import json

    env = run_dir / "env.json"
    if env.is_file():
        base = json.loads(env.read_text()).get("recipe_dir")
        if base:
            return Path(base)
    return None
