"""The recipe: one pydantic model per concern, all ``extra="forbid"``.

Names and defaults follow the seed notebook (``SEED-FACTS.md``) so that
``recipes/detox.yaml`` reads like the experiment it reproduces. Reward
``params`` are validated separately against each reward's own ``Params``
model (see :mod:`rewardkit.recipe.validate`), because which rewards exist is
only known once plugins are loaded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SEED_TEMPLATE = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors."""

    # NaN and inf are refused in every float field: a recipe that validates trains on finite numbers
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelSection(Section):
    """The policy model."""

    name: str = Field(description="hub id, local directory, or asset:NAME for a shipped tiny model")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that supports it, float32 on CPU")
    trust_remote_code: bool = Field(False, description="allow code from the model repo; off unless you opt in")
    revision: str | None = None
    adapter: str | None = Field(None, description="start from this existing LoRA adapter directory")


class LoraSection(Section):
    """The LoRA adapter trained by PPO (the seed's LoraConfig)."""

    r: int = Field(32, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q", "v"], min_length=1)
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="only none is supported: the reference policy is the model with the adapter off, "
                            "and switching an adapter off does not revert trained biases")

    @model_validator(mode="after")
    def _bias_none(self):
        if self.bias != "none":
            raise ValueError(f"lora.bias: {self.bias!r} is not supported: the reference policy is the model with "
                             "its adapter switched off, which does not revert trained biases, so the reference "
                             "would drift with training; use bias: none")
        return self


class DataSection(Section):
    """Where prompts come from and how they are shaped."""

    source: str = Field(description="hub dataset name, local .json/.jsonl/.csv/.parquet file, or asset:NAME")
    split: str = "train"
    text_field: str = "dialogue"
    reference_field: str | None = Field("summary", description="column with the reference output, or null")
    min_chars: int = Field(200, ge=0, description="keep rows whose text has more than this many characters")
    max_chars: int | None = Field(1000, ge=1, description="... and at most this many")
    template: str = Field(SEED_TEMPLATE, description="prompt template; {text_field} is replaced by the text")
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    shuffle: bool = False
    max_prompt_tokens: int = Field(512, ge=8, description="longer prompts are truncated and counted")
    limit: int | None = Field(None, ge=1, description="use only the first N rows (after filtering)")

    @model_validator(mode="after")
    def _chars_ordered(self):
        if self.max_chars is not None and self.max_chars <= self.min_chars:
            raise ValueError(f"data.max_chars ({self.max_chars}) must be greater than data.min_chars ({self.min_chars})")
        if "{" + self.text_field + "}" not in self.template:
            raise ValueError(f"data.template must contain '{{{self.text_field}}}' (data.text_field)")
        return self


class RewardSpec(Section):
    """One component of the composed reward (**contract**)."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)
    normalize: bool = Field(False, description="scale by a running mean/std before weighting")
    clip: float | None = Field(None, gt=0.0, description="clip the (normalised) component to [-clip, clip]")
    on_error: Literal["stop", "skip", "zero"] = Field(
        "stop", description="when the reward raises or times out: stop the run (naming the reward), skip the "
                            "samples (masked out of the loss, counted), or score them 0.0 (counted)")
    timeout: float | None = Field(
        None, gt=0.0, description="seconds per score() call; only for rewards whose score is async def "
                                  "(a synchronous call cannot be interrupted)")
    max_skipped_frac: float | None = Field(
        None, ge=0.0, le=1.0, description="stop the run when a step leaves more than this fraction of samples "
                                          "without a score of this reward (skipped or None); null: no limit")
    cache: bool = Field(False, description="cache scores by content hash; only for rewards that declare "
                                           "themselves deterministic")


class LengthRange(Section):
    """Draw ``max_new_tokens`` per prompt uniformly from [min, max] (the seed used 100..400)."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.max < self.min:
            raise ValueError(f"generation.max_new_tokens.max ({self.max}) must be >= .min ({self.min})")
        return self


