"""Finding reward plugins: entry points, module paths, and the registry.

Every reward, built-in or third-party, arrives the same way: a module
implementing :func:`rewardkit.hookspecs.register_rewards` is found through the
``rewardkit`` entry-point group (installed packages) or named by a recipe's
``plugins:`` list (modules kept beside a recipe). A plugin that fails to
import is remembered, not fatal: it only stops a run that asks for a reward
it might have provided.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterable

import pluggy

from rewardkit import hookspecs
from rewardkit.errors import PluginError
from rewardkit.reward import Reward

ENTRY_POINT_GROUP = "rewardkit"


@dataclass(frozen=True)
class RewardInfo:
    """A registered reward: its class and where it came from."""

    name: str
    cls: type[Reward]
    plugin: str
    version: str | None = None

    @property
    def summary(self) -> str:
        """The first line of the reward class's docstring."""
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or whose hook raised."""

    plugin: str
    cause: str


@dataclass
class Registry:
    """Rewards keyed by name, plus the plugins that failed to load."""

    rewards: dict[str, RewardInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def get(self, name: str) -> RewardInfo:
        """The reward called ``name``.

        :raises PluginError: naming close matches and any plugin that failed
            to load (it may be the one that provides ``name``).
        """
        if name in self.rewards:
            return self.rewards[name]
        raise PluginError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        """The message for an unknown reward name: did-you-mean and failed plugins."""
        msg = f"unknown reward '{name}'"
        close = difflib.get_close_matches(name, list(self.rewards), n=3, cutoff=0.5)
        if close:
            msg += "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        else:
            msg += f"; known rewards: {', '.join(sorted(self.rewards)) or '(none)'}"
        for failure in self.failures:
            msg += f"\n  plugin '{failure.plugin}' failed to load and may provide it: {failure.cause}"
        return msg

    def create(self, name: str, params=None, *, device: str = "cpu") -> Reward:
        """Instantiate the reward ``name`` with validated ``params``."""
        return self.get(name).cls(params, device=device)


def _distribution_of(entry_point) -> tuple[str, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return entry_point.value, None
    return dist.metadata["Name"], dist.version


#: last parts of a dotted name that mean the entry was meant as a file, not a module
_FILE_SUFFIXES = {"txt", "yaml", "yml", "json", "jsonl", "toml", "md", "cfg", "ini", "pyc", "pyw", "ipynb", "csv",
                  "py3"}


class _EntryError(Exception):
    """One ``plugins:`` entry that cannot be loaded, and why in a reader's words."""


class _ModuleMissing(_EntryError):
    """The entry is a module name that nothing installed or beside the recipe provides."""


def _is_module_name(spec: str) -> bool:
    return all(part.isidentifier() for part in spec.split("."))


def _import_path(spec: str, base_dir: Path | None) -> ModuleType:
    """Import ``spec``: a ``.py`` file path (relative to ``base_dir``) or a dotted module.

    :raises _EntryError: the entry names nothing that can be imported: an
        empty entry, a missing file, a file that is not ``.py``, a directory,
        a module that is not installed (each said in those words).
    """
    if not spec.strip():
        raise _EntryError("an empty entry; name a .py file or an importable module")
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    as_path = spec.endswith(".py") or "/" in spec or "\\" in spec or spec.startswith(("~", ".")) \
        or not _is_module_name(spec)
    if path.is_dir() and (as_path or not (path / "__init__.py").is_file()):
        hint = (f"name the package by its module name ('{path.name}') when it sits beside the recipe"
                if (path / "__init__.py").is_file() and path.name.isidentifier() else "name a .py file inside it")
        raise _EntryError(f"{path} is a directory, not a plugin file; {hint}")
    if path.is_file() and (as_path or spec.rsplit(".", 1)[-1] in _FILE_SUFFIXES):
        if path.suffix != ".py":
            raise _EntryError(f"{path} is not a Python file: a plugin is a .py file or an importable module"
                              + (f" (rename it to {path.stem}.py?)" if path.stem.isidentifier() else ""))
        return _exec_file(path)
    if as_path:
        hint = "" if spec.endswith(".py") or not path.suffix else "; plugin files end in .py"
        if not path.suffix and "-" in spec and spec.replace("-", "_").isidentifier():
            hint = f"; a module name cannot contain '-' (try {spec.replace('-', '_')})"
        raise _EntryError(f"no such plugin file: {path}{hint}")
    added = base_dir is not None and str(base_dir) not in sys.path
    if added:
        sys.path.insert(0, str(base_dir))
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (spec == exc.name or spec.startswith(exc.name + ".")):
            raise  # the plugin itself imports something missing: its own error says what
        where = f" beside the recipe ({base_dir})" if base_dir is not None else ""
        message = f"no module named '{exc.name}': it is not installed, and there is no {exc.name}.py{where}"
        if spec.rsplit(".", 1)[-1] in _FILE_SUFFIXES:
            message += f"; if '{spec}' is meant as a file, there is no such file ({path}), and plugin files end in .py"
        raise _ModuleMissing(message) from None
    finally:
        if added:
            sys.path.remove(str(base_dir))


def _exec_file(path: Path) -> ModuleType:
    """Import the ``.py`` file at ``path`` as module ``rewardkit_local_<stem>``; nothing is left behind on failure."""
    mod_name = f"rewardkit_local_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager that knows rewardkit's hookspecs."""
    pm = pluggy.PluginManager("rewardkit")
    pm.add_hookspecs(hookspecs)
    return pm


