"""Planning: the units of a benchmark and their keys (docs/design.md, "The flow of a run").

A unit is (model, sampler variant, prompt, seed). Its key hashes everything that can change its image:
the model's identity (id, revision, dtype, resolution), the device type (random streams differ between
CPU and CUDA generators), steps, guidance, the variant's resolved components with their versions, the
prompt text, the negative prompt and the seed. The variant's *name* is not in the key: two names for
the same composition share their images.
"""
from __future__ import annotations

import warnings
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


class DuplicatePromptWarning(UserWarning):
    """Prompts of a set share a text (copies would count as independent evidence)."""


def collapse_duplicate_prompts(prompts: Sequence[Prompt]) -> tuple[list[Prompt], list[str]]:
    """Keep the first of prompts with the same text and the same (fixed or config) seed; name the others.

    Identical text and seed give byte-identical images in every variant, so a copy adds no evidence
    but would count as another independent prompt in every test and interval. Copies of a text with a
    *different* fixed seed (e.g. ChallengeBench, 220 prompts listed twice with seeds) stay: they are
    further seeds of one prompt, and the statistics cluster them by text. Returns the kept prompts in
    their order and one message per collapsed or re-seeded text.
    """
    first: dict[tuple[str, int | None], Prompt] = {}
    dropped: dict[str, list[str]] = {}
    reseeded: dict[str, list[str]] = {}
    by_text: dict[str, Prompt] = {}
    kept = []
    for prompt in prompts:
        key = (prompt.text, prompt.seed)
        if key in first:
            dropped.setdefault(first[key].id, []).append(prompt.id)
            continue
        first[key] = prompt
        if prompt.text in by_text:
            reseeded.setdefault(by_text[prompt.text].id, []).append(prompt.id)
        else:
            by_text[prompt.text] = prompt
        kept.append(prompt)
    messages = [f"prompts {', '.join(ids)} repeat the text of prompt {keep} ({_short(first_text(prompts, keep))}) "
                f"with the same seed: collapsed into {keep}" for keep, ids in dropped.items()]
    messages += [f"prompts {', '.join(ids)} repeat the text of prompt {keep} ({_short(first_text(prompts, keep))}) "
                 f"with other fixed seeds: the statistics count them as seeds of one prompt" for keep, ids in reseeded.items()]
    return kept, messages


def first_text(prompts: Sequence[Prompt], prompt_id: str) -> str:
    return next(p.text for p in prompts if p.id == prompt_id)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def make_plan(config: BenchConfig, prompts: Sequence[Prompt], variants: dict[str, SamplerVariant],
              model_identity: dict[str, Any], negative_prompt: str | None, sweep=None) -> list[Unit]:
    """Every unit, grouped by variant (in `samplers` order; a sweep's points in grid order), then prompt
    order, then seed. `sweep` (bench.sweep.Sweep, default: the config's) gives each variant its steps and
    guidance; an unswept variant is keyed with the config's values as written.

    Prompts repeating an earlier prompt's text and seed are left out, with a `DuplicatePromptWarning`
    naming them (see `collapse_duplicate_prompts`).
    """
    sweep = sweep or config.sweep()
    prompts, messages = collapse_duplicate_prompts(prompts)
    for message in messages:
        warnings.warn(message, DuplicatePromptWarning, stacklevel=2)
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