class GenerationSection(Section):
    """Sampling settings for rollouts (the seed's generation_kwargs)."""

    max_new_tokens: int | LengthRange = 32
    min_length: int = Field(5, ge=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0)
    do_sample: Literal[True] = True


class PPOSection(Section):
    """PPO hyper-parameters, named as in the seed (TRL 0.x's PPOConfig)."""

    learning_rate: float = Field(1.41e-5, gt=0.0)
    batch_size: int = Field(16, ge=1)
    mini_batch_size: int = Field(4, ge=1)
    ppo_epochs: int = Field(1, ge=1)
    max_ppo_steps: int = Field(10, ge=1)
    init_kl_coef: float = Field(0.2, ge=0.0)
    adap_kl_ctrl: bool = True
    target: float = Field(6.0, gt=0.0)
    horizon: float = Field(10000, gt=0.0)
    gamma: float = Field(1.0, ge=0.0, le=1.0)
    lam: float = Field(0.95, ge=0.0, le=1.0)
    cliprange: float = Field(0.2, gt=0.0)
    cliprange_value: float = Field(0.2, gt=0.0)
    vf_coef: float = Field(0.1, ge=0.0)
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    whiten_advantages: bool = True
    value_head_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"

    @model_validator(mode="after")
    def _minibatch_divides(self):
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"ppo.batch_size ({self.batch_size}) must be a multiple of ppo.mini_batch_size "
                             f"({self.mini_batch_size})")
        return self


class GRPOSection(Section):
    """GRPO and RLOO (``algorithm: grpo | rloo``): group sampling, the baseline, the clipped loss, the KL.

    The ``ppo:`` section still gives what every algorithm shares:
    learning_rate, batch_size (completions per step: prompts x group_size),
    mini_batch_size, max_ppo_steps, max_grad_norm, weight_decay, lr_scheduler.
    """

    group_size: int = Field(4, ge=2, description="completions per prompt (G); each prompt is encoded once")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="GRPO: divide the centred rewards by the group's std, the batch's, or not at all "
                             "(none: Dr. GRPO). RLOO does not scale")
    beta: float = Field(0.04, ge=0.0, description="KL coefficient; 0 = no KL term and no reference pass")
    kl: Literal["loss", "reward"] = Field("loss", description="KL as k3 per token in the loss, or as the "
                                                              "sequence KL subtracted from the reward")
    loss_type: Literal["grpo", "dapo", "dr_grpo"] = Field(
        "grpo", description="aggregation: per-sequence token mean then mean (grpo), token mean over the "
                            "mini-batch (dapo), token sum / (rows x max_new_tokens) (dr_grpo)")
    epsilon_low: float = Field(0.2, gt=0.0, lt=1.0, description="the ratio is clipped below at 1 - epsilon_low")
    epsilon_high: float = Field(0.2, gt=0.0, description="the ratio is clipped above at 1 + epsilon_high")
    num_iterations: int = Field(1, ge=1, description="passes over each batch (the first is on-policy)")


#: ``ppo:`` fields only PPO uses, and what takes their place under GRPO/RLOO.
PPO_ONLY = {"ppo_epochs": "grpo.num_iterations", "cliprange": "grpo.epsilon_low and grpo.epsilon_high",
            "init_kl_coef": "grpo.beta", "adap_kl_ctrl": "a fixed grpo.beta", "target": "a fixed grpo.beta",
            "horizon": "a fixed grpo.beta", "gamma": None, "lam": None, "cliprange_value": None, "vf_coef": None,
            "whiten_advantages": "grpo.scale_rewards", "value_head_dropout": None}


class OutputSection(Section):
    """Where the run directory goes and what it records."""

    dir: str = "runs/{recipe}-{time}"
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = only at the end")
    sample_every: int = Field(1, ge=0, description="steps between logged sample completions; 0 = never")
    samples_per_log: int = Field(4, ge=1)
    eval_every: int = Field(0, ge=0, description="steps between held-out checks during training (the recipe's "
                                                  "eval judges on output.eval_samples test prompts, logged as "
                                                  "eval/*); 0 = never")
    eval_samples: int = Field(16, ge=1, description="held-out prompts per check of output.eval_every")
    trackers: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"]] = Field(
        default_factory=list)


