"""The decision kinds of the MaskGIT-family step, their base classes and their registries (docs/design.md,
"The sampler: one loop, pluggable decisions").

A sampler variant is a composition of one component per kind (lists for logits processors, probability
correctors and model transforms). A component is a small dataclass whose fields are its parameters; it
is registered under a name with `@register_component(kind, name)` and built from config with
`build_component(kind, spec)`, where spec is a name or ``{name = "...", param = value, ...}``.

The base classes below are the contract with the engine (samplers/contract.py reads it from their
signatures): the engine calls their methods positionally, with the step's `samplers.engine.StepContext`
as ``ctx``. Each component declares `version` (enters the unit key: change it when outputs change),
`extra_forward_passes()` (transformer calls beyond the step's own forward) and `fused()` (its form in
the fast step's single pass, or None).

Built-in components register lazily: each kind's registry imports the modules in `BUILTIN_MODULES` the
first time it is read, and plugins register through the ``mgt_bench.samplers`` entry points or
``--plugin FILE.py`` (mgt_common.registry).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, ClassVar, Mapping

import torch

from mgt_common.errors import ConfigError
from mgt_common.registry import Registry, first_line

from .contract import check_component_class
from .fused_step import FusedGuidance

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

#: The modules whose `@register_component` decorators register each kind's built-in components, imported
#: the first time the kind's registry is read. The model-side implementations live in
#: bench/models/transforms (samplers never import bench); importing `bench.models` registers them.
BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "guidance": ("samplers.guidance", "samplers.guidance_projection", "samplers.pag"),
    "logits_processor": ("samplers.noise_regularization",),
    "probability_corrector": ("samplers.differential",),
    "token_sampler": ("samplers.token_samplers",),
    "confidence": ("samplers.confidence", "samplers.halton"),
    "reveal_schedule": ("samplers.reveal", "samplers.adaptive", "samplers.threshold", "samplers.halton",
                        "samplers.remdm"),
    "remask": ("samplers.remasking", "samplers.remdm", "samplers.planning"),
    "loop": ("samplers.loops", "samplers.zigzag", "samplers.search"),
    "model_transform": (),
}

REGISTRIES: dict[str, Registry[type]] = {
    kind: Registry(kind.replace("_", " "), builtins=BUILTIN_MODULES[kind]) for kind in KINDS}


@dataclasses.dataclass
class Component:
    """Base of every sampler component; subclasses are dataclasses whose fields are parameters."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    #: Methods of which a component of this kind must define at least one (the base class only raises there).
    required_methods: ClassVar[tuple[str, ...]] = ()
    #: The methods a fused form answers for (see `fused_form`): the step method it replaces, or one that
    #: could read what the fused pass does not build.
    fused_replaces: ClassVar[tuple[str, ...]] = ()

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

    def extra_forward_passes(self) -> int:
        """Transformer calls that one call of this component's step method makes besides the step's own
        forward (PAG's `combine`: 1; the self-critic's `select`: 1). The engine counts the real calls;
        this is the declaration `SamplerVariant.forward_passes` adds up, and the two must agree."""
        return 0

    def fused(self) -> Any:
        """This component's form in the fast step's single pass over the logits (samplers/fused_step.py),
        or None when it has none: a variant with ``mode = "fast"`` is then refused when it is built. Each
        kind's base class says what the form is and what it defaults to. Define it in the class that
        defines the kind's `fused_replaces` methods: `fused_form` ignores a form inherited from above them."""
        return None


class Guidance(Component):
    """Combines conditional and unconditional logits at a step (the CFG schedule)."""

    kind = "guidance"
    required_methods = ("scale",)
    fused_replaces = ("combine",)

    def scale(self, ctx) -> float:
        raise NotImplementedError

    def needs_uncond(self, ctx) -> bool:
        return self.scale(ctx) != 1.0

    def combine(self, cond: torch.Tensor, uncond: torch.Tensor | None, ctx) -> torch.Tensor:
        """ℓ = ℓ_u + w_i (ℓ_c − ℓ_u) (Ho & Salimans 2022, eq. 6 on logits), or ℓ_c when w_i = 1."""
        w = self.scale(ctx)
        if w == 1.0 or uncond is None:
            return cond
        # In place on one fresh tensor: the same three roundings as uncond + w·(cond − uncond) (IEEE
        # addition commutes), with one logits-sized temporary instead of three (a logits tensor is
        # 128 MiB per image at Meissonic's 4096 positions × 8192 codes).
        guided = torch.sub(cond, uncond)
        guided.mul_(w)
        return guided.add_(uncond)

    def fused(self) -> FusedGuidance | None:
        """The CFG line of `combine` with this guidance's w_i (`scale`) in the pass; a guidance that combines
        the logits its own way (APG, CFG-Zero*, PAG) overrides `combine`, so this form is not its own."""
        return FusedGuidance(self.scale, self.needs_uncond)


