"""``rewardkit score NAME TEXT...``: score texts with one reward, in isolation.

The quickest way to see what a reward does before putting it in a recipe,
and to check a plugin by hand: the same params a recipe would give, the
same checks on what the reward returns, no policy and no PPO.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

#: Longest text shown in the table; the rest is cut with an ellipsis (JSON keeps it whole).
_SHOWN_CHARS = 72


@click.command("score")
@click.argument("name")
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A reward parameter (repeatable), e.g. --param output=probability. VALUE is read as YAML.")
@click.option("--prompt", default="", help="The prompt each TEXT answers (some rewards score prompt + text).")
@click.option("--reference", "references", multiple=True, metavar="TEXT",
              help="The reference for each TEXT, in order (repeat once per TEXT), for rewards that need one.")
@click.option("--samples", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE.jsonl",
              help='Score the samples of a JSONL file: one object per line with "completion" and optional '
                   '"prompt" and "reference"; other fields are passed as metadata.')
@click.option("--device", default="cpu", show_default=True, help="Where the reward loads its model, e.g. cuda:0.")
@click.option("--plugin", "modules", multiple=True, metavar="MODULE",
              help="Also load this module or .py file as a plugin (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def command(name, texts, params, prompt, references, samples, device, modules, as_json):
    """Score each TEXT (or each sample of --samples) with the reward NAME.

    \b
    Examples:
      rewardkit score length "a short answer" --param target_words=3
      rewardkit score rouge "the cat sat" --reference "a cat sat down" --param metric=rougeL
      rewardkit score toxicity --samples samples.jsonl --param model=asset:tiny-hate-roberta --json
    """
    from rewardkit.plugins import load_registry

    batch = _batch(texts, prompt, references, samples)
    registry = load_registry(modules, base_dir=Path.cwd())
    info = registry.get(name)  # PluginError with did-you-mean for an unknown name
    params_obj = _validated_params(name, info.cls, params)
    if info.cls.needs_references and batch.references is None:
        raise click.UsageError(
            f"reward '{name}' compares each text with a reference: give --reference once per TEXT, "
            f'or --samples FILE.jsonl with a "reference" field on every line')
    scores = _score(info, params_obj, batch, device)

    if as_json:
        click.echo(json.dumps({
            "reward": name, "plugin": info.plugin, "params": params_obj.model_dump(mode="json"),
            "scores": [{"score": s, "completion": c, "prompt": p,
                        "reference": None if batch.references is None else batch.references[i]}
                       for i, (s, c, p) in enumerate(zip(scores, batch.completions, batch.prompts))],
        }, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'SCORE':>10}  TEXT")
    for score, text in zip(scores, batch.completions):
        shown = f"{'None':>10}" if score is None else f"{score:>10.4f}"  # None: the reward cannot score it
        click.echo(f"{shown}  {_one_line(text)}")


def _batch(texts, prompt: str, references, samples: Path | None):
    """The batch to score, from the TEXT arguments or the --samples file."""
    from rewardkit.reward import Batch

    if texts and samples is not None:
        raise click.UsageError("give TEXT arguments or --samples, not both")
    if samples is not None:
        if references:
            raise click.UsageError('--reference is for TEXT arguments; put a "reference" field in the --samples file')
        return _read_samples(samples, prompt)
    if not texts:
        raise click.UsageError("nothing to score: give one or more TEXT arguments or --samples FILE.jsonl")
    if references and len(references) != len(texts):
        raise click.UsageError(f"got {len(references)} --reference for {len(texts)} TEXT arguments; "
                               f"give one --reference per TEXT, in the same order")
    return Batch.from_lists(texts, prompts=[prompt] * len(texts), references=list(references) or None)


def _read_samples(path: Path, default_prompt: str):
    """Read a JSONL file of samples; every problem is reported with its line."""
    from rewardkit.reward import Batch

    completions, prompts, references, metadata = [], [], [], []
    errors = []
    missing_reference = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: not valid JSON: {exc.msg}")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}: expected a JSON object with a \"completion\" field")
            continue
        bad = [k for k in ("completion", "prompt", "reference") if k in row and not isinstance(row[k], str)]
        if "completion" not in row:
            errors.append(f"{where}: missing \"completion\"")
        elif bad:
            errors.append(f"{where}: " + ", ".join(f'"{k}" must be a string' for k in bad))
        else:
            completions.append(row.pop("completion"))
            prompts.append(row.pop("prompt", default_prompt))
            references.append(row.pop("reference", None))
            if references[-1] is None and missing_reference is None:
                missing_reference = where
            metadata.append(row)
    if errors:
        raise click.BadParameter(_lines(errors), param_hint="'--samples'")
    if not completions:
        raise click.BadParameter(f"{path}: no samples in the file", param_hint="'--samples'")
    if missing_reference is not None and any(r is not None for r in references):
        raise click.BadParameter(f"{missing_reference}: no \"reference\", but other lines have one; "
                                 f"give every line a reference or none", param_hint="'--samples'")
    return Batch.from_lists(completions, prompts=prompts,
                            references=None if missing_reference else references, metadata=metadata)


def _validated_params(name: str, reward_cls, assignments) -> Any:
    """``--param`` assignments validated against the reward's own ``Params`` model."""
    import pydantic

    from rewardkit.errors import RecipeError
    from rewardkit.recipe.loader import format_path
    from rewardkit.recipe.messages import describe_validation_error
    from rewardkit.recipe.validate import apply_overrides, format_errors

    try:
        raw = apply_overrides({}, assignments, option="--param")
    except RecipeError as exc:
        raise click.BadParameter(_lines(format_errors(exc.errors).splitlines()), param_hint="'--param'") from None
    try:
        return reward_cls.Params.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = describe_validation_error(exc, reward_cls.Params, raw)
        lines = [f"reward '{name}', param '{format_path(path)}': {message}" if path else f"reward '{name}': {message}"
                 for path, message in problems]
        raise click.BadParameter(_lines(lines), param_hint="'--param'") from None


def _score(info, params, batch, device: str) -> list[float | None]:
    """Run the reward with the composition's own checks (count, finite numbers, errors named)."""
    from rewardkit.compose import Component, ComposedReward
    from rewardkit.errors import RewardError, RewardkitError
    from rewardkit.recipe.schema import RewardSpec

    try:
        reward = info.cls(params, device=device)
    except RewardkitError:
        raise
    except Exception as exc:  # a plugin bug in __init__: say whose
        raise RewardError(info.name, f"could not be created: {type(exc).__name__}: {exc}",
                          plugin=info.plugin) from exc
    composed = ComposedReward([Component(RewardSpec(name=info.name), reward, info.plugin)])
    return composed(batch).components[info.name]


def _lines(messages: list[str]) -> str:
    """One message as is; several each on an indented line of their own."""
    return messages[0] if len(messages) == 1 else "".join(f"\n  {m}" for m in messages)


def _one_line(text: str) -> str:
    """``text`` on one line, cut to :data:`_SHOWN_CHARS` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHOWN_CHARS else flat[:_SHOWN_CHARS - 1] + "…"
