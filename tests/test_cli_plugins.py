"""``rewardkit plugins``: the listing, JSON, broken plugins, and that it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from fake_rewards import FakeDistribution, FakeEntryPoint, installed, standard_plugins
from rewardkit.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_table():
    with installed(*standard_plugins()):
        result = invoke("plugins")
    assert result.exit_code == 0, result.output
    # Sorted by name; columns as wide as their longest cell plus two spaces.
    assert result.stdout == (
        "NAME      PLUGIN              VERSION  SUMMARY\n"
        "overlap   rewardkit-shouting  1.2.0    Share of a completion's words that appear in its reference.\n"
        "shouting  rewardkit-shouting  1.2.0    Share of a completion's letters written in capitals.\n"
        "toxicity  rewardkit-faketox   0.3.1    Stands in for the built-in toxicity reward: 1.0 unless the text "
        "says 'idiot'.\n")


def test_json():
    with installed(*standard_plugins()):
        result = invoke("plugins", "--json")
    assert result.exit_code == 0
    listing = json.loads(result.stdout)
    assert listing["failures"] == []
    assert listing["rewards"][0] == {
        "name": "overlap", "plugin": "rewardkit-shouting", "version": "1.2.0",
        "summary": "Share of a completion's words that appear in its reference.", "needs_references": True}
    assert [r["name"] for r in listing["rewards"]] == ["overlap", "shouting", "toxicity"]


def test_broken_plugin_is_listed_with_its_cause():
    broken = FakeEntryPoint("broken", ImportError("cannot import name 'Reward'"), FakeDistribution("rk-broken", "0.1"))
    with installed(broken, *standard_plugins()):
        result = invoke("plugins")
        as_json = json.loads(invoke("plugins", "--json").stdout)
    assert result.exit_code == 0
    assert result.stdout.endswith("\nPlugins that failed to load:\n"
                                  "  rk-broken:broken: ImportError: cannot import name 'Reward'\n")
    assert "shouting  rewardkit-shouting" in result.stdout  # the others still listed
    assert as_json["failures"] == [{"plugin": "rk-broken:broken", "cause": "ImportError: cannot import name 'Reward'"}]


def test_no_plugins():
    with installed():
        result = invoke("plugins")
    assert (result.exit_code, result.stdout) == (0, "No rewards found.\n")


def test_plugin_option_loads_a_file(tmp_path, monkeypatch):
    (tmp_path / "loud.py").write_text(
        "import rewardkit\n"
        "class Loud(rewardkit.Reward):\n"
        "    '''Always 1.'''\n"
        "    name = 'loud'\n"
        "    def score(self, batch):\n"
        "        return [1.0] * len(batch)\n"
        "@rewardkit.hookimpl\n"
        "def register_rewards(register):\n"
        "    register(Loud)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "rewardkit_local_loud", raising=False)
    with installed():
        result = invoke("plugins", "--plugin", "loud.py")
    assert result.stdout.splitlines()[1].split() == ["loud", "loud.py", "-", "Always", "1."]


def test_builtins_are_listed():
    result = invoke("plugins", "--json")
    names = {r["name"]: r for r in json.loads(result.stdout)["rewards"]}
    assert {"toxicity", "length", "rouge"} <= set(names)
    assert names["toxicity"]["plugin"] == "rewardkit"


def test_listing_imports_no_torch():
    # `rewardkit plugins` must stay fast: neither the CLI nor any built-in plugin may import torch at import time.
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from rewardkit.cli import cli\n"
            "result = CliRunner().invoke(cli, ['plugins'])\n"
            "assert result.exit_code == 0, result.output\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n"
