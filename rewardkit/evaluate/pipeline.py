"""The evaluation, top to bottom: load, sample both sides, score, compare.

Phases: resolve what to do (recipe ``eval:`` section, command-line
overrides), load the judges (first, so a missing model fails before minutes
of sampling; a judge whose optional package is missing is skipped with a
warning, see :func:`load_judges`), load the policy with the adapter, sample
the held-out prompts with the adapter off and on, score both sides with
every reward of the recipe and every judge, measure quality, and compare with
:func:`rewardkit.evaluate.stats.compare`. The result is one JSON-ready dict,
the content of ``eval.json``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rewardkit.errors import RewardkitError
from rewardkit.evaluate.judges import DEFAULT_JUDGE, Judge, JudgeUnavailable, make_judge
from rewardkit.evaluate.stats import compare
from rewardkit.reward import Batch


@dataclass
class EvalOptions:
    """What to evaluate and how; ``None`` fields fall back to the recipe's ``eval:`` section.

    :param num_samples: held-out prompts to sample (the first N of the test split).
    :param judges: judge specs (see :func:`rewardkit.evaluate.judges.make_judge`).
    :param device: ``cpu``, ``cuda``, ``cuda:1``...; default: a GPU when there is one.
    :param warn: where warnings go as they happen (a judge skipped), one
        string each; default :func:`warnings.warn`. The CLI prints them to stderr.
    """

    num_samples: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    judges: list[str] = field(default_factory=list)
    judge_label: str | None = None
    device: str | None = None
    progress: bool = True
    warn: Callable[[str], None] | None = None


def load_run(run_dir: str | Path, overrides=()):
    """The recipe of a run directory and its final adapter: ``(LoadedRecipe, adapter_path)``.

    :param overrides: ``key.path=value`` strings applied to the run's recipe
        (e.g. ``eval.judge=profanity-check``).

    Relative paths in the recipe (data files, local plugins) resolve against
    the original recipe's directory, recorded as ``recipe_dir`` in ``env.json``.

    :raises RewardkitError: ``run_dir`` is not a finished run directory.
    """
    from rewardkit.recipe import load_recipe

    run_dir = Path(run_dir)
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise RewardkitError(f"{run_dir} is not a run directory: no recipe.yaml in it")
    adapter = run_dir / "final" / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise RewardkitError(f"{run_dir} has no trained adapter at {adapter} (is the run finished? "
                             f"`rewardkit run --resume {run_dir}` completes it)")
    base_dir = None
    env = run_dir / "env.json"
    if env.is_file():
        base_dir = json.loads(env.read_text()).get("recipe_dir")
    return load_recipe(recipe_path, overrides, base_dir=base_dir), adapter


def judge_specs(eval_section, options: EvalOptions) -> list[str]:
    """The judges to use: the command line's, else the recipe's, else the seed's classifier."""
    if options.judges:
        return list(options.judges)
    configured = eval_section.judge
    if configured:
        return [configured] if isinstance(configured, str) else list(configured)
    return [DEFAULT_JUDGE]


def load_judges(judges: list[Judge], warn: Callable[[str], None] | None = None) -> tuple[list[Judge], list[dict]]:
    """Load every judge; one whose optional package is missing is skipped, with one warning.

    Any other failure (a classifier that cannot be found, a bad label) still
    stops the evaluation before sampling: that judge was asked for and could
    be fixed. A missing optional package is a matter of what is installed,
    and should not cost the rest of the evaluation.

    :returns: ``(loaded judges, skipped)``; each skipped entry is the judge's
        :meth:`~rewardkit.evaluate.judges.Judge.info` plus ``spec``,
        ``package``, ``install`` (the pip command) and ``reason``.
    """
    ready, skipped = [], []
    for judge in judges:
        try:
            judge.load()
        except JudgeUnavailable as exc:
            skipped.append({**judge.info(), "spec": exc.spec, "package": exc.package, "install": exc.install,
                            "reason": str(exc)})
            message = f"{exc}. Skipping this judge; the rewards, quality and other judges are evaluated as usual."
            if warn is None:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            else:
                warn(message)
            continue
        ready.append(judge)
    return ready, skipped


