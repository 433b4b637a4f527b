"""Composition of rewards: weights, normalisation, clipping, checkpoint state, errors.

The fake rewards read their score from the completion text ("2" scores 2.0),
so every expected total below can be worked out by hand.
"""

from __future__ import annotations

import json
import math
import types

import pytest

import rewardkit
from rewardkit import Batch, RewardError
from rewardkit.compose import Component, ComposedReward, RunningMeanStd, Scores
from rewardkit.errors import ModelNotFoundError, RecipeError
from rewardkit.plugins import load_registry
from rewardkit.recipe.schema import RewardSpec


class Echo(rewardkit.Reward):
    """Scores each completion as the number it spells, plus an offset."""

    name = "echo"

    class Params(rewardkit.Params):
        offset: float = 0.0

    def score(self, batch):
        return [float(c) + self.params.offset for c in batch.completions]


class Square(rewardkit.Reward):
    """Scores each completion as the square of the number it spells."""

    name = "square"

    def score(self, batch):
        return [float(c) ** 2 for c in batch.completions]


class NeedsRefs(Echo):
    """An echo that claims to need references."""

    name = "needs_refs"
    needs_references = True


class Returns(rewardkit.Reward):
    """Returns whatever the test stores in ``Returns.value``, or raises ``Returns.error``."""

    name = "returns"
    value: object = None
    error: Exception | None = None

    def score(self, batch):
        if self.error is not None:
            raise self.error
        return self.value


def component(cls, plugin="fake_rewards", **spec):
    """A component of reward class ``cls`` with recipe entry ``spec``."""
    spec = RewardSpec(name=cls.name, **spec)
    return Component(spec, cls(spec.params), plugin)


def batch(*numbers) -> Batch:
    return Batch.from_lists([str(n) for n in numbers])


# --- weights and the breakdown ---------------------------------------------

def test_total_is_weighted_sum_and_components_are_raw():
    composed = ComposedReward([component(Echo, weight=2.0), component(Square, weight=-0.5)])
    scores = composed(batch(1, 2, 3))
    # total = 2x - 0.5x^2: x=1 -> 1.5, x=2 -> 2.0, x=3 -> 1.5
    assert scores.total == pytest.approx([1.5, 2.0, 1.5])
    # components are the raw scores, before weighting, in recipe order
    assert scores.components == {"echo": [1.0, 2.0, 3.0], "square": [1.0, 4.0, 9.0]}
    assert list(scores.components) == composed.names == ["echo", "square"]


def test_stats_mean_and_population_std():
    scores = Scores(total=[1.5, 2.0, 1.5], components={"echo": [1.0, 2.0, 3.0], "square": [1.0, 4.0, 9.0]})
    stats = scores.stats()
    assert set(stats) == {"reward/total_mean", "reward/total_std", "reward/echo_mean", "reward/echo_std",
                          "reward/square_mean", "reward/square_std"}
    assert stats["reward/total_mean"] == pytest.approx(5 / 3)
    # deviations -1/6, 1/3, -1/6 -> variance (1 + 4 + 1) / 36 / 3 = 1/18
    assert stats["reward/total_std"] == pytest.approx(math.sqrt(1 / 18))
    assert stats["reward/echo_mean"] == 2.0
    assert stats["reward/echo_std"] == pytest.approx(math.sqrt(2 / 3))  # (1 + 0 + 1) / 3
    # mean 14/3; squared deviations 121/9, 4/9, 169/9 -> variance 98/9
    assert stats["reward/square_std"] == pytest.approx(math.sqrt(98) / 3)


def test_params_reach_the_reward():
    composed = ComposedReward([component(Echo, params={"offset": 10})])
    assert composed(batch(1)).components["echo"] == [11.0]


# --- normalisation -----------------------------------------------------------

