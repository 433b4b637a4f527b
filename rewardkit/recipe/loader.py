"""Reading a recipe's YAML safely, remembering the line of every key.

``yaml.safe_load`` gives the data but forgets where each value was written,
and silently keeps the last of two equal keys. This module composes the YAML
node tree with PyYAML's *safe* loader, walks it once to record the line of
every key (so validation errors can say ``recipe.yaml:12: ppo.learning_rate``)
and to find duplicate keys at any depth, then builds the Python data from the
same tree. Nothing here can run code from the file: only the safe loader's
plain types (mappings, lists, strings, numbers, booleans, null) come out.

Nor can a small file take the memory or time of a large one: anchors and
aliases (``&defaults`` / ``*defaults``) may reuse a part of the recipe, but
a document whose aliases would expand past :attr:`SafeRecipeLoader.max_expanded_nodes`
values (the "billion laughs"), an alias inside the very node it names, or
nesting deeper than :attr:`SafeRecipeLoader.max_depth` is refused, with its
line, while it is being read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from rewardkit.errors import RecipeError

#: A path to a value inside a recipe: mapping keys as strings, list indices as ints,
#: e.g. ``("rewards", 1, "params", "metric")``.
KeyPath = tuple[Union[str, int], ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.YAMLError):
    """A document is refused for its shape, not its syntax (see :class:`SafeRecipeLoader`).

    :param line: the 1-based line where the limit was passed.
    """

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message, self.line = message, line

    def __str__(self) -> str:
        return f"{self.message} (line {self.line})"


class SafeRecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats without a dot, and limits on aliases and depth.

    PyYAML follows YAML 1.1, where ``1e-4`` is the *string* "1e-4"; people
    write learning rates that way and expect a number.

    Every alias counts the values of the node it repeats; once a document's
    aliases add more than :attr:`max_expanded_nodes`, or an alias names a node
    that contains it, or lists and mappings nest deeper than
    :attr:`max_depth`, composing stops with :class:`YamlLimitError`. The
    count is exact and cheap (each node's size is computed once), so a
    "billion laughs" document is refused at its first alias past the budget.
    """

    #: values that aliases may add to a document (a recipe that reuses sections needs a few hundred)
    max_expanded_nodes = 10_000
    #: how deeply lists and mappings may nest (a recipe needs five or so)
    max_depth = 100

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded = 0
        self._depth = 0
        self._sizes: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent, index):
        """Compose one node, counting what an alias repeats and how deep the document is."""
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is PyYAML's to report
                line = event.start_mark.line + 1
                if target.end_mark is None:  # still being composed: the alias is inside its own anchor
                    raise YamlLimitError(f"alias *{event.anchor} is inside the node it names (anchored at line "
                                         f"{target.start_mark.line + 1}), so it would repeat forever", line)
                size, depth = self._measure(target)
                self._expanded += size
                if self._depth + depth > self.max_depth:
                    raise YamlLimitError(f"alias *{event.anchor} nests the recipe more than {self.max_depth} "
                                         f"levels deep", line)
                if self._expanded > self.max_expanded_nodes:
                    raise YamlLimitError(
                        f"aliases expand the recipe past {self.max_expanded_nodes} values at *{event.anchor}; an "
                        f"alias may reuse a section, but not multiply the document (a 'billion laughs' file?)", line)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise YamlLimitError(f"lists and mappings nest more than {self.max_depth} levels deep",
                                     self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _measure(self, node) -> tuple[int, int]:
        """How many values ``node`` stands for with its aliases expanded, and how deep (memoised)."""
        found = self._sizes.get(id(node))
        if found is None:
            if isinstance(node, SequenceNode):
                children = [self._measure(item) for item in node.value]
            elif isinstance(node, MappingNode):
                children = [self._measure(part) for pair in node.value for part in pair]
            else:
                children = []
            found = (1 + sum(c[0] for c in children), 1 + max((c[1] for c in children), default=0))
            self._sizes[id(node)] = found
        return found


SafeRecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class YamlDocument:
    """A recipe file's parsed content.

    :param data: the root mapping, as plain Python data.
    :param lines: the 1-based line of every key and list item, by key path.
    :param text: the file's text, as read.
    """

    data: dict[str, Any]
    lines: dict[KeyPath, int]
    text: str


def format_path(path: KeyPath) -> str:
    """Write a key path the way a reader looks for it: ``rewards[1].params.metric``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest parent that has one (a missing key's section)."""
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


def locate(source: str, lines: Mapping[KeyPath, int], path: KeyPath) -> str:
    """``file:line: key.path`` for an error at ``path``; parts that are unknown are left out."""
    line = line_of(lines, path)
    where = f"{source}:{line}" if line is not None else source
    return f"{where}: {format_path(path)}" if path else where


def read_yaml(path: str | Path) -> YamlDocument:
    """Read and parse the recipe at ``path``.

    :raises RecipeError: the file is missing, unreadable, not UTF-8, empty,
        malformed (with its line), has duplicate keys, or its root is not a
        mapping. Every duplicate key is reported, not just the first.
    """
    source = str(path)
    file = Path(path)
    if not file.exists():
        raise RecipeError([(source, "no such recipe file")])
    if file.is_dir():
        raise RecipeError([(source, "is a directory, not a recipe file")])
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RecipeError([(source, f"cannot read the recipe: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError([(source, f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})")]) from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str = "<recipe>") -> YamlDocument:
    """Parse recipe text; ``source`` names it in error messages (usually the file path).

    :raises RecipeError: as :func:`read_yaml`, for everything after reading.
    """
    try:
        loader = SafeRecipeLoader(text)  # the reader rejects control characters here
    except yaml.reader.ReaderError as exc:
        line = text[:exc.position].count("\n") + 1
        raise RecipeError([(f"{source}:{line}", f"malformed YAML: character {exc.character:#06x} is not allowed "
                                                 f"in YAML text")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise RecipeError([(source, "the recipe is empty; it needs at least a model: and a data: section")])
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else f"the single value {node.value!r}"
            raise RecipeError([(f"{source}:{node.start_mark.line + 1}",
                                f"the recipe must be a mapping of sections (model:, data:, ...), not {kind}")])
        lines: dict[KeyPath, int] = {}
        duplicates: list[tuple[str, str]] = []
        _walk(loader, node, (), lines, duplicates, source, set())
        if duplicates:
            raise RecipeError(duplicates)
        data = loader.construct_document(node)
    except YamlLimitError as exc:
        raise RecipeError([(f"{source}:{exc.line}", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        raise RecipeError([_describe_yaml_error(exc, source)]) from None
    except yaml.YAMLError as exc:  # e.g. a control character the reader refuses
        raise RecipeError([(source, f"malformed YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return YamlDocument(data, lines, text)


def _describe_yaml_error(exc: yaml.MarkedYAMLError, source: str) -> tuple[str, str]:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    problem = exc.problem or exc.context or "unreadable YAML"
    message = "malformed YAML: " + problem.removeprefix("but ")
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context}, line {exc.context_mark.line + 1})"
    return where, message


def _walk(loader, node, path: KeyPath, lines: dict, duplicates: list, source: str, active: set) -> None:
    """Record the line of every key below ``node`` and collect duplicate keys."""
    if id(node) in active:  # an alias that refers to its own ancestor; the constructor copes
        return
    active.add(id(node))
    if isinstance(node, MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # "<<: *defaults" is a merge, not a key; keys it brings in fall back to this mapping's line
                continue
            if not isinstance(key_node, ScalarNode):
                continue  # a mapping used as a key: the constructor reports it
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            child = path + (key if isinstance(key, (str, int)) and not isinstance(key, bool) else str(key),)
            if key in first_line:
                duplicates.append((f"{source}:{line}: {format_path(child)}",
                                   f"duplicate key '{key}' (first at line {first_line[key]})"))
                continue
            first_line[key] = line
            lines.setdefault(child, line)
            _walk(loader, value_node, child, lines, duplicates, source, active)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault(path + (index,), item.start_mark.line + 1)
            _walk(loader, item, path + (index,), lines, duplicates, source, active)
    active.discard(id(node))
