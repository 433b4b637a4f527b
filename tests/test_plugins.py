"""Plugin discovery: fake plugins, entry points, broken plugins, duplicates, plugins beside a recipe."""

from __future__ import annotations

import textwrap

import pytest

import rewardkit
from fake_rewards import (FakeDistribution, FakeEntryPoint, FakeToxicity, Overlap, Shouting, forget_module,
                          installed, make_plugin)
from rewardkit.errors import PluginError, RecipeError
from rewardkit.plugins import load_registry
from rewardkit.recipe import load_recipe


@pytest.fixture
def shouting_plugin():
    """A fake plugin package, installed through the entry-point group for the test only."""
    ep = FakeEntryPoint("shouting", make_plugin("rk_shouting", Shouting, Overlap),
                        FakeDistribution("rewardkit-shouting", "1.2.0"))
    with installed(ep):
        yield ep


def test_extra_plugin_objects():
    registry = load_registry(entry_points=False, extra_plugins=[make_plugin("my_plugin", Shouting, version="0.9")])
    info = registry.get("shouting")
    assert (info.name, info.cls, info.plugin, info.version) == ("shouting", Shouting, "my_plugin", "0.9")
    assert info.summary == "Share of a completion's letters written in capitals."
    assert registry.create("shouting", {"threshold": 0.2}).params.threshold == 0.2


def test_installed_plugin_is_found_with_its_distribution(shouting_plugin):
    registry = load_registry()
    assert sorted(registry.rewards) == ["overlap", "shouting"]
    info = registry.rewards["overlap"]
    assert (info.plugin, info.version) == ("rewardkit-shouting", "1.2.0")
    assert registry.failures == []


def test_fake_installation_is_undone_even_when_the_test_fails():
    ep = FakeEntryPoint("shouting", make_plugin("rk_shouting", Shouting))
    with pytest.raises(RuntimeError), installed(ep):
        assert "shouting" in load_registry().rewards
        raise RuntimeError("the test failed here")
    assert "shouting" not in load_registry().rewards


def test_duplicate_reward_names_name_both_plugins():
    first = FakeEntryPoint("faketox", make_plugin("rk_faketox", FakeToxicity), FakeDistribution("rk-one", "1.0"))
    second = FakeEntryPoint("othertox", make_plugin("rk_othertox", type("Tox2", (FakeToxicity,), {})),
                            FakeDistribution("rk-two", "2.0"))
    with installed(first, second), pytest.raises(PluginError) as info:
        load_registry()
    message = str(info.value)
    assert message.startswith("reward 'toxicity' is registered twice: by plugin 'rk-one' ")
    assert "and by plugin 'rk-two' " in message


def test_broken_plugin_is_reported_and_does_not_break_the_others():
    good = FakeEntryPoint("shouting", make_plugin("rk_shouting", Shouting), FakeDistribution("rewardkit-shouting", "1.2"))
    broken = FakeEntryPoint("broken", ModuleNotFoundError("No module named 'numpyy'"),
                            FakeDistribution("rewardkit-broken", "0.1"))
    with installed(broken, good):
        registry = load_registry()
    assert list(registry.rewards) == ["shouting"]
    [failure] = registry.failures
    assert (failure.plugin, failure.cause) == ("rewardkit-broken:broken",
                                               "ModuleNotFoundError: No module named 'numpyy'")
    # Asking for a reward the broken plugin might have provided says so.
    with pytest.raises(PluginError) as info:
        registry.get("toxicity")
    assert str(info.value) == (
        "unknown reward 'toxicity'; known rewards: shouting\n"
        "  plugin 'rewardkit-broken:broken' failed to load and may provide it: "
        "ModuleNotFoundError: No module named 'numpyy'")


def test_register_hook_that_raises_is_a_failure_not_a_crash():
    module = make_plugin("rk_raises")

    @rewardkit.hookimpl
    def register_rewards(register):
        raise RuntimeError("boom")

    module.register_rewards = register_rewards
    registry = load_registry(entry_points=False, extra_plugins=[module, make_plugin("rk_ok", Shouting)])
    assert list(registry.rewards) == ["shouting"]
    assert [(f.plugin, f.cause) for f in registry.failures] == [("rk_raises", "register_rewards raised RuntimeError: boom")]


def test_unknown_reward_did_you_mean():
    registry = load_registry(entry_points=False, extra_plugins=[make_plugin("p", Shouting, Overlap)])
    with pytest.raises(PluginError, match=r"^unknown reward 'shoutng'; did you mean 'shouting'\?$"):
        registry.get("shoutng")


PLUGIN_FILE = '''
import rewardkit

class Polite(rewardkit.Reward):
    """1.0 when the completion says please."""
    name = "polite"

    def score(self, batch):
        return [float("please" in c) for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(Polite)
'''


@pytest.fixture
def recipe_with_local_plugin(tmp_path):
    """A recipe directory holding a plugin file; the imported modules are forgotten afterwards."""
    (tmp_path / "polite_reward.py").write_text(PLUGIN_FILE)
    try:
        with installed():  # only the local plugin: no installed ones
            yield tmp_path
    finally:
        forget_module("rewardkit_local_polite_reward")
        forget_module("polite_reward")


@pytest.mark.parametrize("spec", ["polite_reward.py", "polite_reward"])
def test_plugin_beside_a_recipe(recipe_with_local_plugin, spec):
    path = recipe_with_local_plugin / "recipe.yaml"
    path.write_text(textwrap.dedent(f"""\
        model: {{name: m}}
        data: {{source: org/dialogues}}
        plugins: [{spec}]
        rewards: [{{name: polite}}]
        """))
    loaded = load_recipe(path)  # the file is found relative to the recipe, not the working directory
    info = loaded.registry.get("polite")
    assert info.plugin == spec
    batch = rewardkit.Batch.from_lists(["please sit", "sit"])
    assert loaded.create_rewards()[0].score(batch) == [1.0, 0.0]


def test_real_builtins_are_entry_points():
    registry = load_registry()
    for name in ("toxicity", "length", "rouge"):
        assert registry.rewards[name].plugin == "rewardkit"
    assert registry.rewards["rouge"].cls.needs_references


def test_base_dir_overrides_the_recipe_directory(recipe_with_local_plugin, tmp_path_factory):
    # A resumed run reads the recipe copied into its run directory, but local
    # plugins still resolve against the directory of the original recipe.
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / "recipe.yaml").write_text("model: {name: m}\ndata: {source: org/dialogues}\n"
                                         "plugins: [polite_reward.py]\nrewards: [{name: polite}]\n")
    loaded = load_recipe(run_dir / "recipe.yaml", base_dir=recipe_with_local_plugin)
    assert loaded.base_dir == recipe_with_local_plugin.resolve()
    assert "polite" in loaded.registry.rewards
    with pytest.raises(RecipeError) as info:
        load_recipe(run_dir / "recipe.yaml")  # without it, the plugin file is not beside the copy
    assert "no such plugin file" in str(info.value)
