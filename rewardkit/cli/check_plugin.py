"""``rewardkit check-plugin NAME``: run the reward contract checks and print each.

Exit status 0 when every check passes, 1 when any fails, 2 for a user error
(unknown reward, invalid ``--param``, a ``--plugin`` that does not import).
"""

from __future__ import annotations

import sys

import click


def parse_param(text: str) -> tuple[str, object]:
    """``key=value`` -> ``(key, value)``, the value read as YAML (``3`` is an int, ``[a, b]`` a list).

    :raises click.BadParameter: no ``=``, or an empty key.
    """
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"expected key=value, got {text!r}", param_hint="--param")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the literal string
    return key.strip(), value


def _validation_message(exc) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(params)'}: {err['msg']}" for err in exc.errors())


@click.command("check-plugin")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A param of the reward, as in a recipe's params: (repeatable).")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="Also load this module path or .py file as a plugin (repeatable).")
@click.option("--device", default="cpu", show_default=True, help="Where the reward loads its models.")
@click.option("--references/--no-references", default=None,
              help="Give the test batches references (default: when the reward needs them).")
def command(name, params, plugins, device, references):
    """Check that reward NAME keeps the reward contract.

    Runs each check of rewardkit.testing.check_reward (one finite float per
    sample, deterministic, invariant to batch order and size, robust to empty,
    long and non-ASCII text, params validated), prints PASS or FAIL with the
    reason, and exits 1 if any check fails.

    \b
    Example:
      rewardkit check-plugin toxicity --param model=asset:tiny-hate-roberta
      rewardkit check-plugin shouting --plugin ./shouting.py
    """
    import pydantic

    from rewardkit.plugins import load_registry
    from rewardkit.testing import check_reward

    registry = load_registry(plugins, base_dir=".")
    info = registry.get(name)  # PluginError (exit 2) with did-you-mean when unknown
    values = dict(parse_param(p) for p in params)
    try:
        info.cls.Params.model_validate(values)
    except pydantic.ValidationError as exc:
        raise click.BadParameter(f"reward '{name}': {_validation_message(exc)}", param_hint="--param") from None

    version = f" {info.version}" if info.version else ""
    click.echo(f"Checking reward '{name}' from plugin {info.plugin}{version} "
               f"({info.cls.__module__}.{info.cls.__name__})")
    results = check_reward(info.cls, values, references=references, device=device)
    width = max(len(r.name) for r in results)
    colors = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for r in results:
        status = click.style(f"{r.status:4}", fg=colors[r.status], bold=r.status == "FAIL")
        click.echo(f"  {status}  {r.name:{width}}  {r.detail}")
    counts = {status: sum(r.status == status for r in results) for status in ("PASS", "FAIL", "SKIP")}
    summary = f"{len(results)} checks: {counts['PASS']} passed"
    summary += f", {counts['FAIL']} failed" if counts["FAIL"] else ""
    summary += f", {counts['SKIP']} skipped" if counts["SKIP"] else ""
    click.echo(summary)
    if counts["FAIL"] or counts["SKIP"]:
        sys.exit(1)
