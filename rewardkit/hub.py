"""Loading models and tokenizers by hub id, local path or shipped asset.

Every model goes through ``from_pretrained``: the shipped tiny models take
exactly the same path as ``google/flan-t5-base``. ``asset:NAME`` names a
directory under :mod:`rewardkit.assets`. Offline, a model that is neither
local nor cached is one :class:`ModelNotFoundError` naming the id and how to
get it, never a traceback from the HTTP stack.
"""

from __future__ import annotations

from pathlib import Path

from rewardkit.errors import ModelNotFoundError

ASSET_PREFIX = "asset:"


def assets_dir() -> Path:
    """The directory holding the shipped offline assets."""
    return Path(__file__).resolve().parent / "assets"


def resolve(name: str, base_dir: str | Path | None = None) -> str:
    """Turn ``asset:NAME`` or a relative path into something ``from_pretrained`` takes.

    Hub ids (``org/name``) are returned unchanged unless a directory of that
    name exists relative to ``base_dir``.
    """
    if name.startswith(ASSET_PREFIX):
        path = assets_dir() / name[len(ASSET_PREFIX):]
        if not path.exists():
            raise ModelNotFoundError(
                f"asset '{name}' not found at {path}; rebuild the assets with "
                f"`python -m rewardkit.assets.build`")
        return str(path)
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
        return str((Path(base_dir) / path).resolve())
    if path.exists():
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no such file or directory: {name}")
    return name


def _is_missing(exc: BaseException) -> bool:
    """True when ``exc`` means "could not find or download", not "broken model"."""
    text = f"{type(exc).__name__}: {exc}"
    markers = ("OSError", "LocalEntryNotFoundError", "RepositoryNotFoundError", "ConnectionError",
               "HFValidationError", "offline", "Can't load", "couldn't connect", "not a valid model identifier",
               "does not appear to have", "Max retries", "EntryNotFound")
    return any(m.lower() in text.lower() for m in markers)


def load_pretrained(loader, name: str, *, base_dir=None, what: str = "model", **kwargs):
    """Call ``loader.from_pretrained`` on the resolved ``name``.

    Only safetensors weights are accepted (``use_safetensors=True``) for
    models, so no pickle file is ever unpickled.

    :raises ModelNotFoundError: the id is neither local, cached nor downloadable.
    """
    target = resolve(name, base_dir)
    try:
        return loader.from_pretrained(target, **kwargs)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        raise ModelNotFoundError(
            f"could not load {what} '{name}': it is not a local directory, not in the Hugging Face cache, "
            f"and could not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).\n"
            f"Get it on a machine with internet access with `huggingface-cli download {name}` "
            f"(or `hf download {name}`), then copy the cache or point the recipe at a local directory."
        ) from None


def _transformers_names_dtype_torch_dtype() -> bool:
    """True for transformers < 4.56, whose ``from_pretrained`` takes ``torch_dtype=``, not ``dtype=``.

    (Older versions take ``dtype=`` without complaint and load float32 weights.)
    """
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return (major, minor) < (4, 56)


def load_model(loader, name: str, *, base_dir=None, trust_remote_code: bool = False, **kwargs):
    """Load a model's weights from safetensors only (no pickle).

    ``dtype=`` is passed as ``torch_dtype=`` to transformers older than 4.56.
    """
    if "dtype" in kwargs and _transformers_names_dtype_torch_dtype():
        kwargs["torch_dtype"] = kwargs.pop("dtype")
    _refuse_pickle_only(loader, name, base_dir)
    return load_pretrained(loader, name, base_dir=base_dir, what="model", use_safetensors=True,
                           trust_remote_code=trust_remote_code, **kwargs)


#: Weight files that are pickles (or other formats rewardkit does not load).
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.h5", "*.msgpack")


def _refuse_pickle_only(loader, name: str, base_dir) -> None:
    """A local model folder whose weights are only pickles: say so, and how to convert, before transformers does."""
    target = Path(resolve(name, base_dir))
    if not target.is_dir() or any(target.glob("*.safetensors")):
        return
    found = sorted(p.name for pattern in PICKLE_WEIGHTS for p in target.glob(pattern))
    if not found:
        return
    cls = getattr(loader, "__name__", "AutoModel")
    raise ModelNotFoundError(
        f"model folder {target} has its weights only as {', '.join(found[:3])}: rewardkit loads safetensors "
        f"weights only, so that no pickle is ever unpickled. If you trust the file, convert it once "
        f"(this writes model.safetensors beside it):\n"
        f"  python -c \"from transformers import {cls}; "
        f"{cls}.from_pretrained('{target}', use_safetensors=False).save_pretrained('{target}')\"")


def load_tokenizer(name: str, *, base_dir=None, trust_remote_code: bool = False, **kwargs):
    """Load the tokenizer that belongs to ``name``."""
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, name, base_dir=base_dir, what="tokenizer",
                           trust_remote_code=trust_remote_code, **kwargs)
