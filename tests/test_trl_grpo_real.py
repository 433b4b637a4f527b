"""rewardkit rewards in TRL's real GRPOTrainer (not a stub): what TRL logs per reward is rewardkit's own score.

A tiny random GPT-2 and a word-level tokenizer are built here (offline, seconds);
the rewards are a recipe's: toxicity on the shipped tiny classifier plus length.
"""

import math

import pytest

pytest.importorskip("trl")


def _tiny_causal_lm():
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = "hello there how are you fine thanks the meeting is at noon please come idiot stupid".split()
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["<pad>", "<eos>", "<unk>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                       bos_token_id=1, eos_token_id=1, pad_token_id=0))
    return model, fast


class _Recording:
    """A reward function that remembers the completions TRL passed it (TRL names it by ``__name__``)."""

    def __init__(self, func):
        self.func, self.__name__, self.calls = func, func.__name__, []

    def __call__(self, *args, **kwargs):
        self.calls.append(list(kwargs["completions"]))
        return self.func(*args, **kwargs)


@pytest.mark.slow
def test_grpo_trainer_logs_rewardkits_own_scores(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.compose import ComposedReward
    from rewardkit.plugins import load_registry
    from rewardkit.recipe.schema import RewardSpec
    from rewardkit.reward import Batch
    from rewardkit.trl import reward_funcs

    specs = [RewardSpec(name="toxicity", params={"model": "asset:tiny-hate-roberta"}),
             RewardSpec(name="length", weight=0.2, params={"target_words": 3})]
    funcs = reward_funcs(specs)
    recording = [_Recording(f) for f in funcs]
    model, tokenizer = _tiny_causal_lm()
    data = Dataset.from_dict({"prompt": ["hello there how are you", "the meeting is at noon"] * 4})
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=2, logging_steps=1, report_to=[],
                      reward_weights=funcs.weights, use_cpu=True, save_strategy="no", bf16=False, seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=recording, args=args,
                          train_dataset=data)
    trainer.train()

    logs = [h for h in trainer.state.log_history if "rewards/toxicity/mean" in h]
    assert len(logs) == 2
    composed = ComposedReward.from_specs(specs, load_registry([]))
    for step, log in enumerate(logs):
        completions = recording[0].calls[step]
        assert recording[1].calls[step] == completions  # both rewards saw the same completions
        ours = composed.score_components(Batch.from_lists(completions))
        for name in ("toxicity", "length"):
            mean = sum(ours[name]) / len(ours[name])
            assert math.isclose(log[f"rewards/{name}/mean"], mean, rel_tol=1e-5, abs_tol=1e-6), (step, name)
        # and TRL's total is the recipe's weighted sum
        weighted = [t + 0.2 * n for t, n in zip(ours["toxicity"], ours["length"])]
        assert math.isclose(log["reward"], sum(weighted) / len(weighted), rel_tol=1e-5, abs_tol=1e-6)


ASYNC_REWARD = '''
import asyncio, rewardkit

class SlowWords(rewardkit.Reward):
    """Words per completion, after an await (as an API judge would)."""
    name = "slow_words"
    async def score(self, batch):
        await asyncio.sleep(0.05)
        return [float(len(c.split())) for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(SlowWords)
'''


@pytest.mark.slow
def test_async_rewards_go_through_trls_async_path(tmp_path, monkeypatch):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import is_async_callable

    from rewardkit.plugins import load_registry
    from rewardkit.recipe.schema import RewardSpec
    from rewardkit.trl import AsyncRewardFunc, reward_funcs

    (tmp_path / "slow_words.py").write_text(ASYNC_REWARD)
    registry = load_registry([str(tmp_path / "slow_words.py")])
    funcs = reward_funcs([RewardSpec(name="slow_words"), RewardSpec(name="length", params={"target_words": 3})],
                         registry=registry)
    assert isinstance(funcs[0], AsyncRewardFunc) and is_async_callable(funcs[0])
    assert not is_async_callable(funcs[1])
    seen = []
    real = AsyncRewardFunc.__call__

    async def spy(self, *args, **kwargs):
        seen.append(list(kwargs["completions"]))
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(AsyncRewardFunc, "__call__", spy)
    model, tokenizer = _tiny_causal_lm()
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=2, logging_steps=1, report_to=[],
                      reward_weights=funcs.weights, use_cpu=True, save_strategy="no", bf16=False, seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=list(funcs), args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["hello there how are you"] * 8}))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/slow_words/mean" in h]
    assert len(logs) == 2 and len(seen) == 2  # awaited through TRL's async path, once per step
    for log, completions in zip(logs, seen):
        words = [len(c.split()) for c in completions]
        assert math.isclose(log["rewards/slow_words/mean"], sum(words) / len(words), rel_tol=1e-5, abs_tol=1e-6)
