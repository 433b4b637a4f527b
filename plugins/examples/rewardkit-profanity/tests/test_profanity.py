"""Tests of the ``profanity`` reward, written with rewardkit's testing kit.

The classifier is a trained model, so exact scores are not hand-computable;
the tests pin what follows from the definition (-p, the threshold's 0/-1,
the prompt switch) and bounds wide enough to survive a retrained model.
"""

import pydantic
import pytest

from rewardkit.testing import run_reward
from rewardkit_profanity import Profanity

CLEAN = "Thank you for helping me move the table."
PROFANE = "you are a fucking idiot"


def test_clean_text_costs_almost_nothing_and_profanity_almost_one():
    clean, profane = run_reward(Profanity, [CLEAN, PROFANE])
    # -p lies in [-1, 0]; the classifier is confident on both texts.
    assert -0.1 < clean <= 0.0
    assert -1.0 <= profane < -0.9


def test_threshold_makes_the_penalty_all_or_nothing():
    # p(CLEAN) is near 0 and p(PROFANE) near 1, so a 0.5 threshold maps them to 0 and -1 exactly.
    assert run_reward(Profanity, [CLEAN, PROFANE], params={"threshold": 0.5}) == [0.0, -1.0]


def test_include_prompt_scores_the_prompt_too():
    # The completion is clean; only with include_prompt does the profane prompt count.
    alone = run_reward(Profanity, [CLEAN], prompts=[PROFANE])
    together = run_reward(Profanity, [CLEAN], prompts=[PROFANE], params={"include_prompt": True})
    assert together[0] < alone[0] - 0.5


@pytest.mark.parametrize("params", [{"threshold": 1.5}, {"threshold": "high"}, {"strict": True}])
def test_bad_params_are_rejected(params):
    # threshold is a probability (0..1); unknown keys are errors (rewardkit.Params forbids extras).
    with pytest.raises(pydantic.ValidationError):
        Profanity(params)


def test_contract(reward_contract):
    reward_contract(Profanity)
    reward_contract(Profanity, {"threshold": 0.5, "include_prompt": True})


def test_found_through_its_entry_point(reward_registry):
    # Needs the package installed: rewardkit finds it under the `rewardkit` entry-point group.
    info = reward_registry.get("profanity")
    assert info.cls is Profanity
    assert info.plugin == "rewardkit-profanity"
