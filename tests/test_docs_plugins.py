"""docs/plugins.md stays true: its tutorial runs, and its reference covers every hook and public attribute.

How the tutorial is run, block by block, in one temporary directory:

- a fenced block right after ``<!-- file: PATH -->`` is written to PATH;
- a ``python`` block (without a file marker) runs in a fresh interpreter and must exit 0;
- a ``console`` block holds ``$ command`` lines, each followed by its expected
  output (stdout and stderr together); ``rewardkit`` and ``python`` run in this
  environment. In expected output, ``...`` matches any text within a line;
- a block right after ``<!-- excerpt-of: PATH -->`` must appear in the file PATH;
- other blocks (``sh``, ``toml``, ``yaml`` without a marker) are shown, not run.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import rewardkit
import rewardkit.testing
from rewardkit import hookspecs

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
TEXT = DOC.read_text(encoding="utf-8")
TUTORIAL = TEXT[TEXT.index("## Tutorial"):TEXT.index("## Reference")]
REFERENCE = TEXT[TEXT.index("## Reference"):]

_BLOCK = re.compile(r"(?:<!-- (file|excerpt-of): (\S+) -->\n)?```(\w*)\n(.*?)```", re.S)


def tutorial_blocks():
    """``(line, marker, path, language, body)`` for every fenced block of the tutorial, in order."""
    start = TEXT.index("## Tutorial")
    for m in _BLOCK.finditer(TUTORIAL):
        line = TEXT.count("\n", 0, start + m.start()) + 1
        yield line, m.group(1), m.group(2), m.group(3), m.group(4)


def _command(line: str) -> list[str]:
    argv = shlex.split(line)
    if argv[0] == "rewardkit":
        return [sys.executable, "-m", "rewardkit", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"docs/plugins.md: the tutorial runs only rewardkit and python commands, not {line!r}")


def _matches(expected: str, actual: str) -> bool:
    exp_lines, act_lines = expected.rstrip("\n").splitlines(), actual.rstrip("\n").splitlines()
    if len(exp_lines) != len(act_lines):
        return False
    for exp, act in zip(exp_lines, act_lines):
        pattern = ".*".join(re.escape(part) for part in exp.rstrip().split("..."))
        if not re.fullmatch(pattern, act.rstrip()):
            return False
    return True


def _console(body: str) -> list[tuple[str, str]]:
    """``[(command, expected output)]`` of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"console block output before any '$ ' command: {line!r}"
            steps[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in steps]


