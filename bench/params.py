"""Keyword parameters from a config table checked against the signature that will receive them.

A prompt set's, metric's or model's parameters come from a TOML table and end up as keyword arguments;
a misspelt name used to be a ``TypeError`` traceback, or was silently kept and ignored, and a string
where a number belongs failed deep inside the callee. `check_parameters` reads the receiving
signatures (a class's ``__init__`` along its bases, while each passes ``**params`` on) and refuses an
unknown name, with the nearest known one, and a value whose type the annotation rules out, with a
`ConfigError` (exit 2) before anything is written. Ranges stay each callee's own check.
"""
from __future__ import annotations

import difflib
import inspect
import os
import types
import typing
from typing import Any, Callable, Mapping

from mgt_common.errors import ConfigError


def accepted_parameters(target: Callable | type, always: tuple[str, ...] = ()) -> tuple[dict[str, Any], bool]:
    """(name → annotation, open) for the keyword parameters `target` accepts; `open` when it takes any name.

    For a class, the ``__init__`` of each class along the MRO whose predecessor passes ``**params`` on;
    the last base's own ``**params`` (which keeps what it does not know in ``self.params``) counts as
    closed when `always` lists the names it consumes itself.
    """
    functions = []
    if isinstance(target, type):
        for cls in target.__mro__:
            init = cls.__dict__.get("__init__")
            if init is not None and cls is not object:
                functions.append(init)
    else:
        functions.append(target)
    names: dict[str, Any] = {name: Any for name in always}
    open_ended = False
    for index, function in enumerate(functions):
        try:
            signature = inspect.signature(function)
            hints = typing.get_type_hints(function)
        except (TypeError, ValueError, NameError):
            return names, True  # cannot read it: let the callee judge
        passes_on = False
        for parameter in list(signature.parameters.values())[1 if isinstance(target, type) else 0:]:
            if parameter.kind is parameter.VAR_KEYWORD:
                passes_on = True
            elif parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                names.setdefault(parameter.name, hints.get(parameter.name, Any))
        if not passes_on:
            return names, False
        if index == len(functions) - 1:
            open_ended = not always
    return names, open_ended


def check_parameters(target: Callable | type, params: Mapping[str, Any], where: str,
                     always: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for a parameter `target` does not take, or a value its annotation rules out."""
    known, open_ended = accepted_parameters(target, always)
    for name, value in params.items():
        if name not in known:
            if open_ended:
                continue
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown parameter {name!r}.{hint} "
                              f"Valid: {', '.join(sorted(n for n in known if n not in always)) or '(none)'}")
        expected = _allowed_types(known[name])
        if expected is not None and not _matches(value, expected):
            names = " or ".join(sorted({_type_name(t) for t in expected}))
            raise ConfigError(f"{where}: {name} must be {names}, got {value!r}")


def _allowed_types(annotation: Any) -> tuple[type, ...] | None:
    """The plain types an annotation allows, or None when it cannot be checked simply (Any, callables …)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed_types(a) for a in typing.get_args(annotation)]
        if any(p is None for p in parts):
            return None
        return tuple(t for p in parts for t in p)
    if origin is not None:
        annotation = origin
    if annotation is type(None):
        return (type(None),)
    if annotation in (os.PathLike,):
        return (str,)
    if annotation in (int, float, str, bool, list, tuple, dict):
        return (annotation,)
    return None


def _matches(value: Any, expected: tuple[type, ...]) -> bool:
    for kind in expected:
        if kind is bool and isinstance(value, bool):
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind is tuple and isinstance(value, (list, tuple)):
            return True  # TOML has arrays only
        if kind not in (bool, int, float, tuple) and isinstance(value, kind):
            return True
    return False


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
            tuple: "a list", dict: "a table", type(None): "absent"}.get(kind, kind.__name__)
