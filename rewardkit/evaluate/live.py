"""A small held-out check during training (``output.eval_every``), so reward hacking shows while a run goes on.

Every ``eval_every`` steps the main process samples the first
``output.eval_samples`` prompts of the test split with the current policy
(the recipe's sampling, seeded from ``eval.seed``, so every check sees the
same prompts, budgets and random numbers) and logs, beside the training
metrics: each of the recipe's eval judges (``eval/<judge>``), the words per
completion and the share of empty ones. It draws from its own seeded
generators, so the training run's random numbers, and a resumed run, are
unaffected.
"""

from __future__ import annotations

import statistics
import sys

from rewardkit.reward import Batch


class HeldOutCheck:
    """The check; built once per run (judges load here), called with the policy every ``eval_every`` steps.

    :param loaded: the run's :class:`rewardkit.recipe.LoadedRecipe`.
    :param test_set: the run's held-out :class:`rewardkit.data.PromptSet`.
    """

    def __init__(self, loaded, test_set, tokenizer, model_config, *, device: str):
        from rewardkit.evaluate.judges import make_judge
        from rewardkit.evaluate.pipeline import EvalOptions, judge_specs, load_judges
        from rewardkit.evaluate.sampling import make_sampling, response_limits

        recipe = loaded.recipe
        ev = recipe.eval
        judges = [make_judge(spec, registry=loaded.registry, rewards=recipe.rewards, label=ev.judge_label,
                             params=ev.judge_params or None, text=ev.judge_text, device=device,
                             base_dir=loaded.base_dir)
                  for spec in judge_specs(ev, EvalOptions())]
        self.judges, _ = load_judges(judges, lambda m: print(f"warning: {m}", file=sys.stderr))
        n = min(recipe.output.eval_samples, len(test_set))
        self.prompts, self.input_ids = test_set.prompts[:n], test_set.input_ids[:n]
        self.references = None if test_set.references is None else test_set.references[:n]
        self.metadata = test_set.metadata[:n]
        self.tokenizer, self.device, self.seed, self.batch_size = tokenizer, device, ev.seed, ev.batch_size
        self.sampling = make_sampling(recipe.generation, tokenizer, model_config)
        self.limits = response_limits(recipe.generation, n, ev.seed)

    def __call__(self, policy) -> dict[str, float]:
        """``eval/<judge>`` means, ``eval/words`` and ``eval/empty_frac`` of the policy as it is now."""
        from rewardkit.evaluate.sampling import generate

        gens = generate(policy, self.tokenizer, self.input_ids, self.limits, self.sampling,
                        batch_size=self.batch_size, seed=self.seed, base=False, device=self.device, progress=False)
        batch = Batch(self.prompts, gens.completions, self.references, [dict(m) for m in self.metadata])
        out = {}
        for judge in self.judges:
            scores = [s for s in judge.score(batch) if s is not None]
            if scores:
                out[f"eval/{judge.key}"] = statistics.fmean(scores)
        words = [len(c.split()) for c in gens.completions]
        out["eval/words"] = statistics.fmean(words)
        out["eval/empty_frac"] = sum(not c.strip() for c in gens.completions) / len(words)
        return out