def _device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate(loaded, adapter: str | Path, options: EvalOptions | None = None, *, run_dir: str | Path | None = None
             ) -> dict[str, Any]:
    """Sample base and tuned policies on held-out prompts and compare them.

    :param loaded: a :class:`rewardkit.recipe.LoadedRecipe`.
    :param adapter: the trained LoRA adapter directory.
    :param run_dir: recorded in the result (and used for nothing else).
    :returns: the content of ``eval.json`` (see :mod:`rewardkit.evaluate`).
    """
    import torch

    from rewardkit import data as data_mod
    from rewardkit.compose import ComposedReward
    from rewardkit.evaluate.sampling import generate, make_sampling, response_limits
    from rewardkit.policy import build_policy

    options = options or EvalOptions()
    recipe = loaded.recipe
    ev = recipe.eval
    num_samples = options.num_samples or ev.num_samples
    batch_size = options.batch_size or ev.batch_size
    seed = ev.seed if options.seed is None else options.seed
    device = _device(options.device)
    t_start = time.perf_counter()

    # -- judges first: a judge that cannot load should fail before minutes of sampling
    judges = [make_judge(spec, registry=loaded.registry, rewards=recipe.rewards,
                         label=options.judge_label or ev.judge_label, params=ev.judge_params or None,
                         text=ev.judge_text, device=device, base_dir=loaded.base_dir)
              for spec in judge_specs(ev, options)]
    keys = [j.key for j in judges]
    if len(set(keys)) != len(keys):
        raise RewardkitError(f"two judges would be reported under the same name ({', '.join(keys)}); "
                             f"give each judge once")
    judges, skipped = load_judges(judges, options.warn)
    reward = ComposedReward.from_specs(recipe.rewards, loaded.registry, device=device)

    # -- policy and prompts
    torch.manual_seed(seed)
    model_cfg = recipe.model.model_copy(update={"adapter": str(Path(adapter).resolve())})
    # "before" is the policy the run started from: the base model, or the run's starting adapter
    policy, tokenizer = build_policy(model_cfg, recipe.lora, value_head_dropout=0.0, device=torch.device(device),
                                     base_dir=loaded.base_dir, reference_adapter=recipe.model.adapter)
    _, test = data_mod.prepare(recipe.data, tokenizer, seed=recipe.seed, base_dir=loaded.base_dir,
                               needs_references=reward.needs_references)
    n = min(num_samples, len(test))
    prompts, input_ids = test.prompts[:n], test.input_ids[:n]
    references = None if test.references is None else test.references[:n]
    metadata = test.metadata[:n]

    # -- sample both sides with the same prompts, limits and seeds
    sampling = make_sampling(recipe.generation, tokenizer, policy.config)
    limits = response_limits(recipe.generation, n, seed)
    common = dict(batch_size=batch_size, seed=seed, device=device, progress=options.progress)
    before = generate(policy, tokenizer, input_ids, limits, sampling, base=True, desc="sampling base", **common)
    after = generate(policy, tokenizer, input_ids, limits, sampling, base=False, desc="sampling tuned", **common)
    del policy

    # -- score: both sides in one batch, so normalised components share one set of statistics
    t_score = time.perf_counter()
    both = Batch(prompts * 2, before.completions + after.completions,
                 None if references is None else references * 2, metadata * 2)
    scored = _score_all(reward, judges, both, progress=options.progress)
    halves = {name: (vals[:n], vals[n:]) for name, vals in scored.items()}
    score_s = time.perf_counter() - t_score

    header = {
        "run_dir": None if run_dir is None else str(run_dir),
        "recipe": str(loaded.path),
        "adapter": str(adapter),
        "start_adapter": recipe.model.adapter,
        "model": recipe.model.name,
        "device": device,
        "config": {"num_samples": n, "requested_samples": num_samples, "test_prompts": len(test),
                   "batch_size": batch_size, "seed": seed, "judges": judge_specs(ev, options),
                   "generation": recipe.generation.model_dump(mode="json")},
    }
    weights = {spec.name: spec.weight for spec in recipe.rewards}
    result = build_result(header, prompts, references, before, after, halves, [j.info() for j in judges], weights,
                          seed=seed, skipped_judges=skipped)
    result["timing"] = {"sample_base_s": before.seconds, "sample_tuned_s": after.seconds, "score_s": score_s,
                        "total_s": time.perf_counter() - t_start}
    return result


def build_result(header: dict, prompts: list[str], references: list[str] | None, before, after,
                 scores: dict[str, tuple[list[float], list[float]]], judges: list[dict], weights: dict[str, float],
                 *, seed: int, skipped_judges: list[dict] = ()) -> dict[str, Any]:
    """Assemble ``eval.json`` from what was sampled and scored.

    :param header: run_dir, recipe, adapter, model, device, config (copied in as is).
    :param before: :class:`~rewardkit.evaluate.sampling.Generations` of the base policy; ``after``: tuned.
    :param scores: ``(before, after)`` per ``reward/total``, ``reward/<name>`` and ``judge/<key>``.
    :param judges: each judge's :meth:`~rewardkit.evaluate.judges.Judge.info`, in order.
    :param weights: each reward component's weight, in recipe order.
    :param seed: seeds the bootstrap intervals.
    :param skipped_judges: the judges :func:`load_judges` skipped (recorded as ``skipped_judges``).
    """
    quality = _quality(before, after, references)
    result: dict[str, Any] = {
        "rewardkit_version": _version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **header,
        "rewards": {name: {"weight": weights.get(name), **compare(*_scored_pairs(*scores[f"reward/{name}"]),
                                                                  seed=seed)}
                    for name in ["total", *weights]},
        "judges": {j["key"]: {**j, **compare(*scores[f"judge/{j['key']}"], seed=seed)} for j in judges},
        "skipped_judges": list(skipped_judges),
        "quality": {k: compare(b, a, seed=seed) for k, (b, a) in quality.items()},
    }
    result["headline"] = headline(result)
    result["samples"] = _samples(prompts, references, before, after, scores, quality, [j["key"] for j in judges],
                                 list(weights))
    return result


