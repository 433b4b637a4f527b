"""Loading a recipe completely: YAML, ``--set`` overrides, schema, and every reward's params.

:func:`load_recipe` is the one door through which ``rewardkit run``,
``validate`` and ``eval`` read a recipe. It finds *every* problem before
reporting, so a user fixes a recipe in one round instead of one error per
try, and it loads no model: reward params are checked against each reward's
own ``Params`` model, which is a pydantic class and costs nothing to use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pydantic
import yaml

from rewardkit.errors import PluginError, RecipeError
from rewardkit.plugins import Registry, load_registry
from rewardkit.recipe.loader import KeyPath, SafeRecipeLoader, format_path, line_of, locate, read_yaml
from rewardkit.recipe.messages import describe_validation_error
from rewardkit.recipe.schema import DataSection, Recipe
from rewardkit.reward import Params, Reward


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe and everything needed to act on it.

    :param recipe: the validated :class:`~rewardkit.recipe.schema.Recipe`.
    :param path: the recipe file, as given.
    :param base_dir: the recipe file's directory; relative paths in the
        recipe (data files, local plugins, models) are resolved against it.
    :param registry: the rewards available to this recipe.
    :param reward_params: each reward's validated ``Params``, in the order of
        ``recipe.rewards``.
    :param source_text: the file's text, as read (the runner copies it into the run directory).
    :param lines: the line of every key, by key path (for locating later errors).
    """

    recipe: Recipe
    path: Path
    base_dir: Path
    registry: Registry
    reward_params: list[Params]
    source_text: str
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def create_rewards(self, device: str = "cpu") -> list[Reward]:
        """Instantiate every reward of the recipe (cheap: rewards load models lazily)."""
        return [self.registry.get(spec.name).cls(params, device=device)
                for spec, params in zip(self.recipe.rewards, self.reward_params)]

    def summary(self) -> str:
        """One line saying what the recipe will do, e.g. for ``rewardkit validate``."""
        r = self.recipe
        rewards = " + ".join(f"{spec.name}×{spec.weight}" for spec in r.rewards)
        if r.algorithm == "ppo":
            steps = f"{r.ppo.max_ppo_steps} PPO steps × batch {r.ppo.batch_size}"
        else:
            g = r.grpo.group_size
            steps = (f"{r.ppo.max_ppo_steps} {r.algorithm.upper()} steps × {r.ppo.batch_size // g} prompts × "
                     f"group {g}")
        return f"model {r.model.name}, rewards {rewards}, {steps}"


def format_errors(errors: Iterable[tuple[str, str]]) -> str:
    """``location: message`` lines, one per error (the form the CLI prints)."""
    return "\n".join(f"{loc}: {msg}" if loc else msg for loc, msg in errors)


