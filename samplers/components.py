"""The decision kinds of the MaskGIT-family step and their registries (DESIGN.md, "The sampler").

A sampler variant is a composition of one component per kind (lists for logits processors and
probability correctors). A component is a small dataclass whose fields are its parameters; it is
registered under a name with `@register_component(kind, name)` and built from config with
`build_component(kind, spec)`, where spec is a name or ``{name = "...", param = value, ...}``.

Each component declares `version` (enters the unit key: change it when outputs change) and
`extra_forward_passes_per_step` (its cost beyond one guided forward per step).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch

from mgt_common.errors import ConfigError
from mgt_common.registry import Registry, first_line

from .contract import check_component_class

if TYPE_CHECKING:  # pragma: no cover
    from .engine import StepContext

KINDS = (
    "guidance",
    "logits_processor",
    "probability_corrector",
    "token_sampler",
    "confidence",
    "reveal_schedule",
    "remask",
    "loop",
    "model_transform",  # model-side choices (samplers/model_transforms.py; implementations in bench.models.transforms)
)

REGISTRIES: dict[str, Registry[type]] = {kind: Registry(kind.replace("_", " ")) for kind in KINDS}


@dataclasses.dataclass
class Component:
    """Base of every sampler component; subclasses are dataclasses whose fields are parameters."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    extra_forward_passes_per_step: ClassVar[int] = 0

    def validate(self) -> None:
        """Raise ConfigError for out-of-range parameters (the message names the parameter and the fix)."""

    def spec(self) -> dict[str, Any]:
        """The resolved, hashable description: name, version and every parameter."""
        return {"name": self.name, "version": self.version, **dataclasses.asdict(self)}

    def check_composition(self, variant) -> None:
        """Raise ConfigError when this component cannot work with the rest of `variant`."""

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())
        return f"{self.name}({params})" if params else self.name


class Guidance(Component):
    """Combines conditional and unconditional logits at a step (the CFG schedule)."""

    kind = "guidance"

    def scale(self, ctx: "StepContext") -> float:
        raise NotImplementedError

    def needs_uncond(self, ctx: "StepContext") -> bool:
        return self.scale(ctx) != 1.0

    def combine(self, cond: torch.Tensor, uncond: torch.Tensor | None, ctx: "StepContext") -> torch.Tensor:
        """ℓ = ℓ_u + w_i (ℓ_c − ℓ_u) (Ho & Salimans 2022, eq. 6 on logits), or ℓ_c when w_i = 1."""
        w = self.scale(ctx)
        if w == 1.0 or uncond is None:
            return cond
        # In place on one fresh tensor: the same three roundings as uncond + w·(cond − uncond) (IEEE
        # addition commutes), with one logits-sized temporary instead of three (issue 7: step memory).
        guided = torch.sub(cond, uncond)
        guided.mul_(w)
        return guided.add_(uncond)


class LogitsProcessor(Component):
    """Transforms the guided logits ``(B, N, V)`` before the softmax."""

    kind = "logits_processor"

    def __call__(self, logits: torch.Tensor, ctx: "StepContext") -> torch.Tensor:
        raise NotImplementedError


class ProbabilityCorrector(Component):
    """Transforms the softmax probabilities ``(B, N, V)``; may keep state for one generation in ctx.state(self)."""

    kind = "probability_corrector"

    def __call__(self, probs: torch.Tensor, ctx: "StepContext") -> torch.Tensor:
        raise NotImplementedError


class TokenSampler(Component):
    """Draws a token for every position from probs ``(B, N, V)``; the engine keeps committed tokens."""

    kind = "token_sampler"

    def sample(self, probs: torch.Tensor, ctx: "StepContext") -> torch.Tensor:
        raise NotImplementedError


class Confidence(Component):
    """Scores positions ``(B, N)``; the lowest-scoring masked positions stay masked."""

    kind = "confidence"

    def score(self, probs: torch.Tensor, sampled: torch.Tensor, ctx: "StepContext") -> torch.Tensor:
        raise NotImplementedError


