"""Turning pydantic's validation errors into messages about a recipe's keys.

pydantic reports ``('generation', 'max_new_tokens', 'int')`` and "Extra inputs
are not permitted"; a recipe author wants ``generation.max_new_tokens`` and
"unknown key 'max_new_token'; did you mean 'max_new_tokens'?". This module
does that translation and nothing else, so the rules stay in one place:

- union member tags that pydantic puts in locations (``int``, ``LengthRange``)
  are dropped, and the members' complaints are merged into one message;
- unknown keys get a did-you-mean from the section's own field names;
- the offending value is shown when it is a plain scalar.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

import pydantic

from rewardkit.recipe.loader import KeyPath

#: What each "wrong type" error expected, in a reader's words.
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
    "list_type": "a list",
    "none_required": "null",
}
_SCALARS = (str, int, float, bool, type(None))


def describe_validation_error(exc: pydantic.ValidationError, model: type[pydantic.BaseModel],
                              data: Any, prefix: KeyPath = ()) -> list[tuple[KeyPath, str]]:
    """Translate ``exc`` (from ``model.model_validate(data)``) into ``(key path, message)`` pairs.

    :param prefix: prepended to every path, e.g. ``("rewards", 0, "params")``
        when ``model`` is a reward's ``Params``.
    """
    out: list[tuple[KeyPath, str]] = []
    unions: dict[KeyPath, list[tuple[KeyPath, dict]]] = {}
    for error in exc.errors(include_url=False):
        # A mapping key that is not a string (YAML's bare `on:` or `1:`): pydantic says so
        # as "invalid_key" for a model and as a string error at "[key]" for a dict.
        if error["type"] == "invalid_key" or error["loc"][-1:] == ("[key]",):
            parent = error["loc"][:-1] if error["type"] == "invalid_key" else error["loc"][:-2]
            path, _ = _clean_location(dict(error, loc=parent), data)
            out.append((prefix + path, f"key {_show(error['input'])} is not a string; put it in quotes "
                                       f"(YAML reads bare on/off/yes/no as true/false, and numbers as numbers)"))
            continue
        path, union_at = _clean_location(error, data)
        if union_at is None:
            out.append((prefix + path, _message(error, path, model)))
        else:
            unions.setdefault(union_at, []).append((path, error))
    for union_at, errors in unions.items():
        out.extend((prefix + path, message) for path, message in _union_messages(union_at, errors, model))
    return out


def _clean_location(error: dict, data: Any) -> tuple[KeyPath, KeyPath | None]:
    """Drop union member tags from the error's location by following it through ``data``.

    A location segment that is not a key (or index) of the data at that point
    is a tag pydantic added for one member of a union, except the last
    segment of a "missing" or "unknown key" error, which is that key itself.

    :returns: the cleaned path, and the path of the union when there was a tag.
    """
    loc = error["loc"]
    path: list = []
    node = data
    union_at = None
    for i, seg in enumerate(loc):
        if isinstance(node, dict) and seg in node:
            path.append(seg)
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            path.append(seg)
            node = node[seg]
        elif i == len(loc) - 1 and error["type"] in ("missing", "extra_forbidden"):
            path.append(seg)
        elif union_at is None:
            union_at = tuple(path)  # a tag: skip it, the data node stays where it is
    return tuple(path), union_at


def _message(error: dict, path: KeyPath, model: type[pydantic.BaseModel]) -> str:
    """A readable message for one pydantic error at ``path``."""
    kind = error["type"]
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        return unknown_key_message(str(key), field_names(model, path[:-1]))
    if kind == "missing":
        return f"missing required key '{path[-1]}'" if path else "missing required value"
    message = error["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}"
    if kind not in ("value_error", "assertion_error") and isinstance(error.get("input"), _SCALARS):
        message += f" (got {_show(error['input'])})"
    return message


def _union_messages(union_at: KeyPath, errors: list[tuple[KeyPath, dict]], model) -> list[tuple[KeyPath, str]]:
    """Messages for the complaints of every member of one union (e.g. ``int | LengthRange``).

    When the value has the shape of one member (a mapping, for a model
    member), that member's detailed errors are what matter; when it fits
    none, one message says which shapes would do.
    """
    detailed = [(p, e) for p, e in errors if p != union_at or e["type"] not in _EXPECTED]
    if detailed:
        return list(dict.fromkeys((p, _message(e, p, model)) for p, e in detailed))
    expected = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for _, e in errors))
    value = errors[0][1].get("input")
    return [(union_at, f"expected {expected}" + (f" (got {_show(value)})" if isinstance(value, _SCALARS) else ""))]


def _show(value: Any) -> str:
    """A value as the YAML author wrote it: null/true/false, strings quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def unknown_key_message(key: str, known: list[str]) -> str:
    """``unknown key 'x'`` plus a did-you-mean from ``known``, or the list of known keys."""
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return message + f"; did you mean '{close[0]}'?"
    if known:
        return message + f"; known keys: {', '.join(known)}"
    return message


def field_names(model: type[pydantic.BaseModel] | None, path: KeyPath) -> list[str]:
    """The keys a recipe may write in the section at ``path`` inside ``model`` ([] if unknown).

    Generated from the schema (each model's ``model_fields``, by alias where a
    field has one), so a field added to a section is listed without anyone
    remembering to list it.
    """
    for seg in path:
        if model is None:
            return []
        if isinstance(seg, int):
            continue  # a list item: the list's element model was already picked
        field = _field(model, seg)
        model = _model_in(field.annotation) if field is not None else None
    return known_keys(model) if model is not None else []


def known_keys(model: type[pydantic.BaseModel]) -> list[str]:
    """Every key ``model`` accepts, in the schema's order (a field's alias where it has one)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _field(model: type[pydantic.BaseModel], key) -> Any:
    """The field of ``model`` written as ``key`` in a recipe (by name or alias), or None."""
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _model_in(annotation) -> type[pydantic.BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[X]`` or ``int | X``."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