def parse_assignment(text: str, option: str = "--set") -> tuple[KeyPath, Any]:
    """Split ``key.path=value`` into a key path and a YAML-parsed value.

    Digits in the path are list indices (``rewards.0.weight``); the value is
    read as YAML, so ``1e-4`` is a number, ``[q, v]`` a list and ``null`` None
    (quote it, ``'x: y'``, to keep YAML punctuation in a string).

    :raises RecipeError: naming ``option`` and the assignment.
    """
    where = f"{option} {text}"
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError([(where, "expected KEY=VALUE (KEY may be a dotted path, VALUE is read as YAML)")])
    segments = key.split(".")
    if any(not s.strip() for s in segments):
        raise RecipeError([(where, f"empty part in key path '{key}'")])
    path = tuple(int(s) if s.isdigit() else s.strip() for s in segments)
    try:
        value = yaml.load(raw, Loader=SafeRecipeLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError([(where, f"the value is not valid YAML: {problem}; quote it to pass a string")]) from None
    return path, value


def apply_overrides(data: dict, overrides: Sequence[str], *, option: str = "--set") -> dict:
    """A copy of ``data`` with each ``key.path=value`` of ``overrides`` applied in order.

    Missing mappings along the path are created; a list index may equal the
    list's length to append an item.

    :param option: the command-line option the overrides came from, for messages.
    :raises RecipeError: an override is malformed or its path runs into a
        value that is not a mapping or list; every bad override is reported,
        located as ``--set key.path=value``.
    """
    return _apply_overrides(data, overrides, option)[0]


def _apply_overrides(data: dict, overrides: Sequence[str], option: str = "--set") -> tuple[dict, dict[KeyPath, str]]:
    """:func:`apply_overrides`, also returning which paths each override set."""
    data = copy.deepcopy(data)
    applied: dict[KeyPath, str] = {}
    errors: list[tuple[str, str]] = []
    for text in overrides:
        try:
            path, value = parse_assignment(text, option)
            _set_path(data, path, value)
        except RecipeError as exc:
            errors.extend(exc.errors)
        except _PathError as exc:
            errors.append((f"{option} {text}", str(exc)))
        else:
            applied[tuple(str(p) if not isinstance(p, int) else p for p in path)] = text
    if errors:
        raise RecipeError(errors)
    return data, applied


class _PathError(Exception):
    """An override's key path does not fit the data."""


def _set_path(data: dict, path: KeyPath, value: Any) -> None:
    node: Any = data
    for depth, seg in enumerate(path):
        last = depth == len(path) - 1
        here = format_path(path[:depth]) or "the recipe"
        if isinstance(node, dict):
            key = str(seg)
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = [] if isinstance(path[depth + 1], int) else {}
                node = node[key]
        elif isinstance(node, list):
            if not isinstance(seg, int):
                raise _PathError(f"{here} is a list; use an index such as {format_path(path[:depth])}.0")
            if seg > len(node):
                raise _PathError(f"index {seg} is out of range: {here} has {len(node)} item(s)")
            if seg == len(node):
                node.append(None if last else ([] if isinstance(path[depth + 1], int) else {}))
            if last:
                node[seg] = value
            else:
                node = node[seg]
        else:
            raise _PathError(f"cannot set '{seg}' inside {here}, which is {node!r}, not a mapping")


def load_recipe(path: str | Path, overrides: Sequence[str] = (), *, registry: Registry | None = None,
                base_dir: str | Path | None = None) -> LoadedRecipe:
    """Read, override and validate the recipe at ``path``, reward params included.

    :param overrides: ``key.path=value`` strings (``rewardkit run --set``).
    :param registry: the rewards to validate against; by default the
        installed plugins plus the recipe's own ``plugins:`` (tests pass one).
    :param base_dir: where relative paths resolve; default the recipe's
        directory (a resumed run passes the original recipe's directory).
    :raises RecipeError: with every problem found, each located as
        ``file:line: key.path`` (or ``--set ...: key.path`` for a value that
        came from an override).
    """
    doc = read_yaml(path)
    source = str(path)
    data, overridden = _apply_overrides(doc.data, overrides)
    base_dir = Path(base_dir).resolve() if base_dir is not None else Path(path).resolve().parent

    problems: list[tuple[KeyPath, str]] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except pydantic.ValidationError as exc:
        problems += describe_validation_error(exc, Recipe, data)

    if registry is None:
        plugin_specs = recipe.plugins if recipe is not None else _raw_plugins(data)
        try:
            registry = load_registry(plugin_specs, base_dir=base_dir)
        except PluginError as exc:
            problems.append((("plugins",) if data.get("plugins") else (), str(exc)))
    reward_params: list[Params] = []
    if registry is not None:
        reward_params, reward_problems = _check_rewards(data, recipe, registry)
        problems += reward_problems

    if recipe is not None:
        problems += _check_environment(recipe, base_dir)
        problems += _check_data(recipe, base_dir, registry)
    if problems:
        raise RecipeError(_locate_all(problems, source, doc.lines, overridden))
    return LoadedRecipe(recipe, Path(path), base_dir, registry, reward_params, doc.text, doc.lines)


#: ``output.trackers`` entry -> the package it needs (accelerate imports it when the run starts)
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                    "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}


def _check_environment(recipe: Recipe, base_dir: Path) -> list[tuple[KeyPath, str]]:
    """Settings that are valid YAML but cannot work here: they are refused now, not after the model loads."""
    import importlib.util

    from rewardkit.hub import ASSET_PREFIX

    problems: list[tuple[KeyPath, str]] = []
    model = recipe.model
    if model.revision is not None:
        local = (base_dir / model.name).exists() or Path(model.name).expanduser().exists()
        if model.name.startswith(ASSET_PREFIX) or local:
            problems.append((("model", "revision"), f"applies to hub ids only; '{model.name}' is a local model, "
                                                    "so a revision would be ignored: remove it"))
    data = recipe.data
    if data.split != "train" and "split" in data.model_fields_set:
        from rewardkit.hub import resolve

        try:
            source = Path(resolve(data.source, base_dir))
        except Exception:  # a missing asset is reported when the data loads
            source = None
        if source is not None and source.is_file():
            problems.append((("data", "split"), f"a local file has a single split; data.split ({data.split!r}) "
                                                f"applies to hub datasets only: remove it (rewardkit makes its "
                                                f"own train/test split, see data.test_size)"))
    for i, tracker in enumerate(recipe.output.trackers):
        package = TRACKER_PACKAGES[tracker]
        if importlib.util.find_spec(package) is None:
            problems.append((("output", "trackers", i), f"tracker '{tracker}' needs the {package} package, which "
                                                        f"is not installed: pip install {package}"))
    if model.adapter:
        problems += _check_adapter(recipe, base_dir)
    return problems


def _check_data(recipe: Recipe, base_dir: Path, registry: Registry | None) -> list[tuple[KeyPath, str]]:
    """A local data file that is missing, unreadable or malformed, found without loading a model."""
    from rewardkit.data import check_local_source

    known = registry.rewards if registry is not None else {}
    needs_references = any(known[s.name].cls.needs_references for s in recipe.rewards if s.name in known)
    return check_local_source(recipe.data, base_dir, needs_references=needs_references)


def check_output_dir(recipe: Recipe, recipe_path: Path, output_dir: str | Path | None = None) -> None:
    """Refuse a run directory that cannot be created (a file in the way, a read-only place).

    :raises RecipeError: naming ``output.dir`` (or ``--output-dir``).
    """
    from rewardkit.rundir import RunDirError, check_creatable, expand_dir

    target = Path(output_dir) if output_dir is not None else expand_dir(recipe.output.dir, Path(recipe_path))
    try:
        check_creatable(target)
    except RunDirError as exc:
        where = "--output-dir" if output_dir is not None else f"{recipe_path}: output.dir"
        raise RecipeError([(where, str(exc))]) from None


def _check_adapter(recipe: Recipe, base_dir: Path) -> list[tuple[KeyPath, str]]:
    """The starting adapter's problems, when it is a local directory (hub adapters are checked at load)."""
    from rewardkit.hub import ASSET_PREFIX, resolve
    from rewardkit.recipe.adapter import adapter_problems

    name = recipe.model.adapter
    path = Path(name).expanduser()
    local = base_dir / path if not path.is_absolute() else path
    if name.startswith(ASSET_PREFIX) or local.exists():
        return adapter_problems(resolve(name, base_dir), recipe.lora)
    if name.startswith((".", "/", "~")):  # clearly meant as a path, and there is nothing there
        return [(("model", "adapter"), f"no adapter directory at {local}")]
    return []


def _raw_plugins(data: dict) -> list[str]:
    """The recipe's ``plugins:`` when the recipe as a whole failed validation (best effort)."""
    plugins = data.get("plugins")
    return [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []


def _check_rewards(data: dict, recipe: Recipe | None, registry: Registry) -> tuple[list[Params], list]:
    """Check each reward's name, params and need for references against ``registry``.

    Works from the raw data so reward problems are reported even when some
    other part of the recipe is invalid.
    """
    if recipe is not None:
        specs = [(i, s.name, s.params) for i, s in enumerate(recipe.rewards)]
        reference_field = recipe.data.reference_field
    else:
        default = [spec.model_dump() for spec in Recipe.model_fields["rewards"].default_factory()]
        raw = data.get("rewards", default)
        specs = [(i, item.get("name"), item.get("params", {})) for i, item in enumerate(raw)
                 if isinstance(item, dict)] if isinstance(raw, list) else []
        section = data.get("data")
        reference_field = (section.get("reference_field", DataSection.model_fields["reference_field"].default)
                           if isinstance(section, dict) else "unknown")

    params_out: list[Params] = []
    problems: list[tuple[KeyPath, str]] = []
    for i, name, params in specs:
        if not isinstance(name, str) or not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            continue  # the schema already reported it
        if name not in registry.rewards:
            problems.append((("rewards", i, "name"), registry.unknown_message(name)))
            continue
        cls = registry.rewards[name].cls
        try:
            params_out.append(cls.Params.model_validate(params))
        except pydantic.ValidationError as exc:
            problems += [(p, f"reward '{name}': {m}")
                         for p, m in describe_validation_error(exc, cls.Params, params, ("rewards", i, "params"))]
        else:
            if recipe is not None:
                problems += _policy_problems(i, recipe.rewards[i], cls, params_out[-1])
        if cls.needs_references and reference_field is None:
            problems.append((("rewards", i, "name"),
                             f"reward '{name}' compares completions with references, but data.reference_field "
                             f"is null; set data.reference_field to the column holding the references"))
    return params_out, problems


def _policy_problems(i: int, spec, cls, params) -> list[tuple[KeyPath, str]]:
    """Failure policy and caching settings the reward cannot honour (see :func:`rewardkit.scoring.policy_problems`).

    The reward is created for this (cheap by contract: models load on first
    use), since some traits, such as a remote reward's ``deterministic``,
    come from its params.
    """
    from rewardkit.scoring import policy_problems

    try:
        reward = cls(params, device="cpu")
    except Exception:  # a plugin bug in __init__ is reported when the run creates it, with the plugin
        return []
    return [(("rewards", i, key), msg) for key, msg in policy_problems(spec, reward)]


def _locate_all(problems: list[tuple[KeyPath, str]], source: str, lines: dict[KeyPath, int],
                overridden: dict[KeyPath, str]) -> list[tuple[str, str]]:
    """Turn key paths into ``file:line: key.path`` (or ``--set ...``) and sort by line."""
    located = []
    for path, message in problems:
        override = next((text for p, text in overridden.items() if path[:len(p)] == p), None)
        if override is not None:
            located.append(((1, 0), f"--set {override}: {format_path(path)}", message))
        else:
            located.append(((0, line_of(lines, path) or 0), locate(source, lines, path), message))
    located.sort(key=lambda item: item[0])  # stable: same-line errors keep pydantic's order
    return [(loc, msg) for _, loc, msg in located]
