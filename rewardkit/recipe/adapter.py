"""A run that starts from an existing LoRA adapter trains that adapter.

Its rank, alpha, target modules, dropout and bias are the adapter's own
(``adapter_config.json``); a ``lora:`` value the recipe sets explicitly
that says otherwise would be silently ignored, so it is an error instead.
``lora:`` fields the recipe leaves at their defaults are simply taken from
the adapter. Reading the adapter's JSON costs nothing, so ``rewardkit
validate`` runs this check for a local adapter directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from rewardkit.recipe.schema import LoraSection

#: recipe ``lora:`` field -> key in peft's ``adapter_config.json``
_PEFT_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules",
              "bias": "bias"}


def adapter_problems(path: str | Path, lora: LoraSection) -> list[tuple[tuple, str]]:
    """Where the recipe's explicit ``lora:`` settings disagree with the adapter at ``path``.

    :returns: ``(key path, message)`` pairs, empty when they agree.
    """
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        return [(("model", "adapter"), f"{path} is not a LoRA adapter directory (it has no adapter_config.json)")]
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [(("model", "adapter"), f"cannot read {config_file}: {exc}")]
    theirs = {name: saved.get(key) for name, key in _PEFT_KEYS.items()}
    theirs["target_modules"] = sorted(theirs["target_modules"] or [])
    theirs["bias"] = theirs["bias"] or "none"
    problems = []
    if theirs["bias"] != "none":
        problems.append((("model", "adapter"),
                         f"the adapter in {path} trains biases (bias: {theirs['bias']}); only bias: none is "
                         "supported, because switching an adapter off does not revert trained biases"))
    for name in sorted(lora.model_fields_set & set(theirs)):
        ours = getattr(lora, name)
        ours = sorted(ours) if name == "target_modules" else ours
        if ours != theirs[name]:
            problems.append((("lora", name),
                             f"is {ours!r}, but the starting adapter (model.adapter: {path}) has {theirs[name]!r}; "
                             f"a run trains the adapter it starts from: remove lora.{name} or make it match"))
    return problems
