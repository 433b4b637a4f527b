"""Tests of rewardkit.testing: the batch/runner helpers, each contract check, and the pytest fixtures.

Every contract check is shown to pass on a well-behaved reward and to fail,
with a message naming the problem, on a reward built to break exactly that
part of the contract.
"""

from __future__ import annotations

import importlib.metadata
import math
import random
import types

import pydantic
import pytest

import rewardkit
from rewardkit.errors import ModelNotFoundError, PluginError
from rewardkit.plugins import load_registry
from rewardkit.testing import (
    CHECK_NAMES,
    assert_reward_contract,
    check_batch_size_invariant,
    check_deterministic,
    check_empty_strings,
    check_long_inputs,
    check_non_ascii,
    check_order_invariant,
    check_params_validated,
    check_reward,
    check_scores,
    make_batch,
    run_reward,
    sample_batch,
)


class WordCount(rewardkit.Reward):
    """Number of words times a scale: a reward that keeps the whole contract."""

    name = "word_count"

    class Params(rewardkit.Params):
        scale: float = 1.0

    def score(self, batch):
        return [self.params.scale * len(c.split()) for c in batch.completions]


def _plugin(*classes):
    """A plugin module registering ``classes``, for load_registry(extra_plugins=...)."""
    module = types.ModuleType("fake_testing_plugin")

    @rewardkit.hookimpl
    def register_rewards(register):
        for cls in classes:
            register(cls)

    module.register_rewards = register_rewards
    return module


@pytest.fixture
def registry():
    return load_registry(entry_points=False, extra_plugins=[_plugin(WordCount)])


# --- make_batch / run_reward ---------------------------------------------------------------

def test_make_batch_fills_missing_prompts_and_metadata():
    batch = make_batch(["a", "b"])
    assert list(batch.prompts) == ["", ""]
    assert batch.references is None
    assert list(batch.metadata) == [{}, {}]
    assert list(make_batch(["a"], references=["r"]).references) == ["r"]


def test_make_batch_rejects_a_single_string_and_unequal_lists():
    with pytest.raises(TypeError, match="completions must be a list of strings"):
        make_batch("hello")
    with pytest.raises(ValueError, match="1 prompts but 2 completions"):
        make_batch(["a", "b"], prompts=["p"])


def test_run_reward_by_class_name_and_instance(registry):
    # "a b c" has 3 words and "" none; scale 2 doubles them.
    assert run_reward(WordCount, ["a b c", ""], params={"scale": 2}) == [6.0, 0.0]
    assert run_reward("word_count", ["a b c"], registry=registry) == [3.0]
    assert run_reward(WordCount({"scale": 0.5}), ["a b"]) == [1.0]


def test_run_reward_validates_params_and_names(registry):
    with pytest.raises(pydantic.ValidationError):
        run_reward(WordCount, ["x"], params={"scael": 2})
    with pytest.raises(PluginError, match="unknown reward 'word_cont'; did you mean 'word_count'"):
        run_reward("word_cont", ["x"], registry=registry)


# --- the checks pass on a good reward --------------------------------------------------

def test_check_reward_passes_a_good_reward_and_reports_every_check():
    results = check_reward(WordCount, {"scale": 2.0})
    assert [r.name for r in results] == list(CHECK_NAMES)
    assert [r.status for r in results] == ["PASS"] * len(CHECK_NAMES), results
    by_name = {r.name: r.detail for r in results}
    # The sample batch's shortest completion is "Pasta." (1 word) and the longest
    # has 29 words; scale 2 doubles both.
    assert by_name["one_finite_float_per_sample"] == "6 samples, scores from 2 to 58"
    assert by_name["params_validated"] == "rejects an unknown key; wrong types for scale"
    # The long batch: a 5,000-word completion beside a 9-word one, times 2.
    assert by_name["long_inputs"] == "5,000-word completion: 2 samples, scores from 18 to 1e+04"
    assert assert_reward_contract(WordCount)[0].passed


# --- each check fails on a reward that breaks it ------------------------------------------

def _reward(name, score, *, params=None, needs_references=False, init=None):
    """A Reward subclass with the given score function (and optional Params / __init__ extra)."""
    attrs = {"name": name, "needs_references": needs_references, "score": score, "__doc__": name}
    if params is not None:
        attrs["Params"] = params
    if init is not None:
        def __init__(self, params=None, *, device="cpu"):
            rewardkit.Reward.__init__(self, params, device=device)
            init(self)
        attrs["__init__"] = __init__
    return type(name.title(), (rewardkit.Reward,), attrs)


