"""Checkpoints that are either complete or absent.

A checkpoint is written into a temporary directory and renamed into place
only when every file is on disk (``os.replace`` is atomic on one file
system), so a crash mid-write never leaves a checkpoint that looks complete.
``checkpoint.json`` is the last file written and marks completeness.

Weights (LoRA + value head) are safetensors. Optimizer, scheduler and RNG
states are torch files of tensors and plain containers, loaded back with
``weights_only=True`` so nothing arbitrary is ever unpickled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
MARKER = "checkpoint.json"


def rng_state() -> dict:
    """Every random generator's state (python, numpy, torch CPU and CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> dict:
    # tensors and numbers only, so the file loads with weights_only=True
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def trainable_state(policy) -> dict[str, torch.Tensor]:
    """The tensors PPO changes: LoRA weights and the value head, by name."""
    return {n: p.detach().contiguous().cpu() for n, p in policy.named_parameters() if p.requires_grad}


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or ``None``."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if (p / MARKER).is_file())
    return done[-1] if done else None


def save(run_dir: Path, step: int, *, policy, state: dict, rng_by_rank: list[dict]) -> Path:
    """Write checkpoint ``step`` atomically (call on the main process only).

    :param state: optimizer, scheduler, KL controller, reward normaliser and
        data position, as plain state dicts.
    :param rng_by_rank: one :func:`rng_state` per process.
    """
    from safetensors.torch import save_file

    final = step_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(trainable_state(policy), str(tmp / "trainable.safetensors"))
    torch.save(state, tmp / "trainer_state.pt")
    torch.save(rng_by_rank, tmp / "rng_state.pt")
    (tmp / MARKER).write_text(json.dumps({"step": step, "world_size": len(rng_by_rank)}) + "\n")
    if final.exists():  # a re-run of the same step replaces the old one
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load(path: Path, policy) -> tuple[dict, list[dict], int]:
    """Load checkpoint ``path`` into ``policy``; returns ``(state, rng_by_rank, step)``."""
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    missing = set(weights) - {n for n, _ in policy.named_parameters()}
    if missing:
        raise RuntimeError(f"checkpoint {path} has weights the policy lacks: {sorted(missing)[:3]}")
    policy.load_state_dict(weights, strict=False)
    state = torch.load(path / "trainer_state.pt", weights_only=True)
    rng = torch.load(path / "rng_state.pt", weights_only=True)
    step = json.loads((path / MARKER).read_text())["step"]
    return state, rng, step