def _scored_pairs(before: list, after: list) -> tuple[list[float], list[float]]:
    """The (before, after) pairs where both sides have a score: a reward may return None for a sample."""
    pairs = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    return [b for b, _ in pairs], [a for _, a in pairs]


def _score_all(reward, judges: list[Judge], batch: Batch, *, progress: bool) -> dict[str, list[float]]:
    """Every score of ``batch``: ``reward/total``, ``reward/<name>`` and ``judge/<key>``.

    Where a reward gave a sample no score, its component and the total are ``None``.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=1 + len(judges), desc="scoring", unit="scorer", disable=not progress, leave=False)
    scores = reward(batch, update_stats=False)
    total = [t if ok else None for t, ok in zip(scores.total, scores.valid)]  # not the 0.0 placeholder
    out = {"reward/total": total, **{f"reward/{k}": v for k, v in scores.components.items()}}
    bar.update(1)
    for judge in judges:
        out[f"judge/{judge.key}"] = judge.score(batch)
        bar.update(1)
    bar.close()
    return out


def _quality(before, after, references) -> dict[str, tuple[list[float], list[float]]]:
    """Does it still summarise? ROUGE-L F1 against the references, words, tokens, empty outputs."""
    words = lambda gens: [float(len(c.split())) for c in gens.completions]  # noqa: E731
    out = {
        "words": (words(before), words(after)),
        "tokens": ([float(t) for t in before.tokens], [float(t) for t in after.tokens]),
        "empty": ([float(not c.strip()) for c in before.completions], [float(not c.strip()) for c in after.completions]),
    }
    if references is not None:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        rouge = lambda gens: [float(scorer.score(r, c)["rougeL"].fmeasure)  # noqa: E731
                              for r, c in zip(references, gens.completions)]
        out = {"rougeL": (rouge(before), rouge(after)), **out}
    return out


def _samples(prompts, references, before, after, halves, quality, judge_keys, reward_names) -> list[dict]:
    """One record per prompt: both completions and every score, for the qualitative table."""
    records = []
    for i, prompt in enumerate(prompts):
        def side(k: int, gens) -> dict:
            return {
                "completion": gens.completions[i],
                "reward_total": halves["reward/total"][k][i],
                "rewards": {name: halves[f"reward/{name}"][k][i] for name in reward_names},
                "judges": {key: halves[f"judge/{key}"][k][i] for key in judge_keys},
                "quality": {q: vals[k][i] for q, vals in quality.items()},
            }

        records.append({"index": i, "prompt": prompt,
                        "reference": None if references is None else references[i],
                        "before": side(0, before), "after": side(1, after)})
    return records


def lead_judge(judges: dict[str, dict]) -> str | None:
    """The judge a reader should look at first: the first independent one, else the first; ``None`` if none."""
    independent = [key for key, j in judges.items() if j["independent"]]
    return (independent or list(judges) or [None])[0]


def headline(result: dict) -> dict:
    """The few numbers a reader wants first: the lead judge and the total reward, before -> after.

    ``improved`` follows each measure's direction (lower is better for a
    toxicity probability, higher for a reward). ``independent_judge`` says
    whether any judge independent of the reward ran (``False`` when every
    judge was skipped or each shares a model with a reward).
    """
    out: dict[str, Any] = {"independent_judge": any(j["independent"] for j in result["judges"].values())}
    key = lead_judge(result["judges"])
    if key is not None:
        j = result["judges"][key]
        diff = j["diff"]
        out["judge"] = {"key": key, "title": j["title"], "before": j["before"]["mean"], "after": j["after"]["mean"],
                        "relative_change": j["relative_change"], "ci": j["ci"],
                        "improved": None if diff is None else (diff > 0) == j["higher_is_better"] and diff != 0}
    total = result["rewards"]["total"]
    out["reward"] = {"before": total["before"]["mean"], "after": total["after"]["mean"], "ci": total["ci"],
                     "improved": None if total["diff"] is None else total["diff"] > 0}
    return out


def summary_of(result: dict) -> dict:
    """``eval.json`` without the per-sample records (what ``rewardkit eval --json`` prints)."""
    return {k: v for k, v in result.items() if k != "samples"}


def _weight(recipe, name: str) -> float | None:
    return next((r.weight for r in recipe.rewards if r.name == name), None)


def _version() -> str:
    from rewardkit import __version__

    return __version__


__all__ = ["EvalOptions", "build_result", "evaluate", "headline", "judge_specs", "lead_judge", "load_judges",
           "load_run", "summary_of"]
