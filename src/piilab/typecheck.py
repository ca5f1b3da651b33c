"""Settings from an experiment file (or any mapping) checked against a config's type hints.

`checked_settings` walks the hints of a dataclass (or a function's keyword arguments): plain
types, `X | None`, `list[T]`, `tuple[T, ...]`, `dict[K, V]`, `Any` and nested dataclasses given
as mappings. A wrong type or an unknown key is a one-line PiilabError naming where it is, so a
stage never meets `max_steps: "2"` in a comparison after earlier stages have run.

Lists are also taken in the command line's forms (docs/decisions.md, "Reliability decisions"):
one value is a one-item list (`layers: 8`), and a string is split at commas (`metrics:
bleu,rouge`), except for lists of specs with a `parse` method (`sources: kaggle:x` is one
source, since a path may hold a comma).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from piilab.errors import PiilabError

_NAMES = {int: "int", float: "float", str: "str", bool: "bool"}  # as earlier messages named them


def hints_of(target: type | Callable, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """{setting: type hint} of a dataclass's fields or a function's arguments."""
    hints = typing.get_type_hints(target)
    names = ([f.name for f in dataclasses.fields(target)] if dataclasses.is_dataclass(target)
             else [n for n in hints if n != "return"])
    return {name: hints[name] for name in names if name not in leave_out}


def checked_settings(hints: Mapping[str, Any], values: Any, where: str,
                     nested: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`values` as a mapping of known settings, each of its hinted type (lists normalised).

    `nested` names settings that are sections of their own ({"decoding": Decoding}), whose keys
    are checked against that class even though the setting is typed as a plain dict.
    """
    if not isinstance(values, Mapping):
        raise PiilabError(f"{where}: must be a mapping of settings, got {values!r}")
    unknown = sorted(str(key) for key in values if key not in hints)
    if unknown:
        raise PiilabError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(hints)}")
    nested = nested or {}
    checked = {}
    for key, value in values.items():
        if key in nested and value is not None:
            checked[key] = checked_settings(hints_of(nested[key]), value, f"{where}, {key}")
        else:
            checked[key] = checked_value(value, hints[key], f"{where}: {key}")
    return checked


def checked_value(value: Any, hint: Any, where: str) -> Any:
    """`value` if it has type `hint` (a list given in a command-line form becomes a list);
    otherwise a PiilabError '<where> must be <type>, got <value>'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _checked_union(value, args, hint, where)
    if origin in (list, tuple):
        item = args[0] if args else Any
        return [checked_value(v, item, f"{where}[{i}]") for i, v in enumerate(_as_list(value, item))]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise PiilabError(f"{where} must be a mapping, got {value!r}")
        item = args[1] if args else Any
        return {k: checked_value(v, item, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _checked_spec(value, hint, where)
    if hint in _NAMES:
        if _is_plain(value, hint):
            return value
        raise PiilabError(f"{where} must be {_NAMES[hint]}, got {value!r}")
    return value  # a type this checker does not know: the config's own checks apply


def describe(hint: Any) -> str:
    """A type hint in words: 'int', 'a list of int', 'int or null'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) if a is not type(None) else "null" for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _is_plain(value: Any, hint: type) -> bool:
    """Whether a value is of a plain type as YAML gives it (an int is a float; a bool no number)."""
    if isinstance(value, bool):
        return hint is bool
    return isinstance(value, (int, float) if hint is float else hint)


def _checked_union(value: Any, args: tuple, hint: Any, where: str) -> Any:
    """The first member type `value` fits; None only where the hint allows it."""
    if value is None:
        if type(None) in args:
            return None
        raise PiilabError(f"{where} must be {describe(hint)}, got null")
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:  # `int | None`: the member's own error is the more precise
        return checked_value(value, members[0], where)
    for arg in members:
        try:
            return checked_value(value, arg, where)
        except PiilabError:
            continue
    raise PiilabError(f"{where} must be {describe(hint)}, got {value!r}")


def _as_list(value: Any, item: Any) -> list:
    """A list setting as a list: a list or tuple as it is, a string split at commas (one item
    for a spec that parses itself), any other single value a one-item list."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and not hasattr(item, "parse"):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        return [int(part) if item is int and _is_int(part) else part for part in parts]
    return [value]


def _is_int(text: str) -> bool:
    return text.removeprefix("-").isdigit()


def _checked_spec(value: Any, cls: type, where: str) -> Any:
    """A nested dataclass: an instance, a mapping of its fields, or a string it parses."""
    if isinstance(value, cls) or isinstance(value, str) and hasattr(cls, "parse"):
        return value
    if not isinstance(value, Mapping):
        raise PiilabError(f"{where} must be {describe(cls)}, got {value!r}")
    return checked_settings(hints_of(cls), value, where)
