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
      .rewardkit-run       claim marker: created with O_EXCL by the run that owns
                           the directory, locked while a run writes it

A directory that holds a run is never written by a new run (:func:`claim`):
an explicit ``--output-dir`` is refused, naming ``--resume``; a name from the
recipe's ``output.dir`` gets a fresh suffix (``-2``, ``-3`` ...). The claim is
an exclusive create, so two runs started in the same second cannot share a
``{time}``-stamped directory, and the lock (:func:`lock`) keeps a second
``--resume`` out of a directory another process is writing.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from rewardkit.errors import RewardkitError

#: The file whose exclusive creation claims a run directory (see :func:`claim`).
CLAIM = ".rewardkit-run"

PACKAGES = ("rewardkit", "torch", "transformers", "peft", "accelerate", "datasets", "pluggy", "pydantic")


def expand_dir(template: str, recipe_path: Path) -> Path:
    """Fill ``{recipe}`` (file stem) and ``{time}`` (UTC, to the second) in ``output.dir``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(template.replace("{recipe}", recipe_path.stem).replace("{time}", stamp))


class RunDirError(RewardkitError):
    """A run directory that cannot be created, or that belongs to another run."""

    exit_code = 2


def check_creatable(run_dir: Path) -> None:
    """Refuse a run directory that cannot be made (a file in the way, a read-only place), creating nothing.

    ``rewardkit validate`` and the runner call it before any model loads.
    """
    path = Path(run_dir).absolute()
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output directory {run_dir} is a file; choose another --output-dir or output.dir")
    ancestor = path if path.exists() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunDirError(f"output directory {run_dir} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunDirError(f"output directory {run_dir} cannot be created: {ancestor} is not writable")


def _try_claim(path: Path) -> bool:
    """Make ``path`` and create its claim marker exclusively; ``False`` when another run has it."""
    try:
        path.mkdir(exist_ok=True)
    except FileExistsError:  # a file of that name
        raise RunDirError(f"output directory {path} is a file; choose another --output-dir or output.dir") from None
    except OSError as exc:
        raise RunDirError(f"output directory {path} cannot be created: {exc.strerror or exc}") from None
    if any(p.name != CLAIM for p in path.iterdir()):
        return False  # files of an earlier run (or of something else): never written over
    try:
        fd = os.open(path / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False  # another run claimed it first, maybe a moment ago
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "claimed": time.time()}, f)
    return True


def claim(run_dir: Path, *, explicit: bool) -> Path:
    """Claim a fresh run directory for a new run; returns the directory claimed.

    :param explicit: the user named this directory (``--output-dir``): when it
        already holds a run it is refused, naming ``--resume``. Otherwise the
        name came from ``output.dir``, and ``NAME-2``, ``NAME-3`` ... are tried.
    :raises RunDirError: it cannot be created, or (explicit) it holds a run.
    """
    run_dir = Path(run_dir)
    check_creatable(run_dir)
    try:
        run_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"output directory {run_dir} cannot be created: {exc.strerror or exc}") from None
    if _try_claim(run_dir):
        return run_dir
    if explicit:
        raise RunDirError(f"{run_dir} already holds a run (or other files), and a new run never writes over one. "
                          f"Continue it with `rewardkit run --resume {run_dir}`, or choose another --output-dir")
    for k in range(2, 10_000):
        candidate = run_dir.with_name(f"{run_dir.name}-{k}")
        if _try_claim(candidate):
            print(f"note: {run_dir} holds another run; this run writes {candidate}", file=sys.stderr)
            return candidate
    raise RunDirError(f"no free name next to {run_dir}")


def abandon(run_dir: Path) -> None:
    """Give back a claimed directory that nothing was written to (a run that failed while starting)."""
    run_dir = Path(run_dir)
    try:
        if run_dir.is_dir() and all(p.name == CLAIM for p in run_dir.iterdir()):
            (run_dir / CLAIM).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass


class lock:
    """Hold an exclusive lock on a run directory while a run writes it (POSIX ``flock``; a no-op elsewhere).

    ``with lock(run_dir): ...``; a second process gets :class:`RunDirError`
    at once instead of both writing one directory.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / CLAIM
        self._fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: the O_EXCL claim still keeps new runs apart
            return self
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise RunDirError(f"{self.path.parent} is being written by another rewardkit process right now; "
                              f"wait for it to finish (or stop it) before resuming") from None
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def write_header(run_dir: Path, *, recipe, source_text: str, plugins: list[dict], extra: dict) -> None:
    """Write ``recipe.yaml``, ``recipe.source.yaml`` and ``env.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = recipe.resolved()
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
        """Drop lines whose ``step`` is beyond ``step`` (used on resume), and a torn last line, with a note."""
        if not self.path.exists():
            return
        records = read_jsonl(self.path)
        keep = [r for r in records if r.get("step", -1) <= step]
        self.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), encoding="utf-8")


def read_jsonl(path: Path, *, note=None) -> list[dict]:
    """All records of a JSONL file (empty list when it does not exist).

    A torn last line (what a kill or a full disk leaves) is dropped with a
    note on stderr (or to ``note``, a callable); damage anywhere else is an
    error naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    numbered = [(k, line) for k, line in enumerate(lines, 1) if line.strip()]
    out = []
    for j, (k, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if j == len(numbered) - 1:
                message = f"note: {path}, line {k}: dropped a torn last line ({len(line)} characters)"
                (note or (lambda m: print(m, file=sys.stderr)))(message)
                break
            raise RewardkitError(f"{path}, line {k}: not a JSON record ({exc}); the file is damaged "
                                 f"before its last line") from None
        out.append(record)
    return out
