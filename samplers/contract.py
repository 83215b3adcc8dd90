"""What the engine calls on each decision kind, checked when a component is registered (issue 15).

`samplers.engine` calls every component method positionally, e.g. ``guidance.scale(ctx)`` or
``confidence.score(probs, sampled, ctx)``. A plugin whose method cannot take exactly those arguments
used to fail with a raw traceback in the middle of generation, after the run directory existed. Here
`register_component` binds each method's signature to the arguments the engine will pass, so the
mistake fails at import (``--plugin FILE.py`` or the entry point) with one line that names the class,
the method and the signature it needs. docs/plugins.md documents the same table for humans.
"""
from __future__ import annotations

import inspect
from typing import Callable

from mgt_common.errors import ConfigError


class PluginContractError(ConfigError):
    """A registered component whose class cannot be called the way the engine calls its kind."""


#: kind → {method: the arguments the engine passes, after self}. The methods listed under "any of" must
#: be overridden by at least one of them (a reveal schedule gives `mask_ratio` or all of `mask_len`);
#: the others have working defaults on the base class and are checked only when the plugin overrides them.
METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    "guidance": {"scale": ("ctx",), "needs_uncond": ("ctx",), "combine": ("cond", "uncond", "ctx")},
    "logits_processor": {"__call__": ("logits", "ctx")},
    "probability_corrector": {"__call__": ("probs", "ctx")},
    "token_sampler": {"sample": ("probs", "ctx")},
    "confidence": {"score": ("probs", "sampled", "ctx")},
    "reveal_schedule": {"mask_ratio": ("progress",), "mask_len": ("ctx",)},
    "remask": {"select": ("confidence", "mask_len", "ctx")},
    "loop": {"run": ("engine", "generation"), "forward_passes": ("total_steps",)},
    "model_transform": {"attach": ("model",), "neutral": (), "check_model": ("model",)},
}

#: kind → methods of which at least one must be the plugin's own (the base class only raises).
REQUIRED_ANY: dict[str, tuple[str, ...]] = {
    "guidance": ("scale",),
    "logits_processor": ("__call__",),
    "probability_corrector": ("__call__",),
    "token_sampler": ("sample",),
    "confidence": ("score",),
    "reveal_schedule": ("mask_ratio", "mask_len"),
    "remask": ("select",),
    "loop": ("run",),
    "model_transform": ("attach",),
}


def check_component_class(kind: str, name: str, cls: type, base: type | None) -> None:
    """Raise PluginContractError unless `cls` can be driven by the engine as a `kind` component.

    Kinds without an entry in `METHODS` are checked only for the base class. Only the arity is checked, never the parameter names: ``def scale(self, context)`` is fine.
    """
    where = f"component {name!r} ({cls.__module__}.{cls.__qualname__}), registered as {kind}"
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginContractError(
            f"{where}: must subclass samplers.components.{base.__name__} (the base class of the {kind} kind)")
    methods = METHODS.get(kind, {})
    own = [m for m in REQUIRED_ANY.get(kind, ()) if _overridden(cls, base, m)]
    if REQUIRED_ANY.get(kind) and not own:
        wanted = " or ".join(_signature(m, methods[m])[len("def "):] for m in REQUIRED_ANY[kind])
        raise PluginContractError(f"{where}: defines no {wanted}; the engine calls it at every step")
    for method, args in methods.items():
        if not _overridden(cls, base, method):
            continue
        function = inspect.getattr_static(cls, method)
        if isinstance(function, (staticmethod, classmethod)) or not callable(function):
            raise PluginContractError(f"{where}: {method} must be a plain method {_signature(method, args)}")
        _check_binds(where, method, args, function)


def _overridden(cls: type, base: type | None, method: str) -> bool:
    if base is None:
        return hasattr(cls, method)
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
