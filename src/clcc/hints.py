"""One check of a value against its type hint, for config keys and method parameters alike.

Both come from YAML files and `--set key=value`. YAML 1.1 reads `1e-3` as a string, so a float
takes a string that reads as one; an int is a float too; a bool is neither (YAML's `true` is an
int to Python, not to a config).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal


def kind(hint: Any) -> str:
    """What `hint` takes, as a message names it: `int`, `one of sum|mean`, `a list of int`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + "|".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(kind(a) for a in args if a is not type(None))
    if origin is list:
        return f"a list of {kind(args[0])}"
    if origin is dict:
        return "a mapping (key: value)"
    return getattr(hint, "__name__", str(hint))


def conform(hint: Any, value: Any) -> Any:
    """`value` as `hint` takes it (a float: from an int, or from YAML's string `1e-3`);
    ValueError when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value in args:
            return value
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None  # an optional value left unset
        for option in (a for a in args if a is not type(None)):
            try:
                return conform(option, value)
            except ValueError:
                continue
    elif origin is list:
        if isinstance(value, list):
            return [conform(args[0], v) for v in value]
    elif origin is dict:
        if isinstance(value, dict):
            return value
    elif hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint in (int, str, bool):
        if isinstance(value, hint) and isinstance(value, bool) == (hint is bool):
            return value
    elif not isinstance(hint, type) or isinstance(value, hint):
        return value
    raise ValueError(f"{value!r} is not {kind(hint)}")