def load_registry(
    modules: Iterable[str] = (),
    *,
    base_dir: str | Path | None = None,
    entry_points: bool = True,
    extra_plugins: Iterable[object] = (),
) -> Registry:
    """Discover plugins and collect the rewards they register.

    :param modules: module paths or ``.py`` files to load as plugins (a
        recipe's ``plugins:``); these must import, or :class:`PluginError`.
    :param base_dir: directory that relative plugin paths are resolved against
        (the recipe's directory).
    :param entry_points: load installed plugins from the ``rewardkit`` group.
    :param extra_plugins: already imported plugin objects (tests use this).
    :raises PluginError: a named module failed to import, or two plugins
        registered the same reward name.
    """
    base = Path(base_dir) if base_dir is not None else None
    pm = get_plugin_manager()
    registry = Registry()
    origin: dict[str, tuple[str, str | None]] = {}

    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist, version = _distribution_of(ep)
            label = ep.name if dist == "rewardkit" else f"{dist}:{ep.name}"
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                registry.failures.append(PluginFailure(label, f"{type(exc).__name__}: {exc}"))
                continue
            if pm.is_registered(module):
                continue
            pm.register(module, name=label)
            origin[label] = (dist, version)

    modules = list(modules)
    problems: list[tuple[int, str]] = []
    for index, spec in enumerate(modules):
        try:
            module = _import_path(spec, base)
        except _ModuleMissing as exc:
            problems.append((index, f"plugin '{spec}' failed to import: ModuleNotFoundError: {exc}"))
            continue
        except _EntryError as exc:
            problems.append((index, f"plugin '{spec}': {exc}"))
            continue
        except Exception as exc:
            problems.append((index, f"plugin '{spec}' failed to import: {type(exc).__name__}: {exc}"
                                    f"{_raised_at(exc)}"))
            continue
        if pm.is_registered(module):
            continue
        try:
            pm.register(module, name=spec)
        except pluggy.PluginValidationError as exc:
            problems.append((index, f"plugin '{spec}': {_hook_problem(exc)}"))
            continue
        if not pm.get_hookcallers(module):
            unknown = _misspelt_hooks(module)
            problems.append((index, f"plugin '{spec}' defines no rewardkit hook: " + (
                unknown or "it needs a function register_rewards(register) decorated with @rewardkit.hookimpl")))
            pm.unregister(module)
            continue
        origin[spec] = (spec, getattr(module, "__version__", None))
    if problems:
        error = PluginError("\n".join(message for _, message in problems))
        #: the position in ``modules`` of each bad entry, so a recipe's error can point at its line
        error.indices = [index for index, _ in problems]
        raise error

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=name)
        origin[name] = (name, getattr(plugin, "__version__", None))

    try:
        pm.check_pending()  # a misspelt hook name fails loudly here
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        error = PluginError(f"plugin '{name}': " + (_misspelt_hooks(exc.plugin) or _hook_problem(exc)))
        error.indices = [i for i, spec in enumerate(modules) if spec == name]
        raise error from None

    for impl in pm.hook.register_rewards.get_hookimpls():
        dist, version = origin.get(impl.plugin_name, (impl.plugin_name, None))

        def register(cls, _dist=dist, _version=version):
            _add(registry, cls, _dist, _version)

        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as exc:
            registry.failures.append(PluginFailure(dist, f"register_rewards raised {type(exc).__name__}: {exc}"))
    return registry


def _raised_at(exc: BaseException) -> str:
    """`` (raised at file:line)`` for the last frame of ``exc`` outside the import machinery ("" if none)."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen") and "importlib" not in f.filename
              and Path(f.filename).resolve() != Path(__file__).resolve()]
    if isinstance(exc, SyntaxError) or not frames:
        return ""  # a SyntaxError names its file and line itself
    return f" (raised at {frames[-1].filename}:{frames[-1].lineno})"


def _hook_problem(exc: pluggy.PluginValidationError) -> str:
    """pluggy's complaint about a hook implementation, with the hook rewardkit has."""
    message = " ".join(str(exc).split())
    return message + "; rewardkit's hook is register_rewards(register)"


def _misspelt_hooks(module: ModuleType) -> str:
    """A did-you-mean for functions marked @hookimpl whose name is not a rewardkit hook ("" if none)."""
    marked = [name for name, value in vars(module).items()
              if callable(value) and hasattr(value, "rewardkit_impl") and not hasattr(hookspecs, name)]
    if not marked:
        return ""
    return (f"{', '.join(marked)} is marked @rewardkit.hookimpl but is not a rewardkit hook; "
            f"did you mean register_rewards(register)?")


def _add(registry: Registry, cls, plugin: str, version: str | None) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Reward)):
        raise PluginError(f"plugin '{plugin}' registered {cls!r}, which is not a rewardkit.Reward subclass")
    if not cls.name:
        raise PluginError(f"plugin '{plugin}' registered {cls.__name__} without a 'name'")
    existing = registry.rewards.get(cls.name)
    if existing is not None and existing.cls is not cls:
        raise PluginError(
            f"reward '{cls.name}' is registered twice: by plugin '{existing.plugin}' "
            f"({existing.cls.__module__}.{existing.cls.__name__}) and by plugin '{plugin}' "
            f"({cls.__module__}.{cls.__name__})"
        )
    registry.rewards[cls.name] = RewardInfo(cls.name, cls, plugin, version)