@pytest.mark.parametrize("returned, message", [
    (lambda n: (_ for _ in range(n)), "on the sample batch: returned a generator, not a list of floats"),
    (lambda n: [0.0] * (n - 1), "returned 5 scores for 6 samples"),
    (lambda n: [0.0, math.nan] + [0.0] * (n - 2), "on the sample batch, sample 1: returned nan (scores must be finite)"),
    (lambda n: [True] * n, "sample 0: returned True (a bool), not a number"),
    (lambda n: ["1.0"] * n, "returned '1.0' (a str), not a number"),
    (lambda n: {i: 1.0 for i in range(n)}, "returned a dict, not a list of floats"),
    (lambda n: "1" * n, "returned a str, not a list of floats"),
    (lambda n: [[None]] * n, "(a list), not a number"),
])
def test_check_scores_names_the_problem(returned, message):
    bad = _reward("bad", lambda self, batch: returned(len(batch)))()
    with pytest.raises(AssertionError, match="reward 'bad': .*" + message.replace("(", r"\(").replace(")", r"\)")):
        check_scores(bad)


def test_check_scores_points_at_a_tensor_fix():
    torch = pytest.importorskip("torch")
    bad = _reward("tensorish", lambda self, batch: torch.zeros(len(batch)))()
    with pytest.raises(AssertionError, match=r"returned a Tensor, .*\(use \.tolist\(\)\)"):
        check_scores(bad)


def test_check_deterministic_catches_state_and_unseeded_randomness():
    def counting(self, batch):  # each call scores higher than the last: state kept between calls
        self.calls = getattr(self, "calls", 0) + 1
        return [float(self.calls)] * len(batch)

    with pytest.raises(AssertionError, match="when the same instance scores the batch again: sample 0: 1 vs 2"):
        check_deterministic(_reward("counting", counting)())

    # A private generator seeded from the OS ignores the kit's seeds, so a fresh instance differs.
    def init(self):
        self.offset = random.Random().random()

    drifting = _reward("drifting", lambda self, batch: [self.offset] * len(batch), init=init)
    with pytest.raises(AssertionError, match="on a fresh instance with the same seed"):
        check_deterministic(drifting())

    # The global generators are seeded by the kit, so a reward drawing from them is reproducible.
    seeded = _reward("seeded", lambda self, batch: [random.random() for _ in batch.completions])
    check_deterministic(seeded())


def test_check_order_invariant_catches_position_dependence():
    positional = _reward("positional", lambda self, batch: [float(i) for i in range(len(batch))])()
    # Reversing 6 samples moves sample 0 to position 5: scored 0 in order, 5 reversed.
    with pytest.raises(AssertionError, match="when the batch is reversed .*sample 0: 0 vs 5"):
        check_order_invariant(positional)


def test_check_batch_size_invariant_catches_in_batch_normalisation():
    def centred(self, batch):  # subtracts the batch mean: depends on the other samples
        lengths = [len(c) for c in batch.completions]
        mean = sum(lengths) / len(lengths)
        return [n - mean for n in lengths]

    reward = _reward("centred", centred)()
    check_order_invariant(reward)  # the mean does not care about order...
    with pytest.raises(AssertionError, match="split in halves"):  # ...but it does about who is in the batch
        check_batch_size_invariant(reward)


def test_robustness_checks_report_the_exception_and_where():
    def fragile(self, batch):
        out = []
        for c in batch.completions:
            c.encode("ascii")  # UnicodeEncodeError on non-ASCII text
            if len(c.split()) > 512:
                raise ValueError("input too long")
            out.append(1.0 / len(c))  # ZeroDivisionError on ""
        return out

    reward = _reward("fragile", fragile)()
    with pytest.raises(AssertionError, match=r"raised ZeroDivisionError: .* on empty strings \(at .*test_testing.py:\d+\)"):
        check_empty_strings(reward)
    with pytest.raises(AssertionError, match="raised ValueError: input too long on a 5,000-word completion"):
        check_long_inputs(reward)
    with pytest.raises(AssertionError, match="raised UnicodeEncodeError: .* on non-ASCII text"):
        check_non_ascii(reward)


