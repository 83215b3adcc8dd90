"""What a configuration resolves to before any model is loaded: variants, prompts and metrics.

Resolving checks every name and parameter (variants and their components, the reward metrics of
search loops, the prompt set, the metrics) so that a mistake fails with a `UserError` (exit 2) before
a model loads or a file is written. `--check` and a run resolve a config the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metrics.base import METRICS, PerImageMetric
from mgt_common.errors import ConfigError
from samplers.variant import SamplerVariant

from .config import BenchConfig
from .params import check_parameters
from .prompts import PROMPT_SETS, Prompt, load_prompts
from .rewards import check_reward_metrics
from .scoring import build_metrics, metric_specs, require_per_image_metric
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
    check_prompt_parameters(source, params)
    prompts = load_prompts(source, **params)
    prompts = prompts[: config.limit] if config.limit else prompts
    check_metric_parameters(config.metrics)
    metrics = build_metrics(config.metrics, device)
    require_per_image_metric(metrics)
    check_primary_metric(config, metrics)
    return ResolvedConfig(sweep, variants, steps_by_variant(sweep), prompts, metrics)


def check_prompt_parameters(source: str, params: dict[str, Any]) -> None:
    """A named set's parameters against its loader's signature; a prompt file takes none."""
    if source in PROMPT_SETS:
        check_parameters(PROMPT_SETS.get(source), params, f"prompts ({source})")
    elif params:
        raise ConfigError(f"prompts: {source!r} is a file, which takes no parameters (got {', '.join(params)}); "
                          "parameters belong to a named prompt set")


def check_metric_parameters(entries) -> None:
    """Each metric table's parameters against the metric class's signature (`device`, `batch_size` and
    `label` are the harness's own)."""
    for label, name, params in metric_specs(entries):
        cls = METRICS.get(name)
        always = ("device", "batch_size") if issubclass(cls, PerImageMetric) else ("device",)
        check_parameters(cls, params, f"metrics: {label!r}", always=always)


def check_primary_metric(config: BenchConfig, metrics: dict[str, Any]) -> None:
    """The headline's metric must be a per-image one: win rates pair images, and a set metric has one value."""
    primary = (config.report or {}).get("primary_metric")
    if primary is not None and primary in metrics and not isinstance(metrics[primary], PerImageMetric):
        per_image = [label for label, m in metrics.items() if isinstance(m, PerImageMetric)]
        raise ConfigError(f"report.primary_metric: {primary!r} is a set metric; the headline needs a per-image "
                          f"metric ({', '.join(per_image) or 'none configured'})")
