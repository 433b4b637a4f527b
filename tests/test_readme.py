"""The README's two commands stay true: CI runs the README's test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_command() -> str:
    text = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^bash -c '(.+)'$", text, re.M)
    assert match, ".ci/run must run the README's test command as: bash -c '<command>'"
    return match.group(1)


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    assert _ci_command() in readme.splitlines()


def test_readme_quickstart_command_uses_the_same_install_and_the_quickstart_recipe():
    lines = (ROOT / "README.md").read_text().splitlines()
    install = _ci_command().rsplit(" && ", 1)[0]
    quick = [line for line in lines if line.endswith("rewardkit run recipes/quickstart.yaml")]
    assert quick == [f"{install} && rewardkit run recipes/quickstart.yaml"]
    assert (ROOT / "recipes" / "quickstart.yaml").is_file()