class LogitsProcessor(Component):
    """Transforms the guided logits ``(B, N, V)`` before the softmax."""

    kind = "logits_processor"
    required_methods = ("__call__",)
    fused_replaces = ("__call__",)

    def __call__(self, logits: torch.Tensor, ctx) -> torch.Tensor:
        raise NotImplementedError

    def fused(self) -> Any:
        """A `fused_step.FusedLogitsProcessor` (a kernel applied to the guided logits with a per-step
        scalar), or None (the default). The pass has one processor slot."""
        return None


class ProbabilityCorrector(Component):
    """Transforms the softmax probabilities ``(B, N, V)``; may keep state for one generation in ctx.state(self)."""

    kind = "probability_corrector"
    required_methods = ("__call__",)
    fused_replaces = ("__call__",)

    def __call__(self, probs: torch.Tensor, ctx) -> torch.Tensor:
        raise NotImplementedError

    def fused(self) -> None:
        """None: the fused pass never builds the probability tensor a corrector transforms."""
        return None


class TokenSampler(Component):
    """Draws a token for every position from probs ``(B, N, V)``; the engine keeps committed tokens."""

    kind = "token_sampler"
    required_methods = ("sample",)
    fused_replaces = ("sample",)

    def sample(self, probs: torch.Tensor, ctx) -> torch.Tensor:
        raise NotImplementedError

    def fused(self) -> Any:
        """A `fused_step.FusedTokenSampler` (a draw kernel and its temperature), or None (the default)."""
        return None


class Confidence(Component):
    """Scores positions ``(B, N)``; the lowest-scoring masked positions stay masked."""

    kind = "confidence"
    required_methods = ("score",)
    fused_replaces = ("score",)

    def score(self, probs: torch.Tensor, sampled: torch.Tensor, ctx) -> torch.Tensor:
        raise NotImplementedError

    def fused(self) -> Any:
        """A `fused_step.FusedConfidence` (the per-position statistic the pass computes and the score made
        from it), or None (the default)."""
        return None


