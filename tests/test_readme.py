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


def test_readme_performance_table_is_generated_from_the_committed_results():
    # Every number in README's Performance table is one that bench/compare.py measured: the table is
    # bench/perf_table.py's rendering of bench/results/compare_2threads.json (regenerate with
    # `python bench/perf_table.py --write-readme` after committing new results).
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("perf_table", ROOT / "bench" / "perf_table.py")
    perf_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_table)
    results = json.loads((ROOT / "bench" / "results" / "compare_2threads.json").read_text())
    assert perf_table.readme_table((ROOT / "README.md").read_text()) == perf_table.render(results)
