"""The run directory: what a run leaves behind for inspection, resume and eval.

Layout::

    RUN_DIR/
      recipe.yaml          the resolved recipe (every default filled in)
      recipe.source.yaml   the recipe file as written
      env.json             package versions, plugins used, command, devices
      metrics.jsonl        one line per PPO step
      samples.jsonl        sampled completions with per-component scores
      checkpoints/step-NNNNNN/   see rewardkit.checkpoint
      final/adapter/       PEFT adapter (PeftModel.from_pretrained loads it)
      final/value_head.safetensors
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

PACKAGES = ("rewardkit", "torch", "transformers", "peft", "accelerate", "datasets", "pluggy", "pydantic")


def expand_dir(template: str, recipe_path: Path) -> Path:
    """Fill ``{recipe}`` (file stem) and ``{time}`` (UTC, to the second) in ``output.dir``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(template.replace("{recipe}", recipe_path.stem).replace("{time}", stamp))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def write_header(run_dir: Path, *, recipe, source_text: str, plugins: list[dict], extra: dict) -> None:
    """Write ``recipe.yaml``, ``recipe.source.yaml`` and ``env.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = recipe.model_dump(mode="json")
    (run_dir / "recipe.yaml").write_text(
        "# resolved recipe: every default filled in (rewardkit run --resume uses this file)\n"
        + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    (run_dir / "recipe.source.yaml").write_text(source_text)
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": sys.argv,
        "versions": {p: _version(p) for p in PACKAGES},
        "plugins": plugins,
        **extra,
    }
    (run_dir / "env.json").write_text(json.dumps(env, indent=2) + "\n")


class JsonlWriter:
    """Appends one JSON object per line and flushes, so a crash loses nothing written."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop lines whose ``step`` is beyond ``step`` (used on resume)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", -1) <= step]
        self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    """All records of a JSONL file (empty list when it does not exist)."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
