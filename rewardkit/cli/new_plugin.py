"""``rewardkit new-plugin NAME``: scaffold a reward plugin package.

Writes ``rewardkit-NAME/`` with a pyproject declaring the ``rewardkit`` entry
point, a working example reward in ``rewardkit_NAME/__init__.py``, a README
and tests that use :mod:`rewardkit.testing`. The templates live in
``rewardkit/templates/plugin`` (``.tmpl`` files, :class:`string.Template`
placeholders such as ``${reward}``); a directory called ``module`` there
becomes the package's module directory.

The package is written into a hidden temporary directory beside its target
and renamed into place only once every file is written, so a directory that
cannot be written (below a file, read-only, a full disk) gets a message and
leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import string
import tempfile
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


#: Template values for the example reward's ``score``: a plain method, or ``async def`` (``--async``).
_SYNC = {"imports": "", "attrs": "", "score_def": "def score", "await_line": ""}
_ASYNC = {
    "imports": "\nimport asyncio\n",
    "attrs": ("    # Declared limits the host honours: samples per score() call, and calls in flight at once.\n"
              "    max_batch_size = 32\n"
              "    max_concurrency = 4\n"),
    "score_def": "async def score",
    "await_line": ("        # Await your API client here (e.g. an aiohttp request); while it waits, the\n"
                   "        # other rewards of the step and this reward's other chunks run.\n"
                   "        await asyncio.sleep(0)\n"),
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
    """Write the rendered templates under ``target`` (which must not exist yet), all or nothing.

    Missing parent directories are created. The files are written into a
    temporary directory next to ``target`` that is renamed to ``target`` at
    the end; on any failure the temporary directory and the parents created
    for it are removed.

    :returns: the files written (their final paths), in order.
    :raises click.ClickException: the directory cannot be written, saying why
        and that nothing was written.
    """
    target = Path(target)
    names = {**_SYNC, **names}  # a plain score unless the caller asked for the async values
    problem = _unwritable(target.parent)
    if problem:
        raise click.ClickException(f"cannot create {target}: {problem} (nothing was written)")
    created = _make_parents(target.parent)
    staging, done = None, False
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        written = []
        for parts, template in _walk(_templates()):
            parts = tuple(names["module"] if p == "module" else p for p in parts)
            path = staging.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            # substitute (not safe_substitute): a placeholder without a value is a bug in the template.
            path.write_text(string.Template(template.read_text(encoding="utf-8")).substitute(names),
                            encoding="utf-8")
            written.append(target.joinpath(*parts))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the package should not be
        os.rename(staging, target)
        done = True
        return written
    except OSError as exc:
        reason = "it appeared while writing" if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) else \
            (exc.strerror or str(exc)).lower()
        raise click.ClickException(f"cannot create {target}: {reason} (nothing was written)") from None
    finally:
        if not done:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for parent in reversed(created):
                try:
                    parent.rmdir()
                except OSError:
                    break


def _unwritable(directory: Path) -> str:
    """Why ``directory`` (existing or not) cannot receive a new package, or "" when it can."""
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            return f"{directory} cannot be created"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable (permission denied)"
    return ""


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; returns those created, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    missing.reverse()
    for path in missing:
        try:
            path.mkdir()
        except OSError as exc:
            for made in reversed(missing[:missing.index(path)]):
                made.rmdir()
            raise click.ClickException(f"cannot create {path}: {(exc.strerror or str(exc)).lower()} "
                                       f"(nothing was written)") from None
    return missing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory in which to create rewardkit-NAME/.")
@click.option("--async", "is_async", is_flag=True,
              help="Write the example reward with an async def score (for API judges and remote models), "
                   "with declared max_batch_size and max_concurrency.")
def command(name, parent, is_async):
    """Create rewardkit-NAME/, a reward plugin package ready to pip install.

    It holds a pyproject with the 'rewardkit' entry point, an example reward
    in rewardkit_NAME/__init__.py, a README, and tests that use
    rewardkit.testing. NAME is the reward's name in recipes.
    """
    from rewardkit.plugins import load_registry

    names = {**plugin_names(name), **(_ASYNC if is_async else _SYNC)}
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
