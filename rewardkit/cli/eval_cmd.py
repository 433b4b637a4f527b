"""``rewardkit eval RUN_DIR`` / ``rewardkit eval --recipe RECIPE --adapter PATH``: before vs after."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path),
              help="Evaluate an adapter against this recipe instead of a run directory (needs --adapter).")
@click.option("--adapter", type=click.Path(file_okay=False, path_type=Path),
              help="The LoRA adapter directory to evaluate (with --recipe).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a recipe value, e.g. --set eval.judge_text=prompt+completion (repeatable).")
@click.option("--num-samples", "-n", type=click.IntRange(min=1), help="Held-out prompts to sample [recipe eval.num_samples].")
@click.option("--judge", "judges", multiple=True, metavar="SPEC",
              help="Independent judge (repeatable): a classifier id/path/asset:NAME, 'profanity-check', or a "
                   "reward name [recipe eval.judge, else facebook/roberta-hate-speech-dynabench-r4-target].")
@click.option("--judge-label", help="Label whose probability a classifier judge reports [recipe eval.judge_label].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Prompts sampled at once [recipe eval.batch_size].")
@click.option("--seed", type=int, help="Sampling seed, the same for both sides [recipe eval.seed].")
@click.option("--device", help="cpu, cuda, cuda:1, ... [a GPU when there is one].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the report here [RUN_DIR; with --recipe: ADAPTER/../eval].")
@click.option("--json", "as_json", is_flag=True, help="Print the eval.json summary (without per-sample records).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def command(run_dir, recipe, adapter, overrides, num_samples, judges, judge_label, batch_size, seed, device, out_dir,
            as_json, no_progress):
    """Compare the base and the tuned policy on held-out prompts.

    Samples both (adapter off / on) with the same prompts and seeds, scores
    them with every reward of the recipe and with an independent judge, checks
    ROUGE-L and length, and writes report.md, report.html, eval.json and PNG
    plots.

    \b
    Examples:
      rewardkit eval runs/quickstart-20261126-101500
      rewardkit eval runs/detox-... --judge profanity-check --num-samples 200
      rewardkit eval --recipe recipes/detox.yaml --adapter my-adapter/ --out eval-out/
    """
    from rewardkit.evaluate import EvalOptions, evaluate, load_run, summary_of, write_report
    from rewardkit.rundir import read_jsonl

    loaded, adapter_path, metrics, default_out = _target(run_dir, recipe, adapter, overrides, load_run, read_jsonl)
    # warnings (a judge skipped for a missing package) go to stderr as they happen: --json keeps stdout clean
    options = EvalOptions(num_samples=num_samples, batch_size=batch_size, seed=seed, judges=list(judges),
                          judge_label=judge_label, device=device, progress=not no_progress,
                          warn=lambda message: click.echo(f"warning: {message}", err=True))
    result = evaluate(loaded, adapter_path, options, run_dir=run_dir)
    out = out_dir or default_out
    files = write_report(result, out, metrics=metrics)
    if as_json:
        click.echo(json.dumps(summary_of(result), indent=2, ensure_ascii=False))
        return
    click.echo(render_summary(result))
    click.echo(f"\nwrote {', '.join(str(f) for f in files)}")


def _target(run_dir, recipe, adapter, overrides, load_run, read_jsonl):
    """``(loaded recipe, adapter, metrics records, default output dir)`` from the arguments."""
    from rewardkit.recipe import load_recipe

    if run_dir is not None:
        if recipe is not None or adapter is not None:
            raise click.UsageError("give RUN_DIR, or --recipe and --adapter, not both")
        loaded, adapter_path = load_run(run_dir, overrides)
        return loaded, adapter_path, read_jsonl(run_dir / "metrics.jsonl"), run_dir
    if recipe is None or adapter is None:
        raise click.UsageError("give a RUN_DIR, or both --recipe RECIPE and --adapter PATH")
    if not (adapter / "adapter_config.json").is_file():
        raise click.BadParameter(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)",
                                 param_hint="'--adapter'")
    return load_recipe(recipe, overrides), adapter, [], adapter.resolve().parent / "eval"


def render_summary(result: dict) -> str:
    """The terminal summary: headline, every measure before -> after, skipped judges, and warnings."""
    from rewardkit.evaluate.report import ci, fmt, pct

    def line(label: str, c: dict) -> str:
        return (f"  {label:<30} {fmt(c['before']['mean']):>10} -> {fmt(c['after']['mean']):<10} "
                f"{pct(c['relative_change']):>8}   CI {ci(c['ci'])}")

    cfg = result["config"]
    lines = [f"evaluated {cfg['num_samples']} held-out prompts, before (the starting policy) vs after (the trained adapter), "
             f"seed {cfg['seed']}", "judges:"]
    for j in result["judges"].values():
        better = "higher" if j["higher_is_better"] else "lower"
        lines.append(line(f"{j['title']} ({better} better)", j))
        if not j["independent"]:
            lines[-1] += "  (not independent of the reward)"
    skipped = result.get("skipped_judges", [])
    for j in skipped:
        lines.append(f"  {j['title']:<30} skipped: needs {j['package']} ({j['install']})")
    if not result["judges"]:
        lines.append("  no judge ran" + (" (every one was skipped)" if skipped else "")
                     + ": no independent judge checked this evaluation, only the reward model and quality below")
    lines.append("reward model (higher is better):")
    lines += [line(name, c) for name, c in result["rewards"].items()]
    lines.append("quality:")
    lines += [line(name, c) for name, c in result["quality"].items()]
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