class RevealSchedule(Component):
    """How many positions stay masked after step i.

    Subclasses give the mask ratio as a pure function of progress r = (i+1)/T; the count is
    floor(N · ratio) clipped to [1, masked − 1], as in diffusers' AmusedScheduler.step.
    """

    kind = "reveal_schedule"

    def mask_ratio(self, progress: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mask_len(self, ctx: "StepContext") -> torch.Tensor:
        """``(B, 1)`` number of positions to keep masked after this step."""
        # float32 arithmetic on purpose: the reference computes the ratio on a float32 tensor, and the
        # floor of N·ratio must agree with it at every step.
        progress = torch.tensor([[ctx.step + 1]], device=ctx.device) / ctx.total_steps
        return clip_mask_len((ctx.seq_len * self.mask_ratio(progress)).floor(), ctx.unknown)


def clip_mask_len(mask_len: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """Clip to [1, masked − 1] per row: reveal at least one token, never re-mask more than were masked."""
    masked = unknown.sum(dim=-1, keepdim=True)
    return torch.clamp(torch.minimum(masked - 1, mask_len.to(masked.dtype)), min=1).long()


class RemaskPolicy(Component):
    """Which positions are masked after the step (may re-open committed tokens)."""

    kind = "remask"

    def select(self, confidence: torch.Tensor, mask_len: torch.Tensor, ctx: "StepContext") -> torch.Tensor:
        """Boolean ``(B, N)``: True where the position is masked after this step."""
        raise NotImplementedError


class Loop(Component):
    """The outer loop: T guided steps, or more passes for zig-zag-like choices."""

    kind = "loop"

    def run(self, engine, generation) -> None:
        raise NotImplementedError

    def forward_passes(self, total_steps: int) -> int:
        """Transformer calls per image at `total_steps` (before per-step component extras)."""
        return total_steps


def register_component(kind: str, name: str):
    """Class decorator: ``@register_component("reveal_schedule", "cosine")``; makes the class a dataclass."""
    if kind not in REGISTRIES:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")

    def add(cls):
        if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
            cls = dataclasses.dataclass(cls)
        cls.name = name
        cls.kind = kind
        # Fail at import, not mid-generation, when a method cannot take the engine's arguments (issue 15).
        check_component_class(kind, name, cls, _kind_base(kind))
        REGISTRIES[kind].register(name, cls)
        return cls

    return add


def _kind_base(kind: str) -> type | None:
    """The base class of a decision kind: the direct subclass of `Component` whose `kind` it is."""
    return next((base for base in Component.__subclasses__() if base.kind == kind), None)


def component_class(kind: str, name: str) -> type:
    _ensure_builtins()
    return REGISTRIES[kind].get(name)


def build_component(kind: str, spec: Any) -> Component:
    """A component from a name or a ``{name = ..., **params}`` mapping, with parameters checked."""
    _ensure_builtins()
    if isinstance(spec, Component):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"{kind}: a table needs a 'name' key (one of {', '.join(REGISTRIES[kind].names())})")
    else:
        raise ConfigError(f"{kind}: expected a component name or a table with 'name', got {spec!r}")
    cls = REGISTRIES[kind].get(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        valid = ", ".join(fields) or "(none)"
        raise ConfigError(f"{kind} {name!r}: unknown parameter {unknown[0]!r}; valid parameters: {valid}")
    hints = typing.get_type_hints(cls)
    checked = {key: _coerce(kind, name, key, value, hints.get(key)) for key, value in params.items()}
    component = cls(**checked)
    component.validate()
    return component


def _coerce(kind: str, name: str, key: str, value: Any, hint) -> Any:
    where = f"{kind} {name!r} parameter {key!r}"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and type(None) in args):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else None
        return type(value)(_coerce(kind, name, key, v, inner) for v in value) if inner is not Ellipsis else value
    return value


def require(condition: bool, kind: str, name: str, message: str) -> None:
    """Raise a ConfigError naming the component unless `condition` holds (for `validate`)."""
    if not condition:
        raise ConfigError(f"{kind} {name!r}: {message}")


def list_components() -> dict[str, list[tuple[str, str]]]:
    """Every registered component with its one-line description, by kind (for `--list`)."""
    _ensure_builtins()
    return {kind: [(n, first_line(cls.__doc__)) for n, cls in REGISTRIES[kind].items()] for kind in KINDS}


_builtins_loaded = False


def _ensure_builtins() -> None:
    """Import the built-in component modules once (their decorators fill the registries)."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from . import builtin  # noqa: F401
