"""``rewardkit new-plugin NAME``: scaffold a reward plugin package.

Writes ``rewardkit-NAME/`` with a pyproject declaring the ``rewardkit`` entry
point, a working example reward in ``rewardkit_NAME/__init__.py``, a README
and tests that use :mod:`rewardkit.testing`. The templates live in
``rewardkit/templates/plugin`` (``.tmpl`` files, :class:`string.Template`
placeholders such as ``${reward}``); a directory called ``module`` there
becomes the package's module directory.
"""

from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path

import click

# Lower-case words joined by single '-' or '_': the name becomes a reward
# name (recipes), a module name (Python) and a distribution name (pip).
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def plugin_names(name: str) -> dict[str, str]:
    """The names derived from NAME: reward, module, distribution and class.

    ``"word-count"`` -> reward ``word_count``, module ``rewardkit_word_count``,
    distribution ``rewardkit-word-count``, class ``WordCount``.

    :raises click.BadParameter: NAME is not lower-case letters, digits and single ``-``/``_``.
    """
    if not _NAME.match(name):
        raise click.BadParameter(
            f"{name!r} is not a valid plugin name: use lower-case letters and digits, starting with a "
            f"letter, words joined by '-' or '_' (e.g. 'brevity' or 'word-count')", param_hint="NAME")
    reward = name.replace("-", "_")
    return {
        "reward": reward,
        "module": f"rewardkit_{reward}",
        "dist": f"rewardkit-{reward.replace('_', '-')}",
        "cls": "".join(part.capitalize() for part in reward.split("_")),
    }


def _templates():
    return resources.files("rewardkit") / "templates" / "plugin"


def _walk(node, rel: tuple[str, ...] = ()):
    """Yield ``(relative path parts, traversable)`` for every template file."""
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name != "__pycache__":
                yield from _walk(child, rel + (child.name,))
        elif child.name.endswith(".tmpl"):
            yield rel + (child.name[: -len(".tmpl")],), child


def render_plugin(names: dict[str, str], target: Path) -> list[Path]:
    """Write the rendered templates under ``target`` (which must not exist yet).

    :returns: the files written, in order.
    """
    written = []
    target.mkdir(parents=True)
    for parts, template in _walk(_templates()):
        parts = tuple(names["module"] if p == "module" else p for p in parts)
        path = target.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        # substitute (not safe_substitute): a placeholder without a value is a bug in the template.
        path.write_text(string.Template(template.read_text(encoding="utf-8")).substitute(names), encoding="utf-8")
        written.append(path)
    return written


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory in which to create rewardkit-NAME/.")
def command(name, parent):
    """Create rewardkit-NAME/, a reward plugin package ready to pip install.

    It holds a pyproject with the 'rewardkit' entry point, an example reward
    in rewardkit_NAME/__init__.py, a README, and tests that use
    rewardkit.testing. NAME is the reward's name in recipes.
    """
    from rewardkit.plugins import load_registry

    names = plugin_names(name)
    target = Path(parent) / names["dist"]
    if target.exists():
        raise click.ClickException(f"{target} already exists; choose another NAME or --dir (nothing was written)")
    taken = load_registry().rewards.get(names["reward"])
    if taken is not None:
        raise click.ClickException(
            f"a reward named '{names['reward']}' is already registered by plugin '{taken.plugin}'; two plugins "
            f"may not register the same name, so choose another NAME (nothing was written)")

    written = render_plugin(names, target)
    click.echo(f"Created {target}/ for the reward '{names['reward']}':")
    for path in written:
        click.echo(f"  {path}")
    click.echo(
        "Next:\n"
        f"  cd {target}\n"
        "  pip install -e .\n"
        "  python -m pytest\n"
        f"  rewardkit check-plugin {names['reward']}")