class RevealSchedule(Component):
    """How many positions stay masked after step i.

    Subclasses give the mask ratio as a pure function of progress r = (i+1)/T; the count is
    floor(N · ratio) clipped to [1, masked − 1], as in diffusers' AmusedScheduler.step.
    """

    kind = "reveal_schedule"
    required_methods = ("mask_ratio", "mask_len")
    fused_replaces = ("mask_len",)

    def mask_ratio(self, progress: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mask_len(self, ctx) -> torch.Tensor:
        """``(B, 1)`` number of positions to keep masked after this step."""
        # float32 arithmetic on purpose: the reference computes the ratio on a float32 tensor, and the
        # floor of N·ratio must agree with it at every step.
        progress = torch.tensor([[ctx.step + 1]], device=ctx.device) / ctx.total_steps
        ratio = self.mask_ratio(progress)
        if not bool(torch.isfinite(torch.as_tensor(ratio)).all()):  # one number: floor() would hide a NaN
            from .output_checks import NonFiniteOutput, component_label

            raise NonFiniteOutput(f"{component_label(self)}: mask_ratio() returned {ratio} at step {ctx.step} of "
                                  f"{ctx.total_steps}; the masked fraction must be a finite number (docs/plugins.md)")
        return clip_mask_len((ctx.seq_len * ratio).floor(), ctx.unknown)

    def fused(self) -> "RevealSchedule | None":
        """The schedule itself, which runs after the pass: its count depends on the progress alone
        (`mask_ratio`). A schedule that overrides `mask_len` has a fused form only if it defines `fused`
        too, which it does when it reads nothing the pass leaves out: the pass sets ``ctx.sampled`` and
        ``ctx.confidence``, never ``ctx.probs`` (so the adaptive counts, which read it, have none)."""
        return self


def clip_mask_len(mask_len: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """Clip to [1, masked − 1] per row: reveal at least one token, never re-mask more than were masked."""
    masked = unknown.sum(dim=-1, keepdim=True)
    return torch.clamp(torch.minimum(masked - 1, mask_len.to(masked.dtype)), min=1).long()


class RemaskPolicy(Component):
    """Which positions are masked after the step (may re-open committed tokens)."""

    kind = "remask"
    required_methods = ("select",)
    fused_replaces = ("select",)

    def select(self, confidence: torch.Tensor, mask_len: torch.Tensor, ctx) -> torch.Tensor:
        """Boolean ``(B, N)``: True where the position is masked after this step."""
        raise NotImplementedError

    def fused(self) -> "RemaskPolicy | None":
        """The policy itself, which runs after the pass, if it reads only the confidence and the count
        (never ``ctx.probs``, which the pass does not build); None by default."""
        return None


class Loop(Component):
    """The outer loop: T guided steps, or more passes for zig-zag-like choices."""

    kind = "loop"
    required_methods = ("run",)

    def run(self, engine, generation) -> None:
        raise NotImplementedError

    def forward_passes(self, total_steps: int, step_passes: Callable[[int], int]) -> int:
        """Transformer calls per image at `total_steps`, given ``step_passes(i)``: the calls of one engine
        step at index i (`SamplerVariant.step_forward_passes`). T steps here."""
        return sum(step_passes(step) for step in range(total_steps))

    def fused(self) -> "Loop":
        """The loop itself: it drives `SamplerEngine.step`, which runs the fused pass in fast mode."""
        return self


#: What `ModelTransform.attach` returns: call it once to restore the model.
Restore = Callable[[], None]


class ModelTransform(Component):
    """Changes the backend's network while a variant runs (token merging, quantization, caching; the kind is
    described in samplers/model_transforms.py)."""

    kind = "model_transform"
    required_methods = ("attach",)
    #: One line for docs and the manifest: what the transform saves or costs.
    cost_effect: ClassVar[str] = ""
    #: attach order (lower first, then list order): a transform that swaps the whole network for a
    #: changed copy (quantization) must come before those that patch blocks of the network in use.
    order: ClassVar[int] = 10

    def neutral(self) -> bool:
        """True when the transform leaves the network's outputs exactly as they are (then it is skipped)."""
        return False

    def check_model(self, model) -> None:
        """Raise ConfigError when `model` (a backend) cannot carry this transform."""

    def attach(self, model) -> Restore:
        """Change `model`'s network in place (or swap in a changed copy); return the undo."""
        raise NotImplementedError

    #: How `attach` changes the blocks it addresses: "" (it does not patch blocks), "replace" (its own
    #: forward replaces the block's, so no other transform may patch that block before it) or "wrap" (it
    #: calls whatever forward it finds, so it composes with a patch attached earlier).
    block_patch: ClassVar[str] = ""

    def patched_blocks(self, model) -> list[str]:
        """Qualified names of the blocks whose forward `attach` patches (see `block_patch`); the harness
        refuses a variant whose transforms would patch one block in ways that do not compose."""
        return []

    def cost_note(self, model) -> str | None:
        """None, or why the seconds and memory measured with this transform are not what it would cost
        with a real kernel (a simulated low-precision layout); the report's cost table marks the variant."""
        return None

    def fused(self) -> "ModelTransform":
        """The transform itself: it changes the network, which the fused step calls like the exact one."""
        return self


#: The base class of every decision kind: what a component of that kind must subclass.
KIND_BASES: dict[str, type] = {base.kind: base for base in (
    Guidance, LogitsProcessor, ProbabilityCorrector, TokenSampler, Confidence, RevealSchedule, RemaskPolicy, Loop,
    ModelTransform)}


def fused_form(component: Component) -> Any:
    """`component.fused()`, or None when that form was written above the class that defines one of the
    kind's `fused_replaces` methods: a form stands in for the code it was written next to, so a subclass
    that changes `sample`, `score`, `combine`, … without its own `fused()` runs in exact mode only."""
    cls = type(component)
    owner = _defining_class(cls, "fused")
    if any(not issubclass(owner, _defining_class(cls, method)) for method in component.fused_replaces):
        return None
    return component.fused()


def _defining_class(cls: type, attribute: str) -> type:
    return next(klass for klass in cls.__mro__ if attribute in vars(klass))


def register_component(kind: str, name: str):
    """Class decorator: ``@register_component("reveal_schedule", "cosine")``; makes the class a dataclass."""
    if kind not in REGISTRIES:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")

    def add(cls):
        if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
            cls = dataclasses.dataclass(cls)
        cls.name = name
        cls.kind = kind
        # Fail at import, not mid-generation, when a method cannot take the engine's arguments.
        check_component_class(kind, name, cls, KIND_BASES[kind])
        REGISTRIES[kind].register(name, cls)
        return cls

    return add


def component_class(kind: str, name: str) -> type:
    return REGISTRIES[kind].get(name)


def build_component(kind: str, spec: Any) -> Component:
    """A component from a name or a ``{name = ..., **params}`` mapping, with parameters checked."""
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
    return {kind: [(n, first_line(cls.__doc__)) for n, cls in REGISTRIES[kind].items()] for kind in KINDS}
