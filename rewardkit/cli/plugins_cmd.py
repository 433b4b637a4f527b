"""``rewardkit plugins``: every reward found, where it came from, and plugins that failed."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.option("--plugin", "modules", multiple=True, metavar="MODULE",
              help="Also load this module or .py file as a plugin (repeatable).")
def command(as_json: bool, modules: tuple[str, ...]):
    """List the rewards that installed plugins provide.

    Each reward is shown with the plugin (distribution) that registered it,
    its version and the first line of its docstring. Plugins that failed to
    load are listed with the cause; they do not hide the others.
    """
    from rewardkit.plugins import load_registry

    registry = load_registry(modules, base_dir=".")
    rewards = [registry.rewards[name] for name in sorted(registry.rewards)]
    if as_json:
        click.echo(json.dumps({
            "rewards": [{"name": r.name, "plugin": r.plugin, "version": r.version, "summary": r.summary,
                         "needs_references": r.cls.needs_references} for r in rewards],
            "failures": [{"plugin": f.plugin, "cause": f.cause} for f in registry.failures],
        }, indent=2, ensure_ascii=False))
        return

    if rewards:
        rows = [("NAME", "PLUGIN", "VERSION", "SUMMARY")]
        rows += [(r.name, r.plugin, r.version or "-", r.summary) for r in rewards]
        widths = [max(len(row[col]) for row in rows) for col in range(3)]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    else:
        click.echo("No rewards found.")
    if registry.failures:
        click.echo("\nPlugins that failed to load:")
        for failure in registry.failures:
            click.echo(f"  {failure.plugin}: {failure.cause}")
