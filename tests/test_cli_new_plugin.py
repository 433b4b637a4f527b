"""``rewardkit new-plugin``: names, refusals, the files written, and a scaffold that installs and passes its tests."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.cli.new_plugin import plugin_names


def invoke(*args):
    return CliRunner().invoke(cli, ["new-plugin", *args])


def test_names_derived_from_name():
    assert plugin_names("word-count") == {"reward": "word_count", "module": "rewardkit_word_count",
                                          "dist": "rewardkit-word-count", "cls": "WordCount"}
    assert plugin_names("brevity2") == {"reward": "brevity2", "module": "rewardkit_brevity2",
                                        "dist": "rewardkit-brevity2", "cls": "Brevity2"}


@pytest.mark.parametrize("name", ["Brevity", "2fast", "word--count", "my.reward", "snake_", "with space", "x-"])
def test_invalid_names_are_refused(tmp_path, name):
    result = invoke(name, "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert f"Invalid value for NAME: {name!r} is not a valid plugin name" in result.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(click.BadParameter):
        plugin_names(name)


def test_writes_the_package(tmp_path):
    result = invoke("word-count", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "rewardkit-word-count"
    assert result.output == (
        f"Created {root}/ for the reward 'word_count':\n"
        f"  {root / 'README.md'}\n"
        f"  {root / 'rewardkit_word_count' / '__init__.py'}\n"
        f"  {root / 'pyproject.toml'}\n"
        f"  {root / 'tests' / 'test_reward.py'}\n"
        "Next:\n"
        f"  cd {root}\n"
        "  pip install -e .\n"
        "  python -m pytest\n"
        "  rewardkit check-plugin word_count\n"
    )
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "rewardkit-word-count"' in pyproject
    assert '[project.entry-points.rewardkit]\nword_count = "rewardkit_word_count"' in pyproject
    module = (root / "rewardkit_word_count" / "__init__.py").read_text()
    assert "class WordCount(rewardkit.Reward):" in module and 'name = "word_count"' in module
    assert "from rewardkit_word_count import WordCount" in (root / "tests" / "test_reward.py").read_text()
    assert "$" not in module + pyproject  # every placeholder was filled


def test_refuses_to_overwrite(tmp_path):
    existing = tmp_path / "rewardkit-brevity"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    result = invoke("brevity", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"Error: {existing} already exists; choose another NAME or --dir (nothing was written)" in result.output
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_refuses_a_name_already_registered(tmp_path):
    result = invoke("length", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "a reward named 'length' is already registered by plugin 'rewardkit'" in result.output
    assert list(tmp_path.iterdir()) == []


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


DIST = "rewardkit-scaffoldcheck"


def test_scaffold_installs_passes_its_tests_and_is_listed(tmp_path):
    try:  # a leftover from an interrupted run would make the name "already registered"
        importlib.metadata.distribution(DIST)
        _pip("uninstall", "-y", "-q", DIST)
    except importlib.metadata.PackageNotFoundError:
        pass

    assert invoke("scaffoldcheck", "--dir", str(tmp_path)).exit_code == 0
    root = tmp_path / DIST
    try:
        pip = _pip("install", "--no-deps", "--no-build-isolation", "-q", "-e", str(root))
        assert pip.returncode == 0, pip.stderr

        # The generated tests (hand-computed scores, the contract, lookup by name) pass.
        tests = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "5 passed" in tests.stdout

        listing = _run("-m", "rewardkit", "plugins")
        assert listing.returncode == 0, listing.stderr
        row = next(line for line in listing.stdout.splitlines() if line.startswith("scaffoldcheck "))
        assert row.split()[1:3] == [DIST, "0.1.0"]
        assert "Penalise repeated words" in row

        check = _run("-m", "rewardkit", "check-plugin", "scaffoldcheck")
        assert check.returncode == 0, check.stdout
        assert check.stdout.endswith("9 checks: 9 passed\n")
    finally:
        _pip("uninstall", "-y", "-q", DIST)
