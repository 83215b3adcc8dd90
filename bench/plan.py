"""Planning: the units of a benchmark and their keys (DESIGN.md, "The flow").

A unit is (model, sampler variant, prompt, seed). Its key hashes everything that can change its image:
the model's identity (id, revision, dtype, resolution), the device type (random streams differ between
CPU and CUDA generators), steps, guidance, the variant's resolved components with their versions, the
prompt text, the negative prompt and the seed. The variant's *name* is not in the key: two names for
the same composition share their images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from samplers.variant import SamplerVariant

from .config import BenchConfig, stable_hash
from .prompts import Prompt


@dataclass(frozen=True)
class Unit:
    key: str
    variant: str
    prompt: Prompt
    seed: int
    #: position in the plan (prompt order, then seed): gives tables a stable order.
    order: int
    #: the unit's steps and guidance scale (a sweep gives each variant its own; bench/sweep.py)
    steps: int | None = None
    guidance: float | None = None


def unit_key(model_identity: dict[str, Any], config: BenchConfig, variant: SamplerVariant, prompt: Prompt,
             seed: int, negative_prompt: str | None, steps: int | None = None, guidance: float | None = None) -> str:
    """`steps` / `guidance`: a sweep point's own values; None takes the config's (an unswept config keeps
    exactly the keys it always had, int steps and the guidance as written)."""
    return stable_hash({
        "model": model_identity,
        "device_type": str(config.device).split(":")[0],
        "steps": config.steps if steps is None else steps,
        "guidance": config.guidance if guidance is None else guidance,
        "sampler": variant.resolved(),
        "prompt": prompt.text,
        "negative_prompt": negative_prompt,
        "seed": seed,
    }, length=32)


def seeds_for(prompt: Prompt, config_seeds: Sequence[int]) -> list[int]:
    """A prompt with a fixed seed (the paper's prompt→seed files) uses it alone; others use the config's seeds."""
    return [prompt.seed] if prompt.seed is not None else list(config_seeds)


def make_plan(config: BenchConfig, prompts: Sequence[Prompt], variants: dict[str, SamplerVariant],
              model_identity: dict[str, Any], negative_prompt: str | None, sweep=None) -> list[Unit]:
    """Every unit, grouped by variant (in `samplers` order; a sweep's points in grid order), then prompt
    order, then seed. `sweep` (bench.sweep.Sweep, default: the config's) gives each variant its steps and
    guidance; an unswept variant is keyed with the config's values as written."""
    sweep = sweep or config.sweep()
    units = []
    for point in sweep.points:
        name = point.name
        # unswept run-level values enter the key as the config wrote them (e.g. guidance 3 stays int 3)
        steps = None if not isinstance(config.steps, list) else point.steps
        guidance = None if not isinstance(config.guidance, list) else point.guidance
        order = 0
        for prompt in prompts:
            for seed in seeds_for(prompt, config.seeds):
                key = unit_key(model_identity, config, variants[name], prompt, seed, negative_prompt, steps, guidance)
                units.append(Unit(key=key, variant=name, prompt=prompt, seed=seed, order=order,
                                  steps=point.steps, guidance=point.guidance))
                order += 1
    return units