def test_check_params_validated():
    assert check_params_validated(WordCount) == ["scale"]

    class Loose(rewardkit.Params):
        model_config = pydantic.ConfigDict(extra="allow")

    with pytest.raises(AssertionError, match="an unknown param '__rewardkit_unknown_param__' was accepted"):
        check_params_validated(_reward("loose", WordCount.score, params=Loose))

    class Untyped(rewardkit.Params):
        anything: object = None  # Any/object accepts everything: skipped, not failed

    assert check_params_validated(_reward("untyped", WordCount.score, params=Untyped)) == []

    class Plain(pydantic.BaseModel):
        scale: float = 1.0

    with pytest.raises(AssertionError, match="Params must subclass rewardkit.Params"):
        check_params_validated(_reward("plain", WordCount.score, params=Plain))

    class Ignoring(rewardkit.Reward):
        """Skips Reward.__init__, so nothing is validated."""
        name = "ignoring"

        def __init__(self, params=None, *, device="cpu"):
            self.params, self.device = self.Params(), device

    with pytest.raises(AssertionError, match="was accepted; validate params"):
        check_params_validated(Ignoring)


def test_references_are_given_when_the_reward_needs_them():
    def overlap(self, batch):
        assert batch.references is not None, "no references"
        return [float(len(set(c.split()) & set(r.split()))) for c, r in zip(batch.completions, batch.references)]

    reward_cls = _reward("overlap", overlap, needs_references=True)
    assert all(r.passed for r in check_reward(reward_cls))
    results = {r.name: r for r in check_reward(reward_cls, references=False)}
    assert results["one_finite_float_per_sample"].status == "FAIL"
    assert "AssertionError: no references" in results["one_finite_float_per_sample"].detail


def test_check_reward_skips_what_needs_an_instance_when_creation_fails():
    results = check_reward(WordCount, {"scale": "big"})
    assert [r.status for r in results] == ["FAIL", "PASS"] + ["SKIP"] * (len(CHECK_NAMES) - 2)
    assert "ValidationError" in results[0].detail and "scale" in results[0].detail


def test_a_setup_error_is_reported_once():
    def missing(self, batch):
        raise ModelNotFoundError("could not load model 'org/none'")

    results = check_reward(_reward("needs_model", missing))
    assert results[2].status == "FAIL"
    assert results[2].detail == ("reward 'needs_model': score() raised ModelNotFoundError: could not load "
                                 "model 'org/none' on the sample batch")
    assert [r.status for r in results[3:]] == ["SKIP"] * (len(CHECK_NAMES) - 3)


def test_sample_batch_has_varied_scores():
    # The order and size checks only mean something if the samples score differently.
    batch = sample_batch()
    assert len(set(batch.completions)) == len(batch) == 6
    assert len(set(run_reward(WordCount, batch.completions))) >= 5


# --- the pytest plugin ------------------------------------------------------------------

def test_pytest_plugin_is_registered_through_its_entry_point(request):
    eps = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.name == "rewardkit" and ep.value == "rewardkit.testing.pytest_plugin" for ep in eps)
    assert request.config.pluginmanager.get_plugin("rewardkit").__name__ == "rewardkit.testing.pytest_plugin"


def test_reward_batch_and_runner_fixtures(reward_batch, reward_runner):
    batch = reward_batch(["one two"], prompts=["p"], references=["r"])
    assert (list(batch.prompts), list(batch.references)) == (["p"], ["r"])
    assert reward_runner(WordCount, ["one two"]) == [2.0]
    # By name through the session registry (the installed built-ins): "a b c" is 3 words,
    # 1 under a target of 4 with no tolerance -> linear penalty -1.
    assert reward_runner("length", ["a b c"], params={"target_words": 4}) == [-1.0]


def test_reward_contract_fixture_passes_and_fails(reward_contract):
    assert len(reward_contract(WordCount)) == len(CHECK_NAMES)
    positional = _reward("positional", lambda self, batch: [float(i) for i in range(len(batch))])
    with pytest.raises(pytest.fail.Exception, match="contract checks did not pass:\n  FAIL batch_order_invariant"):
        reward_contract(positional)


@pytest.mark.parametrize("edit, field", [
    (lambda b: b.completions.append("extra"), "batch.completions"),
    (lambda b: b.completions.__setitem__(0, ""), "batch.completions"),
    (lambda b: b.prompts.reverse(), "batch.prompts"),
    (lambda b: b.metadata[0].update(seen=True), "batch.metadata"),
])
def test_check_scores_flags_a_reward_that_edits_its_input(edit, field):
    def score(self, batch):
        n = len(batch)
        edit(batch)
        return [0.0] * n

    with pytest.raises(AssertionError, match=r"score\(\) modified its input \(.*" + field.replace(".", r"\.")):
        check_scores(_reward("vandal", score)())


def test_none_is_a_valid_score_and_stays_none():
    # The contract lets a reward return None for a sample it cannot score.
    partial = _reward("partial", lambda self, batch: [None if c == "" else 1.0 for c in batch.completions])()
    assert check_scores(partial, make_batch(["a", "", "b"])) == [1.0, None, 1.0]
