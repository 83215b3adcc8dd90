"""Sampler variants: named compositions of components, built from config (docs/design.md, "The sampler").

A variant is written in TOML as a table whose keys are decision kinds::

    [variants.cfg-ramp]
    base = "vanilla"                                  # start from another variant (optional)
    guidance = { name = "linear", start = 1.0 }       # a component: name or table
    logits_processors = []                            # lists for the two list kinds
    description = "CFG rising from 1 to the run's scale"

Unnamed kinds come from `base` (default: "vanilla"). Built-in variants ("presets", all in samplers/presets.py)
are registered in `VARIANT_PRESETS` by name, so `samplers = ["vanilla", "cfg-linear"]` works without any table.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mgt_common.errors import ConfigError
from mgt_common.registry import broken_plugins_note

from .components import (
    Confidence,
    Guidance,
    LogitsProcessor,
    Loop,
    ProbabilityCorrector,
    RemaskPolicy,
    RevealSchedule,
    TokenSampler,
    build_component,
)
from .fast_step import STEP_MODES, fast_support
from .model_transforms import ModelTransform
# re-exported: plugins and configs register named variants through samplers.variant.register_variant
from .presets import VANILLA_SPEC, VARIANT_PRESETS, register_variant  # noqa: F401

SINGLE_KINDS = ("guidance", "token_sampler", "confidence", "reveal_schedule", "remask", "loop")
LIST_KINDS = {"logits_processors": "logits_processor", "probability_correctors": "probability_corrector",
              "model_transforms": "model_transform"}
VARIANT_KEYS = ("base", "description", "mode", *SINGLE_KINDS, *LIST_KINDS)


@dataclass
class SamplerVariant:
    name: str
    guidance: Guidance
    token_sampler: TokenSampler
    confidence: Confidence
    reveal_schedule: RevealSchedule
    remask: RemaskPolicy
    loop: Loop
    logits_processors: list[LogitsProcessor] = field(default_factory=list)
    probability_correctors: list[ProbabilityCorrector] = field(default_factory=list)
    #: model-side choices applied to the backend's network while the variant runs (samplers/model_transforms.py).
    model_transforms: list[ModelTransform] = field(default_factory=list)
    description: str = ""
    #: "exact" (the default: token-identical reference arithmetic) or "fast" (one fused pass over the
    #: logits, distribution-equivalent; samplers/fast_step.py).
    mode: str = "exact"

    def components(self):
        yield from self.model_transforms
        yield self.guidance
        yield from self.logits_processors
        yield from self.probability_correctors
        yield from (self.token_sampler, self.confidence, self.reveal_schedule, self.remask, self.loop)

    def resolved(self) -> dict[str, Any]:
        """Every component with its version and parameters: what enters a unit's key.

        ``model_transforms`` appears only when the list is non-empty, so that variants without one keep
        the keys (and the finished images) they had before the kind existed.
        """
        resolved = {
            "guidance": self.guidance.spec(),
            "logits_processors": [c.spec() for c in self.logits_processors],
            "probability_correctors": [c.spec() for c in self.probability_correctors],
            "token_sampler": self.token_sampler.spec(),
            "confidence": self.confidence.spec(),
            "reveal_schedule": self.reveal_schedule.spec(),
            "remask": self.remask.spec(),
            "loop": self.loop.spec(),
            # only when not the default, so that exact variants keep the unit keys they always had
            **({"mode": self.mode} if self.mode != "exact" else {}),
        }
        if self.model_transforms:
            resolved["model_transforms"] = [c.spec() for c in self.model_transforms]
        return resolved

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()[:16]

    def step_forward_passes(self, step: int, total_steps: int) -> int:
        """Transformer calls per image of one `SamplerEngine.step` at index `step`: its guided forward plus
        the extra passes of the components it calls. Every step calls the guidance, the logits processors,
        the probability correctors and the token sampler; the last step reveals everything, so only the
        others call the confidence, the reveal schedule and the re-mask policy (`SamplerEngine.commit`)."""
        every_step = [self.guidance, *self.logits_processors, *self.probability_correctors, self.token_sampler]
        before_last = [self.confidence, self.reveal_schedule, self.remask]
        called = every_step if step == total_steps - 1 else every_step + before_last
        return 1 + sum(component.extra_forward_passes() for component in called)

    def forward_passes(self, total_steps: int) -> int:
        """Declared transformer calls per image: the loop's steps at their `step_forward_passes` (the engine
        counts the real calls, and for every fixed reveal schedule the two are equal)."""
        return self.loop.forward_passes(total_steps, lambda step: self.step_forward_passes(step, total_steps))

    def summary(self) -> str:
        parts = [c.describe() for c in self.components()]
        return " · ".join(parts)


def resolve_spec(name: str, tables: Mapping[str, Mapping[str, Any]] | None = None,
                 _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The full spec of variant `name`: config tables first, then presets, following `base` chains."""
    tables = tables or {}
    if name in _seen:
        raise ConfigError(f"variants: {' → '.join((*_seen, name))} is a cycle of 'base' references")
    if name in tables:
        own = dict(tables[name])
    elif name in VARIANT_PRESETS:
        own = dict(VARIANT_PRESETS.get(name))
    else:
        known = sorted(set(tables) | set(VARIANT_PRESETS.names()))
        import difflib
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown sampler variant {name!r}.{hint} Known: {', '.join(known)}. "
                          f"Define it under [variants.NAME] or pick a known one.{broken_plugins_note(name)}")
    unknown = sorted(set(own) - set(VARIANT_KEYS))
    if unknown:
        raise ConfigError(f"variants.{name}: unknown key {unknown[0]!r}; valid keys: {', '.join(VARIANT_KEYS)}")
    base_name = own.pop("base", "vanilla")
    if base_name == name:  # e.g. a config table that redefines "vanilla" itself
        base = copy.deepcopy(VANILLA_SPEC)
    elif name == "vanilla" and name not in tables:
        base = {}
    else:
        base = resolve_spec(base_name, tables, (*_seen, name))
    merged = {**base, **own}
    if "description" not in own and base:
        # Derived from the components that differ, so a variant registered without a description still
        # says what it is in --list and the report.
        changed = "; ".join(f"{key} = {_label(value)}" for key, value in own.items()) or "no changes"
        merged["description"] = f"{base_name} with {changed}"
    return merged