def test_normalisation_uses_running_stats_updated_with_the_batch_first():
    composed = ComposedReward([component(Echo, normalize=True)])
    first = composed(batch(1, 2, 3))
    # stats after [1, 2, 3]: mean 2, population std sqrt(2/3); (1-2)/sqrt(2/3) = -sqrt(1.5)
    assert first.total == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    second = composed(batch(4, 5))
    # stats after [1..5]: mean 3, variance 2 -> (4-3)/sqrt2, (5-3)/sqrt2
    assert second.total == pytest.approx([1 / math.sqrt(2), 2 / math.sqrt(2)])
    assert second.components["echo"] == [4.0, 5.0]  # the breakdown stays raw
    # 5 values, mean 3, sum of squared deviations 4+1+0+1+4 = 10
    assert composed.state_dict() == {"normalizers": {"echo": {"count": 5, "mean": 3.0, "m2": 10.0}}}


def test_update_stats_false_freezes_the_statistics():
    composed = ComposedReward([component(Echo, normalize=True)])
    composed(batch(1, 2, 3))
    frozen = composed(batch(4, 5), update_stats=False)
    # still mean 2, std sqrt(2/3): (4-2)/sqrt(2/3) = 2*sqrt(1.5), (5-2)/sqrt(2/3) = 3*sqrt(1.5)
    assert frozen.total == pytest.approx([2 * math.sqrt(1.5), 3 * math.sqrt(1.5)])
    assert composed.state_dict()["normalizers"]["echo"]["count"] == 3


def test_update_stats_false_without_stats_uses_the_batch_and_keeps_nothing():
    composed = ComposedReward([component(Echo, normalize=True)])
    # [1, 3]: mean 2, population std 1 -> [-1, 1]
    assert composed(batch(1, 3), update_stats=False).total == pytest.approx([-1.0, 1.0])
    assert composed.state_dict()["normalizers"]["echo"]["count"] == 0


def test_constant_reward_is_only_centred():
    composed = ComposedReward([component(Echo, normalize=True)])
    # std 0: dividing would turn rounding noise into huge numbers; (x - mean) = 0
    assert composed(batch(7)).total == [0.0]
    assert composed(batch(7, 7)).total == [0.0, 0.0]


def test_running_stats_match_the_whole_stream_for_uneven_batches():
    stats = RunningMeanStd()
    values = [0.5, -2.0, 3.25, 10.0, 4.0, 4.0, -1.5]
    for chunk in (values[:1], values[1:4], values[4:]):
        stats.update(chunk)
    mean = sum(values) / len(values)
    assert stats.mean == pytest.approx(mean)
    assert stats.std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)))


# --- clipping ----------------------------------------------------------------

def test_clipping_before_weighting():
    composed = ComposedReward([component(Echo, clip=1.5, weight=2.0)])
    scores = composed(batch(-3, 0, 1, 2))
    # clip to [-1.5, 1.5] -> [-1.5, 0, 1, 1.5], then x2
    assert scores.total == [-3.0, 0.0, 2.0, 3.0]
    assert scores.components["echo"] == [-3.0, 0.0, 1.0, 2.0]


def test_clipping_after_normalisation():
    composed = ComposedReward([component(Echo, normalize=True, clip=1.0)])
    # normalised [-1.22, 0, 1.22] (see above), clipped to [-1, 1]
    assert composed(batch(1, 2, 3)).total == pytest.approx([-1.0, 0.0, 1.0])


# --- checkpoint state --------------------------------------------------------

def test_state_dict_round_trip_resumes_identically():
    def fresh():
        return ComposedReward([component(Echo, normalize=True), component(Square, weight=0.1)])

    original = fresh()
    original(batch(1, 2, 3))
    state = json.loads(json.dumps(original.state_dict()))  # must survive a JSON checkpoint
    assert list(state["normalizers"]) == ["echo"]  # only normalised components have state
    resumed = fresh()
    resumed.load_state_dict(state)
    assert resumed(batch(4, 5)).total == pytest.approx(original(batch(4, 5)).total)
    assert resumed.state_dict() == original.state_dict()


