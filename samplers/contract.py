"""What the engine calls on each decision kind, read off the kind's base class and checked at registration.

The engine calls every component method positionally, with the arguments its base class's method takes,
e.g. ``guidance.scale(ctx)`` or ``confidence.score(probs, sampled, ctx)``. So the base classes in
samplers/components.py (and `ModelTransform`) *are* the contract: `engine_methods` reads it from their
signatures, and `register_component` binds every method a component overrides to those arguments. A
plugin whose method cannot take them fails when it is imported (``--plugin FILE.py`` or its entry point),
with one line that names the class, the method and the signature it needs, instead of a traceback in
the middle of generation after the run directory exists. A base class also names, in
``required_methods``, the methods of which a component must define at least one (the base only raises
there); docs/plugins.md shows the same signatures for humans.
"""
from __future__ import annotations

import inspect
from typing import Callable

from mgt_common.errors import ConfigError


class PluginContractError(ConfigError):
    """A registered component whose class cannot be called the way the engine calls its kind."""


def engine_methods(base: type) -> dict[str, tuple[str, ...]]:
    """method → the arguments it is called with after self, for every public method (and ``__call__``)
    defined on `base` or the classes above it (`Component`): the contract of `base`'s kind."""
    methods: dict[str, tuple[str, ...]] = {}
    for klass in reversed(base.__mro__):  # the most general first, so that the kind's own definition wins
        for name, value in vars(klass).items():
            if (name.startswith("_") and name != "__call__") or not inspect.isfunction(value):
                continue
            parameters = list(inspect.signature(value).parameters.values())[1:]
            methods[name] = tuple(p.name for p in parameters)
    return methods


def check_component_class(kind: str, name: str, cls: type, base: type) -> None:
    """Raise PluginContractError unless `cls` can be driven by the engine as a `kind` component.

    Only the arity is checked, never the parameter names: ``def scale(self, context)`` is fine.
    """
    where = f"component {name!r} ({cls.__module__}.{cls.__qualname__}), registered as {kind}"
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginContractError(
            f"{where}: must subclass {base.__module__}.{base.__name__} (the base class of the {kind} kind)")
    methods = engine_methods(base)
    required = tuple(getattr(base, "required_methods", ()))
    if required and not any(_overridden(cls, base, m) for m in required):
        wanted = " or ".join(_signature(m, methods[m])[len("def "):] for m in required)
        raise PluginContractError(f"{where}: defines no {wanted}; the engine calls it at every step")
    for method, args in methods.items():
        if not _overridden(cls, base, method):
            continue
        function = inspect.getattr_static(cls, method)
        if isinstance(function, (staticmethod, classmethod)) or not callable(function):
            raise PluginContractError(f"{where}: {method} must be a plain method {_signature(method, args)}")
        _check_binds(where, method, args, function)


def _overridden(cls: type, base: type, method: str) -> bool:
    return getattr(cls, method, None) is not getattr(base, method, None)


def _check_binds(where: str, method: str, args: tuple[str, ...], function: Callable) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a C-implemented callable: nothing to inspect
        return
    try:
        signature.bind(object(), *args)  # self, then exactly what the engine passes, positionally
    except TypeError as exc:
        raise PluginContractError(
            f"{where}: {method}{signature} cannot be called as {method}({', '.join(args)}) ({exc}); "
            f"define it as {_signature(method, args)} (see docs/plugins.md)") from None


def _signature(method: str, args: tuple[str, ...]) -> str:
    return f"def {method}({', '.join(('self', *args))})"
