"""Judges: which spec builds which judge, label lookup by name, independence, and a real offline judge."""

import pytest
from transformers import PretrainedConfig

from rewardkit.errors import PluginError, RewardkitError
from rewardkit.evaluate.judges import (DEFAULT_JUDGE, ClassifierJudge, ProfanityCheckJudge, RewardJudge, find_label,
                                       make_judge)
from rewardkit.plugins import load_registry
from rewardkit.recipe.schema import RewardSpec
from rewardkit.reward import Batch


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_find_label_by_name_not_position():
    # the seed's RoBERTa: 0 = nothate, 1 = hate; "hate" must give 1 whatever order scores come in
    config = PretrainedConfig(id2label={0: "nothate", 1: "hate"})
    assert find_label(config, "hate", "m") == 1
    assert find_label(config, "HATE", "m") == 1          # case-insensitive when unambiguous
    with pytest.raises(RewardkitError, match=r"judge 'm' has no label 'toxic'; its labels are 'nothate', 'hate'"):
        find_label(config, "toxic", "m")


def test_profanity_check_scores_rude_text_high(registry):
    judge = make_judge("profanity-check", registry=registry)
    assert isinstance(judge, ProfanityCheckJudge) and judge.higher_is_better is False and judge.independent
    judge.load()
    rude, polite = judge.score(Batch.from_lists(["shut up you stupid idiot", "thank you for the lovely dinner"]))
    assert rude > 0.9 and polite < 0.2


def test_reward_name_becomes_reward_judge_with_recipe_params(registry):
    specs = [RewardSpec(name="length", params={"target_words": 3})]
    judge = make_judge("length", registry=registry, rewards=specs)
    assert isinstance(judge, RewardJudge) and judge.higher_is_better
    assert judge.independent is False                    # the very reward PPO optimised
    # "a b c" is on target (0 penalty); "a" is 2 words short (linear, scale 1): -2
    assert judge.score(Batch.from_lists(["a b c", "a"])) == [0.0, -2.0]
    other = make_judge("reward:length", registry=registry, rewards=specs, params={"target_words": 1})
    assert other.independent is True and other.score(Batch.from_lists(["a"])) == [0.0]


def test_unknown_reward_prefix_names_the_reward(registry):
    with pytest.raises(PluginError, match="unknown reward 'lenght'; did you mean 'length'"):
        make_judge("reward:lenght", registry=registry)


def test_classifier_judge_independence(registry):
    # toxicity with no params *is* the RoBERTa classifier, so the default judge is not independent of it
    default = make_judge(DEFAULT_JUDGE, registry=registry, rewards=[RewardSpec(name="toxicity")])
    assert isinstance(default, ClassifierJudge) and default.independent is False
    assert (default.key, default.title, default.label) == ("p-hate", "P(hate)", "hate")
    other = make_judge(DEFAULT_JUDGE, registry=registry,
                       rewards=[RewardSpec(name="toxicity", params={"model": "some-org/other-classifier"})])
    assert other.independent is True
