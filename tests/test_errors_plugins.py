"""A bad ``plugins:`` entry and an unwritable ``new-plugin --dir`` get a clear message (issue 10, family 5)."""

import errno
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_rewards import installed
from rewardkit.cli import cli
from rewardkit.errors import PluginError, RecipeError
from rewardkit.plugins import load_registry
from rewardkit.recipe.validate import load_recipe

GOOD = '''
import rewardkit

class Polite(rewardkit.Reward):
    """1.0 when the completion says please."""
    name = "polite_e"

    def score(self, batch):
        return [float("please" in c) for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(Polite)
'''


@pytest.fixture
def beside(tmp_path):
    """A recipe directory with assorted things that are not plugins; local modules are forgotten after."""
    (tmp_path / "my_rewards.txt").write_text(GOOD)
    (tmp_path / "notes.md").write_text("# notes\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(GOOD)
    (tmp_path / "odd.py").mkdir()
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "nohook.py").write_text("def register_rewards(register):\n    pass\n")
    (tmp_path / "misspelt.py").write_text("import rewardkit\n@rewardkit.hookimpl\ndef register_reward(register):\n"
                                          "    pass\n")
    (tmp_path / "badsig.py").write_text("import rewardkit\n@rewardkit.hookimpl\ndef register_rewards(reg):\n"
                                        "    pass\n")
    (tmp_path / "boom.py").write_text("import rewardkit\n\nraise RuntimeError('boom')\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    before = set(sys.modules)
    try:
        with installed():
            yield tmp_path
    finally:
        for name in set(sys.modules) - before:
            if name.startswith(("rewardkit_local_", "pkg")):
                del sys.modules[name]


def refused(spec, base) -> str:
    with pytest.raises(PluginError) as info:
        load_registry([spec], base_dir=base, entry_points=False)
    message = str(info.value)
    assert message.startswith(f"plugin '{spec}'"), message  # the entry, as written
    assert message.count("\n") == 0
    assert info.value.indices == [0]
    return message


@pytest.mark.parametrize("spec, expected", [
    ("my_rewards.txt", "my_rewards.txt is not a Python file: a plugin is a .py file or an importable module "
                       "(rename it to my_rewards.py?)"),
    ("notes.md", "notes.md is not a Python file"),
    ("./my_rewards.txt", "my_rewards.txt is not a Python file"),
    ("folder", "folder is a directory, not a plugin file; name a .py file inside it"),
    ("./folder", "folder is a directory, not a plugin file"),
    ("folder/", "folder is a directory, not a plugin file"),
    ("pkg/", "pkg is a directory, not a plugin file; name the package by its module name ('pkg')"),
    ("odd.py", "odd.py is a directory, not a plugin file"),
    ("missing.py", "no such plugin file: "),
    ("sub/missing.py", "no such plugin file: "),
    ("missing.yaml", "failed to import: ModuleNotFoundError: no module named 'missing'"),
    ("sub/missing.yaml", "no such plugin file: "),
    ("not_installed_anywhere", "no module named 'not_installed_anywhere': it is not installed, and there is no "
                               "not_installed_anywhere.py beside the recipe"),
    ("my-rewards", "a module name cannot contain '-' (try my_rewards)"),
    ("", "an empty entry; name a .py file or an importable module"),
    ("   ", "an empty entry"),
])
def test_entries_that_are_not_plugins(beside, spec, expected):
    message = refused(spec, beside)
    assert expected in message
    assert "Traceback" not in message


@pytest.mark.parametrize("spec, expected", [
    ("nohook.py", "defines no rewardkit hook: it needs a function register_rewards(register) decorated with "
                  "@rewardkit.hookimpl"),
    ("misspelt.py", "register_reward is marked @rewardkit.hookimpl but is not a rewardkit hook; did you mean "
                    "register_rewards(register)?"),
    ("badsig.py", "Argument(s) {'reg'} are declared in the hookimpl but can not be found in the hookspec"),
    ("boom.py", "failed to import: RuntimeError: boom (raised at "),
    ("broken.py", "failed to import: SyntaxError:"),
])
def test_python_files_that_are_not_plugins(beside, spec, expected):
    message = refused(spec, beside)
    assert expected in message
    if spec == "boom.py":
        assert message.endswith("boom.py:3)")


def test_a_missing_file_names_where_it_was_looked_for(beside):
    assert str(beside / "missing.py") in refused("missing.py", beside)


def test_every_bad_entry_is_reported_with_its_position(beside):
    with pytest.raises(PluginError) as info:
        load_registry(["good.py", "my_rewards.txt", "pkg", "folder"], base_dir=beside, entry_points=False)
    assert info.value.indices == [1, 3]
    lines = str(info.value).splitlines()
    assert lines[0].startswith("plugin 'my_rewards.txt'") and lines[1].startswith("plugin 'folder'")


def test_good_entries_still_load(beside):
    for spec in ("good.py", "pkg", str(beside / "good.py")):
        assert "polite_e" in load_registry([spec], base_dir=beside, entry_points=False).rewards


def test_a_failed_file_leaves_no_module_behind(beside):
    refused("boom.py", beside)
    assert "rewardkit_local_boom" not in sys.modules


def test_validate_names_the_entry(beside):
    path = beside / "recipe.yaml"
    path.write_text(textwrap.dedent("""\
        model: {name: m}
        data: {source: d.jsonl}
        plugins:
          - good.py
          - my_rewards.txt
        rewards: [{name: polite_e}]
        """))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "plugin 'my_rewards.txt'" in str(info.value) and "is not a Python file" in str(info.value)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "plugin 'my_rewards.txt'" in result.stderr


# ---------------------------------------------------------------- new-plugin --dir that cannot be written

def new_plugin(*args):
    return CliRunner().invoke(cli, ["new-plugin", *args])


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_dir_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile" / "sub", tmp_path / "afile" / "a" / "b"):
        result = new_plugin("brevity-e", "--dir", str(target))
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
        assert f"{tmp_path / 'afile'} is a file, not a directory (nothing was written)" in result.output
    assert tree(tmp_path) == ["afile"]


def test_dir_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = new_plugin("brevity-e", "--dir", str(tmp_path / "afile"))
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output
    assert tree(tmp_path) == ["afile"]


def test_read_only_dir(tmp_path, monkeypatch):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro and mode & os.W_OK
                        else real(p, mode, **kw))
    result = new_plugin("brevity-e", "--dir", str(ro))
    assert result.exit_code == 1
    assert f"cannot create {ro / 'rewardkit-brevity-e'}: {ro} is not writable (permission denied) " \
           f"(nothing was written)" in result.output
    assert tree(tmp_path) == ["ro"]


def test_really_read_only_dir(tmp_path):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = new_plugin("brevity-e", "--dir", str(ro / "deeper"))
        if os.access(ro, os.W_OK):  # root: the directory is writable after all, and the package is written
            assert result.exit_code == 0
        else:
            assert result.exit_code == 1 and "not writable" in result.output and tree(tmp_path) == ["ro"]
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, fail_at):
    calls = {"n": 0}
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    target = tmp_path / "new" / "deeper"  # parents that new-plugin creates are removed again too
    result = new_plugin("brevity-e", "--dir", str(target))
    assert result.exit_code == 1, result.output
    assert f"cannot create {target / 'rewardkit-brevity-e'}: no space left on device (nothing was written)" \
        in result.output
    assert tree(tmp_path) == []


def test_the_package_is_written_with_ordinary_permissions(tmp_path):
    import os
    import stat

    result = new_plugin("brevity-e", "--dir", str(tmp_path / "a" / "b"))
    assert result.exit_code == 0, result.output
    root = tmp_path / "a" / "b" / "rewardkit-brevity-e"
    assert (root / "pyproject.toml").is_file()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(root.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's private 0o700
    assert [p.name for p in root.parent.iterdir()] == ["rewardkit-brevity-e"]  # no staging directory left
