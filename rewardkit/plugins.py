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


def _import_path(spec: str, base_dir: Path | None) -> ModuleType:
    """Import ``spec``: a ``.py`` file path (relative to ``base_dir``) or a dotted module."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"no such plugin file: {path}")
        mod_name = f"rewardkit_local_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
        return module
    added = base_dir is not None and str(base_dir) not in sys.path
    if added:
        sys.path.insert(0, str(base_dir))
    try:
        return importlib.import_module(spec)
    finally:
        if added:
            sys.path.remove(str(base_dir))


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

    for spec in modules:
        try:
            module = _import_path(spec, base)
        except Exception as exc:
            raise PluginError(f"plugin '{spec}' failed to import: {type(exc).__name__}: {exc}") from exc
        if not pm.is_registered(module):
            pm.register(module, name=spec)
            origin[spec] = (spec, getattr(module, "__version__", None))

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=name)
        origin[name] = (name, getattr(plugin, "__version__", None))

    pm.check_pending()  # a misspelt hook name fails loudly here

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