class EvalSection(Section):
    """Held-out evaluation (``rewardkit eval``)."""

    num_samples: int = Field(64, ge=1, description="held-out prompts to sample (the first N of the test split)")
    batch_size: int = Field(16, ge=1)
    judge: str | list[str] | None = Field(
        None, description="independent judge(s): classifier id/path/asset:NAME, 'profanity-check', or a reward "
                          "name; null: the seed's facebook/roberta-hate-speech-dynabench-r4-target")
    judge_label: str = Field("hate", description="the classifier label whose probability a classifier judge reports")
    judge_params: dict[str, Any] = Field(
        default_factory=dict, description="params for a reward used as judge (over the recipe's own for it)")
    judge_text: Literal["completion", "prompt+completion"] = Field(
        "completion", description="what a classifier judge reads; the seed scored prompt + ' ' + completion")
    seed: int = 1234


class Recipe(Section):
    """A whole run, as written in a YAML recipe."""

    seed: int = 42
    model: ModelSection
    lora: LoraSection = Field(default_factory=LoraSection)
    data: DataSection
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="toxicity")], min_length=1)
    plugins: list[str] = Field(default_factory=list, description="module paths or .py files to load as plugins")
    generation: GenerationSection = Field(default_factory=GenerationSection)
    algorithm: Literal["ppo", "grpo", "rloo"] = Field(
        "ppo", description="ppo (value head, GAE), grpo (group-mean baseline) or rloo (leave-one-out baseline)")
    ppo: PPOSection = Field(default_factory=PPOSection)
    grpo: GRPOSection = Field(default_factory=GRPOSection)
    output: OutputSection = Field(default_factory=OutputSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    mixed_precision: Literal["no", "fp16", "bf16"] | None = Field(
        None, description="accelerate mixed precision; null lets accelerate decide from its config")

    def resolved(self) -> dict:
        """Every field with its value (defaults filled in), leaving out those the algorithm does not use.

        What a run directory's ``recipe.yaml`` holds: it loads back as the same
        recipe, and a resume does not trip over the other algorithm's fields.
        """
        data = self.model_dump(mode="json")
        if self.algorithm == "ppo":
            data.pop("grpo")
        else:
            for name in PPO_ONLY:
                data["ppo"].pop(name)
            if self.algorithm == "rloo":
                data["grpo"].pop("scale_rewards")
        return data

    @model_validator(mode="after")
    def _fields_fit_the_algorithm(self):
        problems = []
        if self.algorithm == "ppo":
            problems += [f"grpo.{f} applies to algorithm grpo or rloo, not ppo; set algorithm: grpo (or rloo), "
                         f"or remove it" for f in sorted(self.grpo.model_fields_set)]
        else:
            for f in sorted(self.ppo.model_fields_set & set(PPO_ONLY)):
                instead = PPO_ONLY[f]
                problems.append(f"ppo.{f} is PPO-only and does nothing under algorithm: {self.algorithm}"
                                + (f"; use {instead}" if instead else "; remove it"))
            if self.algorithm == "rloo" and "scale_rewards" in self.grpo.model_fields_set:
                problems.append("grpo.scale_rewards applies to grpo only: RLOO's leave-one-out baseline is not "
                                "scaled; remove it")
            if self.ppo.batch_size % self.grpo.group_size:
                problems.append(f"ppo.batch_size ({self.ppo.batch_size}) counts completions per step and must be "
                                f"a multiple of grpo.group_size ({self.grpo.group_size})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _unique_rewards(self):
        names = [r.name for r in self.rewards]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rewards: each reward may appear once; repeated: {', '.join(dupes)}")
        return self
