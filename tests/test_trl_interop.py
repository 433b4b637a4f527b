"""rewardkit rewards as TRL reward functions, called exactly as the installed trl calls them.

The main tests run trl's own ``GRPOTrainer._calculate_rewards`` and
``RLOOTrainer._calculate_rewards`` (trl 1.16) on a stub trainer that has
just the attributes those methods read, so the call (keyword arguments,
dataset columns, ``trainer_state``, ``log_metric``...) is trl's, not ours.
"""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from trl.trainer.grpo_trainer import GRPOTrainer  # noqa: E402
from trl.trainer.rloo_trainer import RLOOTrainer  # noqa: E402
from trl.trainer.utils import get_callable_name  # noqa: E402

from rewardkit.compose import ComposedReward  # noqa: E402
from rewardkit.errors import RewardkitError  # noqa: E402
from rewardkit.plugins import load_registry  # noqa: E402
from rewardkit.recipe.schema import RewardSpec  # noqa: E402
from rewardkit.testing import make_batch  # noqa: E402
from rewardkit.trl import RewardFunc, message_text, reward_funcs  # noqa: E402

SPECS = [
    {"name": "length", "weight": 0.5, "params": {"target_words": 3}},
    {"name": "rouge", "weight": 2.0, "params": {"metric": "rouge1", "use_stemmer": False}},
]
PROMPTS = ["Summarize: the cat sat on the mat.", "Summarize: a dog ran home."]
COMPLETIONS = ["the cat sat", "one two three four five"]
INPUTS = [  # what trl's dataloader yields: one dict per sample, dataset columns included
    {"prompt": PROMPTS[0], "summary": "the cat sat", "source": "a"},
    {"prompt": PROMPTS[1], "summary": "a dog ran", "source": "b"},
]
# Hand-computed components:
#   length (target 3, linear): "the cat sat" has 3 words -> 0; 5 words -> -2.
#   rouge1 F vs the summary: identical -> 1.0; no word in common -> 0.0.
EXPECTED = torch.tensor([[0.0, 1.0], [-2.0, 0.0]])


def stub_trainer(funcs, metrics=None):
    """The attributes of a trainer that ``_calculate_rewards`` (and its profiling context) read."""
    return SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        reward_funcs=list(funcs),
        reward_processing_classes=[None] * len(funcs),
        reward_func_names=[get_callable_name(f) for f in funcs],
        state=SimpleNamespace(global_step=0),
        args=SimpleNamespace(report_to=[]),
        environments=None,
        _log_completion_extra=lambda column, values: None,
        _log_metric=lambda name, value: (metrics if metrics is not None else {}).setdefault(name, value),
    )


@pytest.mark.parametrize("trainer", [GRPOTrainer, RLOOTrainer])
def test_trl_calls_one_function_per_component(trainer):
    funcs = reward_funcs(SPECS)
    assert [get_callable_name(f) for f in funcs] == ["length", "rouge"]  # trl logs rewards/<name>/mean
    assert funcs.weights == [0.5, 2.0]
    per_func = trainer._calculate_rewards(stub_trainer(funcs), INPUTS, PROMPTS, COMPLETIONS, [[1], [2]])
    assert torch.equal(per_func, EXPECTED)
    # trl's default aggregation multiplies by reward_weights and sums: rewardkit's total.
    total = (per_func * torch.tensor(funcs.weights)).nansum(dim=1)
    composed = ComposedReward.from_specs([RewardSpec(**s) for s in SPECS], load_registry())
    expected_total = composed(make_batch(COMPLETIONS, prompts=PROMPTS, references=["the cat sat", "a dog ran"])).total
    assert total.tolist() == expected_total == [2.0, -1.0]  # 0.5*0 + 2*1 and 0.5*(-2) + 2*0


def test_conversational_completions():
    funcs = reward_funcs(SPECS)
    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] for p in PROMPTS]
    completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    per_func = GRPOTrainer._calculate_rewards(stub_trainer(funcs), INPUTS, prompts, completions, [[1], [2]])
    assert torch.equal(per_func, EXPECTED)


