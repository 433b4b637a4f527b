"""Checkpoints that are either complete or absent.

A checkpoint is written into a temporary directory and renamed into place
only when every file is on disk (``os.replace`` is atomic on one file
system), so a crash mid-write never leaves a checkpoint that looks complete.
``checkpoint.json`` is the last file written and marks completeness.

Weights (LoRA + value head) are safetensors. Optimizer, scheduler and RNG
states are torch files of tensors and plain containers, loaded back with
``weights_only=True`` so nothing arbitrary is ever unpickled.

Resume reads the newest checkpoint that is intact (:func:`newest_intact`): a
damaged one (truncated or garbage files, what a kill or a full disk leaves)
is reported and skipped. A checkpoint that is intact but does not fit the
policy (the recipe was edited: another LoRA rank, other target modules) is
an error naming the recipe field, never a fallback. A write that fails (a
full disk) removes its temporary folder and says so; temporary folders that
a killed process left are removed at the next start or resume
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rewardkit.errors import RewardkitError

CHECKPOINTS = "checkpoints"
MARKER = "checkpoint.json"


class CheckpointError(RewardkitError):
    """A checkpoint cannot be written, or none can be resumed from."""


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


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove ``checkpoints/.step-N.tmp-PID`` folders left by a process that died mid-write.

    Call it only while holding the run directory (:class:`rewardkit.rundir.lock`):
    then no other process can be writing one. Returns what was removed.
    """
    root = Path(run_dir) / CHECKPOINTS
    stale = sorted(root.glob(".step-*.tmp-*")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _is_disk_full(exc: BaseException, where: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a failed write as RuntimeError("[enforce fail at inline_container.cc...] ...")
    text = str(exc).lower()
    if "no space left" in text or "disk quota" in text:
        return True
    if isinstance(exc, RuntimeError) and ("inline_container" in text or "file write failed" in text):
        try:
            return shutil.disk_usage(where).free < 64 * 2**20
        except OSError:
            return True
    return False


def save(run_dir: Path, step: int, *, policy, state: dict, rng_by_rank: list[dict]) -> Path:
    """Write checkpoint ``step`` atomically (call on the main process only).

    :param state: optimizer, scheduler, KL controller, reward normaliser and
        data position, as plain state dicts.
    :param rng_by_rank: one :func:`rng_state` per process.
    :raises CheckpointError: the write failed (the disk is full, say, and
        where); the temporary folder is removed and older checkpoints stay.
    """
    final = step_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        _write(tmp, step, policy=policy, state=state, rng_by_rank=rng_by_rank)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = latest(run_dir)
        kept_note = f"the newest complete checkpoint, {kept}, is kept" if kept else "no earlier checkpoint exists"
        if _is_disk_full(exc, final.parent):
            raise CheckpointError(f"the disk is full: checkpoint step {step} could not be written to {final.parent} "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). The partial "
                                  f"checkpoint was removed; {kept_note}. Free some space and resume with "
                                  f"`rewardkit run --resume {run_dir}`") from None
        raise CheckpointError(f"checkpoint step {step} could not be written to {final.parent} "
                              f"({type(exc).__name__}: {exc}); the partial checkpoint was removed; "
                              f"{kept_note}") from exc
    if final.exists():  # a re-run of the same step replaces the old one
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _write(tmp: Path, step: int, *, policy, state: dict, rng_by_rank: list[dict]) -> None:
    from safetensors.torch import save_file

    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(trainable_state(policy), str(tmp / "trainable.safetensors"))
    torch.save(state, tmp / "trainer_state.pt")
    torch.save(rng_by_rank, tmp / "rng_state.pt")
    (tmp / MARKER).write_text(json.dumps({"step": step, "world_size": len(rng_by_rank)}) + "\n")


@dataclass
class Loaded:
    """Everything a checkpoint holds, read and checked, not yet applied."""

    path: Path
    step: int
    weights: dict
    state: dict
    rng: list


def read(path: Path) -> Loaded:
    """Read every file of checkpoint ``path``; ``ValueError`` saying which file is damaged and how."""
    from safetensors.torch import load_file

    def damaged(name, exc):
        return ValueError(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")

    try:
        meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
        step = int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise damaged(MARKER, exc) from None
    parts = {}
    for name, reader in (("trainable.safetensors", lambda p: load_file(str(p))),
                         ("trainer_state.pt", lambda p: torch.load(p, weights_only=True)),
                         ("rng_state.pt", lambda p: torch.load(p, weights_only=True))):
        try:
            parts[name] = reader(path / name)
        except Exception as exc:  # noqa: BLE001 - any reader failure means this file is unusable
            raise damaged(name, exc) from None
    state, rng = parts["trainer_state.pt"], parts["rng_state.pt"]
    if not isinstance(state, dict) or not isinstance(rng, list):
        raise ValueError("trainer_state.pt / rng_state.pt: not the structures rewardkit writes")
    return Loaded(path, step, parts["trainable.safetensors"], state, rng)


def newest_intact(run_dir: str | Path, note=print) -> Loaded:
    """The newest checkpoint of a run whose files all read back; damaged newer ones are reported via ``note``.

    :raises CheckpointError: there is no checkpoint, or none is intact.
    """
    root = Path(run_dir) / CHECKPOINTS
    candidates = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True) if root.is_dir() else []
    damaged = []
    for path in candidates:
        try:
            loaded = read(path)
        except ValueError as exc:
            damaged.append(f"{path}: {exc}")
            note(f"warning: checkpoint {path} is damaged ({exc}); trying an older one")
            continue
        if damaged:
            note(f"note: resuming from {path}, the newest intact checkpoint")
        return loaded
    if damaged:
        raise CheckpointError("--resume: every checkpoint is damaged:\n  " + "\n  ".join(damaged))
    raise CheckpointError(f"--resume: no complete checkpoint in {root}")


def mismatch(weights: dict, policy) -> str | None:
    """Why ``weights`` do not fit ``policy`` (naming the recipe field), or ``None`` when they fit."""
    own = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or extra:
        example = (extra or missing)[0]
        return (f"lora.target_modules (or model.name): the checkpoint's adapter covers other layers than the "
                f"recipe's ({len(extra)} checkpoint tensors the policy lacks, {len(missing)} policy tensors the "
                f"checkpoint lacks, e.g. {example})")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            if "lora_A" in name:
                return (f"lora.r: the checkpoint was trained with rank {tensor.shape[0]}, the recipe asks for "
                        f"{own[name].shape[0]} ({name})")
            if "lora_B" in name:
                return (f"lora.r: the checkpoint was trained with rank {tensor.shape[1]}, the recipe asks for "
                        f"{own[name].shape[1]} ({name})")
            return (f"model.name: {name} has shape {tuple(tensor.shape)} in the checkpoint and "
                    f"{tuple(own[name].shape)} in the recipe's model")
    return None


def load(path: Path, policy) -> tuple[dict, list[dict], int]:
    """Load checkpoint ``path`` into ``policy``; returns ``(state, rng_by_rank, step)``.

    :raises ValueError: a file is damaged. :raises CheckpointError: the weights do not fit the policy.
    """
    loaded = read(path)
    apply_weights(loaded, policy)
    return loaded.state, loaded.rng, loaded.step


def apply_weights(loaded: Loaded, policy) -> None:
    """Copy a checkpoint's weights into ``policy``, after checking that they fit."""
    problem = mismatch(loaded.weights, policy)
    if problem:
        raise CheckpointError(f"checkpoint {loaded.path} does not fit the recipe: {problem}")
    policy.load_state_dict(loaded.weights, strict=False)