def test_load_state_without_a_component_warns_and_starts_fresh():
    composed = ComposedReward([component(Echo, normalize=True)])
    with pytest.warns(UserWarning, match="reward 'echo'"):
        composed.load_state_dict({"normalizers": {"other": {"count": 1, "mean": 0.0, "m2": 0.0}}})
    assert composed.state_dict()["normalizers"]["echo"]["count"] == 0


# --- errors ------------------------------------------------------------------

def returns(value=None, error=None):
    Returns.value, Returns.error = value, error
    return ComposedReward([component(Returns, plugin="fake-plugin")])


@pytest.fixture(autouse=True)
def _reset_returns():
    yield
    Returns.value, Returns.error = None, None


def test_wrong_number_of_scores_names_reward_and_plugin():
    with pytest.raises(RewardError) as info:
        returns(value=[1.0, 2.0])(batch(1, 2, 3))
    assert str(info.value) == "reward 'returns' (plugin fake-plugin): returned 2 scores for 3 samples"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_score_names_the_first_bad_sample(bad):
    with pytest.raises(RewardError) as info:
        returns(value=[1.0, 2.0, bad, math.nan])(batch(1, 2, 3, 4))
    assert info.value.index == 2
    assert str(info.value).startswith("reward 'returns' (plugin fake-plugin), sample 2: returned ")


def test_nan_from_a_real_computation_is_caught():
    with pytest.raises(RewardError, match=r"reward 'echo' \(plugin fake_rewards\), sample 2"):
        ComposedReward([component(Echo)])(Batch.from_lists(["1", "2", "nan"]))


def test_non_number_and_non_list_are_errors():
    with pytest.raises(RewardError, match=r"sample 1: returned 'x' \(a str\), not a number"):
        returns(value=[1.0, "x"])(batch(1, 2))
    with pytest.raises(RewardError, match="returned a NoneType, not a list of floats"):
        returns(value=None)(batch(1))


def test_raising_reward_is_wrapped_with_its_cause():
    cause = ZeroDivisionError("division by zero")
    with pytest.raises(RewardError) as info:
        returns(error=cause)(batch(1))
    assert str(info.value) == "reward 'returns' (plugin fake-plugin): raised ZeroDivisionError: division by zero"
    assert info.value.__cause__ is cause


def test_reward_error_from_the_reward_gains_the_plugin():
    with pytest.raises(RewardError) as info:
        returns(error=RewardError("returns", "needs references"))(batch(1))
    assert str(info.value) == "reward 'returns' (plugin fake-plugin): needs references"


def test_user_errors_like_a_missing_model_pass_through():
    with pytest.raises(ModelNotFoundError, match="could not load model 'x'"):
        returns(error=ModelNotFoundError("could not load model 'x'"))(batch(1))


def test_duplicate_component_names_are_rejected():
    with pytest.raises(ValueError, match="repeated: echo"):
        ComposedReward([component(Echo), component(Echo)])


# --- from_specs, through a real registry --------------------------------------

@pytest.fixture
def registry():
    plugin = types.ModuleType("fake_rewards")

    @rewardkit.hookimpl
    def register_rewards(register):
        for cls in (Echo, Square, NeedsRefs):
            register(cls)

    plugin.register_rewards = register_rewards
    return load_registry(entry_points=False, extra_plugins=[plugin])


def test_from_specs_builds_components_in_order(registry):
    specs = [RewardSpec(name="square", weight=0.5), RewardSpec(name="echo", params={"offset": 1})]
    composed = ComposedReward.from_specs(specs, registry, device="cuda:7")
    assert composed.names == ["square", "echo"]
    assert [c.plugin for c in composed.components] == ["fake_rewards", "fake_rewards"]
    assert composed.components[1].reward.device == "cuda:7"  # the runner's device reaches the reward
    assert composed.needs_references is False
    # 0.5 * 2^2 + (2 + 1) = 5
    assert composed(batch(2)).total == [5.0]


def test_needs_references_when_any_component_does(registry):
    specs = [RewardSpec(name="echo"), RewardSpec(name="needs_refs")]
    assert ComposedReward.from_specs(specs, registry).needs_references is True