def test_combined_form_returns_the_weighted_total_and_logs_components():
    funcs = reward_funcs(SPECS, combine=True, name="detox")
    assert [get_callable_name(f) for f in funcs] == ["detox"] and funcs.weights == [1.0]
    metrics = {}
    per_func = GRPOTrainer._calculate_rewards(stub_trainer(funcs, metrics), INPUTS, PROMPTS, COMPLETIONS, [[1], [2]])
    assert per_func.tolist() == [[2.0], [-1.0]]
    # Means of the raw components over the two samples: length (0 - 2)/2, rouge (1 + 0)/2.
    assert metrics == {"rewardkit/length": -1.0, "rewardkit/rouge": 0.5}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers deprecations inside TrainingArguments
def test_weights_fit_trl_config(tmp_path):
    from trl import GRPOConfig

    funcs = reward_funcs(SPECS)
    config = GRPOConfig(output_dir=str(tmp_path), reward_weights=funcs.weights, use_cpu=True, bf16=False,
                        report_to=[])
    assert config.reward_weights == [0.5, 2.0]


def test_references_column_is_configurable_and_required_when_needed():
    funcs = reward_funcs(SPECS, reference_column="gold")
    # rouge of "the cat sat" vs gold "the cat" is 2*(2/3*1)/(2/3+1) = 0.8 (rouge1 F).
    out = funcs[1](prompts=PROMPTS[:1], completions=COMPLETIONS[:1], completion_ids=[[1]],
                   gold=["the cat"], summary=["unused"], trainer_state=None)
    assert out == [pytest.approx(0.8)]
    with pytest.raises(RewardkitError, match=r"reward\(s\) rouge need references, but the dataset has no column "
                                             r"'gold' \(columns: summary\)"):
        funcs[1](prompts=PROMPTS[:1], completions=COMPLETIONS[:1], completion_ids=[[1]], summary=["x"])
    # The length reward needs no references, so a dataset without them is fine for it.
    assert funcs[0](prompts=PROMPTS[:1], completions=COMPLETIONS[:1], completion_ids=[[1]]) == [0.0]


def test_dataset_columns_become_metadata():
    func = reward_funcs(SPECS)[0]
    assert isinstance(func, RewardFunc)
    batch = func.batch(PROMPTS, COMPLETIONS, summary=["s1", "s2"], source=["a", "b"], trainer_state=object(),
                       log_metric=print, completion_ids=[[1], [2]])
    assert list(batch.references) == ["s1", "s2"]
    assert list(batch.metadata) == [{"source": "a"}, {"source": "b"}]


def test_message_text():
    assert message_text("plain") == "plain"
    assert message_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"},
                         {"role": "assistant", "content": "b"}]) == "a\nb"
    assert message_text([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], prompt=True) == "u"
    blocks = [{"role": "assistant", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]}]
    assert message_text(blocks) == "hi"


def test_recipe_path(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(textwrap.dedent("""\
        model: {name: asset:tiny-t5}
        data: {source: org/dialogues, reference_field: ref}
        rewards:
          - {name: length, weight: 0.25, params: {target_words: 3}}
          - {name: rouge, weight: 2.0}
        """))
    funcs = reward_funcs(recipe)
    assert [f.__name__ for f in funcs] == ["length", "rouge"] and funcs.weights == [0.25, 2.0]
    # The recipe's data.reference_field names the column trl passes.
    assert funcs[1](prompts=["p"], completions=["the cat"], ref=["the cat"]) == [1.0]


def test_bad_specs_are_reported_together():
    from rewardkit.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        reward_funcs([{"name": "lenght"}, {"name": "rouge", "params": {"metric": "bleu"}}])
    text = str(info.value)
    assert "rewards[0].name: unknown reward 'lenght'; did you mean 'length'?" in text
    assert "rewards[1].params.metric" in text