def test_tutorial_runs(tmp_path):
    env = {**os.environ, "COLUMNS": "80", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    ran = {"file": 0, "python": 0, "console": 0, "excerpt": 0}
    for line, marker, path, lang, body in tutorial_blocks():
        where = f"docs/plugins.md:{line}"
        if marker == "file":
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
            ran["file"] += 1
        elif marker == "excerpt-of":
            assert body in (tmp_path / path).read_text(encoding="utf-8"), f"{where}: not found in {path}"
            ran["excerpt"] += 1
        elif lang == "python":
            result = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{where}: the Python block failed:\n{result.stdout}{result.stderr}"
            ran["python"] += 1
        elif lang == "console":
            for command, expected in _console(body):
                result = subprocess.run(_command(command), cwd=tmp_path, env=env,
                                        capture_output=True, text=True, timeout=300)
                actual = result.stdout + result.stderr
                assert _matches(expected, actual), (
                    f"{where}: `{command}` printed\n{actual}\ninstead of\n{expected}")
                ran["console"] += 1
    # Guard against a marker typo silently skipping blocks: the tutorial writes
    # shouting.py twice, the tests and the recipe; runs 3 Python blocks and 7 commands.
    assert ran == {"file": 4, "python": 3, "console": 7, "excerpt": 1}


def test_matches_wildcards():
    assert _matches("4 passed in ...", "4 passed in 0.31s")
    assert _matches("(at .../shouting.py:19)", "(at /tmp/x/shouting.py:19)")
    assert not _matches("(at .../shouting.py:19)", "(at /tmp/x/shouting.py:20)")
    assert not _matches("4 passed in ...", "3 passed in 0.31s")
    assert not _matches("a\nb", "a")


def _section(heading: str) -> str:
    """The reference text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = REFERENCE.index(heading + "\n")
    stop = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(REFERENCE, start + len(heading))
    return REFERENCE[start:stop.start() if stop else len(REFERENCE)]


def _hookspecs():
    return [fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "rewardkit_spec")]


def test_every_hook_is_documented_with_its_arguments():
    specs = _hookspecs()
    assert specs, "no hookspecs found: did the marker's project name change?"
    for fn in specs:
        args = ", ".join(inspect.signature(fn).parameters)
        heading = f"#### `{fn.__name__}({args})`"
        assert heading + "\n" in REFERENCE, f"docs/plugins.md: no reference heading {heading!r}"
        body = _section(heading)
        for arg in inspect.signature(fn).parameters:
            assert f"`{arg}`" in body, f"docs/plugins.md: hook {fn.__name__}: argument `{arg}` is not described"


def _public(cls) -> set[str]:
    names = {n for n in vars(cls) if not n.startswith("_")}
    for base in cls.__mro__[1:]:
        if base is object:
            break
        names |= {n for n in vars(base) if not n.startswith("_")}
    return names


def test_reward_attributes_are_documented():
    section = _section("### `rewardkit.Reward`")
    # Instance attributes set by Reward.__init__, plus the class's public names.
    reward = rewardkit.Reward()
    names = _public(rewardkit.Reward) | {n for n in vars(reward) if not n.startswith("_")} | {"__init__"}
    assert names >= {"name", "needs_references", "Params", "params", "device", "score"}
    missing = sorted(n for n in names if f"`{n}" not in section)
    assert not missing, f"docs/plugins.md: rewardkit.Reward attributes not in the reference: {missing}"


def test_batch_attributes_are_documented():
    section = _section("### `rewardkit.Batch`")
    names = {f.name for f in fields(rewardkit.Batch)} | _public(rewardkit.Batch) | {"__len__"}
    assert names >= {"prompts", "completions", "references", "metadata", "from_lists", "select"}
    missing = sorted(n for n in names if f"`{n}" not in section)
    assert not missing, f"docs/plugins.md: rewardkit.Batch attributes not in the reference: {missing}"


def test_params_is_documented():
    section = _section("### `rewardkit.Params`")
    config = rewardkit.Params.model_config
    # The two settings the page promises, as the page writes them.
    assert config["extra"] == "forbid" and '`extra="forbid"`' in section
    assert config["frozen"] is True and "`frozen=True`" in section


def test_testing_kit_is_documented():
    section = _section("### `rewardkit.testing`")
    missing = [n for n in rewardkit.testing.__all__ if f"`{n}" not in section]
    from rewardkit.testing import pytest_plugin

    fixtures = [n for n, obj in vars(pytest_plugin).items() if hasattr(obj, "_fixture_function_marker")
                or type(obj).__name__ == "FixtureFunctionDefinition" or hasattr(obj, "_pytestfixturefunction")]
    assert set(fixtures) == {"reward_batch", "reward_runner", "reward_contract", "reward_registry"}
    missing += [n for n in fixtures if f"`{n}`" not in section]
    assert not missing, f"docs/plugins.md: not in the rewardkit.testing reference: {missing}"


@pytest.mark.parametrize("command", ["new-plugin", "check-plugin"])
def test_command_options_are_documented(command):
    from rewardkit.cli import cli

    section = _section("### Commands for plugin authors")
    line = next(ln for ln in section.splitlines() if f"`rewardkit {command} " in ln)
    for param in cli.commands[command].params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert opt in line, f"docs/plugins.md: rewardkit {command} option {opt} is not documented"