def test_from_specs_reports_every_error_with_its_location(registry):
    specs = [RewardSpec(name="echo", params={"offset": "abc", "bogus": 1}), RewardSpec(name="ecko")]
    with pytest.raises(RecipeError) as info:
        ComposedReward.from_specs(specs, registry)
    locations = [loc for loc, _ in info.value.errors]
    assert locations == ["rewards[0].params.offset", "rewards[0].params.bogus", "rewards[1].name"]
    messages = dict(info.value.errors)
    assert "did you mean 'echo'" in messages["rewards[1].name"]
    assert "Extra inputs are not permitted" in messages["rewards[0].params.bogus"]


def test_from_specs_cross_field_rule_is_located_at_params():
    # the built-in length reward needs exactly one target; its rule has no single field
    specs = [RewardSpec(name="length", params={"tolerance": 2})]
    with pytest.raises(RecipeError) as info:
        ComposedReward.from_specs(specs, load_registry())
    assert info.value.errors == [("rewards[0].params", "set exactly one of target_words or target_tokens")]


def test_builtin_rewards_compose_with_design_recipe_params():
    # DESIGN.md's example recipe, minus the model-loading toxicity component
    specs = [RewardSpec(name="rouge", weight=0.5, params={"metric": "rougeL"}),
             RewardSpec(name="length", weight=0.2, params={"target_words": 3})]
    composed = ComposedReward.from_specs(specs, load_registry())
    assert composed.needs_references is True
    scores = composed(Batch.from_lists(["the cat sat", "a cat"], references=["the cat sat", "the cat sat"]))
    # sample 0: rougeL 1, length 0 -> 0.5; sample 1: rougeL F of "a cat" vs "the cat sat" is
    # 2*(1/2)*(1/3)/(1/2+1/3) = 0.4, length 1 word short -> -1: 0.5*0.4 + 0.2*(-1) = 0
    assert scores.total == pytest.approx([0.5, 0.0])


# --- training accepts exactly the contract, and each reward sees the real batch --------------------------------

@pytest.mark.parametrize("value, message", [
    ({0: 1.0, 1: 2.0}, "returned a dict, not a list of floats"),
    ("12", "returned a str, not a list of floats"),
    (["1.0", "2.0"], r"sample 0: returned '1.0' \(a str\), not a number"),
    ([True, False], r"sample 0: returned True \(a bool\), not a number"),
    ([1.0, 1 + 2j], r"sample 1: returned \(1\+2j\) \(a complex\), not a number"),
    ((x for x in (1.0, 2.0)), "returned a generator, not a list of floats"),
])
def test_training_refuses_what_the_contract_does_not_allow(value, message):
    with pytest.raises(RewardError, match=r"reward 'returns' \(plugin fake-plugin\).*" + message):
        returns(value=value)(batch(1, 2))


class Vandal(rewardkit.Reward):
    """Edits its batch in place: empties the completions and rewrites the references."""

    name = "vandal"

    def score(self, batch):
        scores = [0.0] * len(batch)
        batch.completions[:] = ["999"] * len(batch.completions)
        batch.prompts.clear()
        if batch.references is not None:
            batch.references[0] = "edited"
        batch.metadata[0]["x"] = "edited"
        return scores


def test_a_reward_that_edits_its_batch_changes_nothing_for_the_others():
    composed = ComposedReward([component(Vandal), component(Echo)])
    b = Batch(["p1", "p2"], ["1", "2"], ["r1", "r2"], [{"x": 1}, {"x": 2}])
    scores = composed(b)
    assert scores.components["echo"] == [1.0, 2.0]  # echo saw the real completions, not "999"
    # and what the runner logs afterwards is the batch as sampled
    assert b.completions == ["1", "2"] and b.prompts == ["p1", "p2"] and b.references == ["r1", "r2"]
    assert b.metadata == [{"x": 1}, {"x": 2}]
