"""Write repositories into a Hugging Face hub cache, in ``huggingface_hub``'s own layout.

``huggingface_hub`` keeps one folder per repository under the cache
(``HF_HUB_CACHE``, by default ``$HF_HOME/hub``)::

    models--ORG--NAME/
      blobs/<hash>                  file contents, named by their git hash
      refs/main                     the commit that ``main`` points at
      snapshots/<commit>/<file>     relative symlinks into ../../blobs

A blob's name is the sha256 of its content for files that git keeps in LFS
(weights, parquet) and the git blob sha1 (``sha1("blob <size>\\0" +
content)``) for the others, as the hub reports them in its ``ETag``. The
commit hash here is made from the file names and hashes, so the same files
always give the same commit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

#: Suffixes the hub stores through git LFS (the .gitattributes of a new hub repo).
LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".parquet", ".arrow", ".msgpack", ".h5", ".pt")


def repo_folder(repo_id: str, repo_type: str = "model") -> str:
    """``models--org--name`` (or ``datasets--org--name``): the folder name huggingface_hub uses."""
    return f"{repo_type}s--" + repo_id.replace("/", "--")


def _file_hash(path: Path, name: str) -> str:
    """The blob name of ``path``: sha256 for LFS files, the git blob sha1 otherwise."""
    if name.endswith(LFS_SUFFIXES):
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1()
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_repo(cache: Path, repo_id: str, files: dict[str, Path], *, repo_type: str = "model",
               move: bool = False) -> str:
    """Put ``files`` (name in the repo -> file on disk) into ``cache`` as one commit of ``repo_id``.

    Blobs are moved (``move=True``) or copied into ``blobs/``; the snapshot
    holds relative symlinks to them, as huggingface_hub makes them.

    :returns: the commit hash, which ``refs/main`` now names.
    """
    root = Path(cache) / repo_folder(repo_id, repo_type)
    hashes = {name: _file_hash(Path(src), name) for name, src in sorted(files.items())}
    commit = hashlib.sha1("".join(f"{n}\0{h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    snapshot = root / "snapshots" / commit
    for name, src in sorted(files.items()):
        blob = root / "blobs" / hashes[name]
        if not blob.exists():
            (shutil.move if move else shutil.copyfile)(str(src), str(blob))
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    # huggingface_hub writes the ref without a trailing newline
    (root / "refs" / "main").write_text(commit)
    return commit
