"""What a configuration resolves to before any model is loaded: variants, prompts and metrics.

Resolving checks every name and parameter (variants and their components, the reward metrics of
search loops, the prompt set, the metrics) so that a mistake fails with a `UserError` (exit 2) before
a model loads or a file is written. `--check` and a run resolve a config the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from samplers.variant import SamplerVariant

from .config import BenchConfig
from .prompts import Prompt, load_prompts
from .rewards import check_reward_metrics
from .scoring import build_metrics, require_per_image_metric
from .sweep import Sweep, build_variants, steps_by_variant


@dataclass
class ResolvedConfig:
    #: the grid of variants (one point per variant unless steps, guidance or parameters are lists; bench/sweep.py)
    sweep: Sweep
    variants: dict[str, SamplerVariant]
    #: each variant's step count (a sweep point's own)
    variant_steps: dict[str, int]
    #: the prompt set, cut to the config's ``limit``
    prompts: list[Prompt]
    #: the metrics by label, built for `device` (weights load later, on first use)
    metrics: dict[str, Any]


def resolve_config(config: BenchConfig, device: str) -> ResolvedConfig:
    sweep = config.sweep()
    variants = build_variants(sweep, config.variants)
    check_reward_metrics(variants.values())
    source, params = config.prompt_source
    prompts = load_prompts(source, **params)
    prompts = prompts[: config.limit] if config.limit else prompts
    metrics = build_metrics(config.metrics, device)
    require_per_image_metric(metrics)
    return ResolvedConfig(sweep, variants, steps_by_variant(sweep), prompts, metrics)
