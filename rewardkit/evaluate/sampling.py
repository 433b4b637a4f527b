"""Sampling the base and the tuned policy on the same held-out prompts, with the same seeds.

One model in memory: the "before" policy is :meth:`rewardkit.policy.Policy.reference`,
the tuned model with its LoRA adapter switched off, or with the adapter the run
started from (``model.adapter``) active in its place. Both sides see the
same prompts in the same batches, the same per-prompt ``max_new_tokens`` and,
batch by batch, a generator seeded the same way. Identical random numbers
on both sides ("common random numbers") do not make the samples equal, since
the distributions differ, but they remove the luck of the draw from the
comparison, so a smaller change shows through the noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rewardkit.recipe.schema import GenerationSection


@dataclass
class Generations:
    """What one policy wrote for the evaluation prompts.

    :param completions: decoded responses, special tokens removed.
    :param tokens: response length in tokens (EOS included), per prompt.
    :param seconds: wall time spent sampling.
    """

    completions: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0


def make_sampling(generation: GenerationSection, tokenizer, model_config):
    """The :class:`~rewardkit.ppo.rollout.Sampling` the runner uses for the recipe's ``generation:``."""
    from rewardkit.ppo.rollout import sampling_for

    return sampling_for(generation, tokenizer, model_config)


def response_limits(generation: GenerationSection, n: int, seed: int) -> torch.Tensor:
    """``(n,)`` max new tokens per prompt: the fixed limit, or draws from the range with ``seed``.

    Drawn once and shared by both sides, so neither gets longer budgets by chance.
    """
    spec = generation.max_new_tokens
    if isinstance(spec, int):
        return torch.full((n,), spec, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(spec.min, spec.max + 1, (n,), generator=g)


def generate(policy, tokenizer, input_ids: list[list[int]], limits: torch.Tensor, sampling, *, batch_size: int,
             seed: int, base: bool, device, progress: bool = True, desc: str = "") -> Generations:
    """Sample one response per prompt, ``batch_size`` prompts at a time.

    :param input_ids: token ids of each prompt (un-padded).
    :param limits: ``(len(input_ids),)`` max new tokens per prompt.
    :param seed: batch ``k`` samples with a generator seeded ``seed + k``.
    :param base: sample with :meth:`Policy.reference` (the policy the run started from).
    """
    import time
    from contextlib import nullcontext

    from tqdm.auto import tqdm

    from rewardkit.ppo.rollout import sample
    from rewardkit.runner import pad_prompts  # the runner's right-padding of prompts; one definition for both

    out = Generations()
    t0 = time.perf_counter()
    device = torch.device(device)
    starts = range(0, len(input_ids), batch_size)
    bar = tqdm(total=len(input_ids), desc=desc or ("base" if base else "tuned"), unit="prompt",
               disable=not progress, dynamic_ncols=True, leave=False)
    with policy.reference() if base else nullcontext():
        for k, start in enumerate(starts):
            chunk = input_ids[start:start + batch_size]
            ids, mask = pad_prompts(chunk, tokenizer.pad_token_id, device)
            generator = torch.Generator(device=device).manual_seed(seed + k)
            rollout = sample(policy, ids, mask, limits[start:start + len(chunk)], sampling, generator=generator)
            out.completions += tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)
            out.tokens += rollout.lengths.tolist()
            bar.update(len(chunk))
    bar.close()
    out.seconds = time.perf_counter() - t0
    return out