def _label(value: Any) -> str:
    """A component spec as one short phrase: ``center-first`` or ``linear(start=1.0)``; lists joined with +."""
    if isinstance(value, list):
        return " + ".join(_label(v) for v in value) or "none"
    if isinstance(value, Mapping):
        params = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '?')}({params})" if params else str(value.get("name", "?"))
    return str(value)


def build_variant(name: str, tables: Mapping[str, Mapping[str, Any]] | None = None) -> SamplerVariant:
    """A ready-to-run variant; raises ConfigError naming the variant and key on any bad input."""
    spec = resolve_spec(name, tables)
    try:
        parts = {kind: build_component(kind, spec[kind]) for kind in SINGLE_KINDS}
        lists = {}
        for key, kind in LIST_KINDS.items():
            items = spec.get(key, [])
            if not isinstance(items, list):
                raise ConfigError(f"{key}: expected a list of components, got {items!r}")
            lists[key] = [build_component(kind, item) for item in items]
    except ConfigError as exc:
        raise ConfigError(f"variants.{name}: {exc}") from None
    mode = spec.get("mode", "exact")
    if mode not in STEP_MODES:
        raise ConfigError(f"variants.{name}: mode must be one of {', '.join(STEP_MODES)}, got {mode!r}")
    variant = SamplerVariant(name=name, description=str(spec.get("description", "")), mode=mode, **parts, **lists)
    if mode == "fast" and (reason := fast_support(variant)) is not None:
        raise ConfigError(f"variants.{name}: mode \"fast\" cannot run this composition: {reason}; use mode = \"exact\"")
    for component in variant.components():
        try:
            component.check_composition(variant)
        except ConfigError as exc:
            raise ConfigError(f"variants.{name}: {exc}") from None
    return variant

