"""manifest.json: what a run is (the resolved configuration and its hash), what it ran, and how long it took.

The manifest is rewritten at every stage boundary (status ``generating`` → ``scored`` → ``complete``,
or ``interrupted``); `created`, the model's description and the throughput survive from the previous
write when this invocation has none (a ``--merge`` never loads the model). Stage times of a resumed
run are summed over its invocations (docs/rundir.md, "Timings of a resumed run").
"""
from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mgt_common.registry import loaded_plugins

from ..sharding import ShardRecords
from .provenance import device_description, git_commit, now, package_versions
from .store import TOOL, RunDirectory

if TYPE_CHECKING:  # pragma: no cover
    from ..config import BenchConfig
    from ..plan import Unit

#: timings summed over the invocations of a resumed run (plan time is per invocation)
CUMULATIVE_TIMINGS = ("generate_seconds", "score_seconds", "report_seconds")


def generation_values(config: "BenchConfig") -> dict[str, str]:
    """The hash of each configuration key that decides images (so a refusal can name the keys that changed)."""
    from ..config import GENERATION_KEYS, stable_hash

    return {key: stable_hash(config.values[key]) for key in GENERATION_KEYS}


class Manifest:
    """The manifest of one run directory, as this process writes it.

    ``model`` and ``negative_prompt`` are set once the model is planned; ``prior_timings`` holds the
    stage times of earlier invocations (`resume_timings`).
    """

    def __init__(self, store: RunDirectory, config: "BenchConfig", sweep, variants: Mapping[str, Any],
                 variant_steps: Mapping[str, int], metrics: Mapping[str, Any], prompt_count: int, device: str):
        self.store, self.config, self.sweep = store, config, sweep
        self.variants, self.variant_steps, self.metrics = variants, variant_steps, metrics
        self.prompt_count, self.device = prompt_count, device
        self.model: dict[str, Any] | None = None
        self.negative_prompt: str | None = None
        self.prior_timings: dict[str, float] = {}

    def resume_timings(self) -> None:
        """Keep the stage times an earlier invocation of this run recorded (they are summed with this one's)."""
        self.prior_timings = dict((self.store.read_manifest() or {}).get("timings") or {})

    def cumulative(self, timings: Mapping[str, float]) -> dict[str, float]:
        """Stage seconds summed over every invocation of this run (a resumed run keeps what came before)."""
        return {key: round(self.prior_timings.get(key, 0.0) + value, 3) if key in CUMULATIVE_TIMINGS else value
                for key, value in timings.items()}

    def build(self, units: Sequence["Unit"], timings: dict[str, float], status: str, throughput=None,
              tables: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The manifest; `tables` (name → sha256, once the tables are written) is what `--report-only`
        verifies them against (bench/rundir/finished.py)."""
        previous = self.store.read_manifest() or {}
        config, sweep = self.config, self.sweep
        return {
            "tool": TOOL,
            "status": status,
            "created": previous.get("created", now()),
            "updated": now(),
            "config_source": config.source,
            "config": config.to_dict(),
            "config_hash": config.generation_hash(),
            "generation_keys": generation_values(config),
            # a sweep pairs each point with the baseline at its steps and guidance (manifest["sweep"]); the
            # run's single baseline is the first point's (unswept: the config's baseline itself)
            "baseline": sweep.reference_baseline,
            "variants": {name: self.variant_entry(name, variant) for name, variant in self.variants.items()},
            **({"sweep": sweep.record()} if sweep.is_sweep else {}),
            "metrics": {label: {**m.describe(), "notes": m.notes() if hasattr(m, "notes") else []}
                        for label, m in self.metrics.items()},
            "model": self.model or previous.get("model"),
            "prompts": {"source": config.prompt_source[0], "count": self.prompt_count},
            "seeds": sorted({u.seed for u in units}),
            "units": len(units),
            "negative_prompt": self.negative_prompt,
            "plugins": loaded_plugins(),  # each plugin file's path and sha256, each entry point (bench/plugins.py)
            "versions": package_versions(),
            "git_commit": git_commit(),
            "device": device_description(self.device),
            "platform": platform.platform(),
            "timings": {**previous.get("timings", {}), **self.cumulative(timings)},
            "last_run_timings": timings,
            "throughput": throughput or previous.get("throughput"),
            "shards": ShardRecords(self.store.root).summary() or previous.get("shards"),
            **({"tables": dict(tables)} if tables else {}),
        }

    def variant_entry(self, name: str, variant) -> dict[str, Any]:
        """A variant as the report reads it: description, components and declared forward passes per image."""
        entry = {"description": variant.description, "summary": variant.summary(), "components": variant.resolved(),
                 "forward_passes_per_image": variant.forward_passes(self.variant_steps[name])}
        if variant.model_transforms:
            entry["model_side"] = [f"{t.name}: {t.cost_effect}" for t in variant.model_transforms]
        return entry

    def write(self, units: Sequence["Unit"], timings: dict[str, float], status: str, throughput=None,
              tables: Mapping[str, str] | None = None) -> None:
        self.store.write_manifest(self.build(units, timings, status, throughput, tables))

    def write_interrupted(self, units: Sequence["Unit"], generate_seconds: float) -> None:
        """Best effort: keep an interrupted invocation's generation time (not possible after kill -9)."""
        try:
            self.write(units, {"generate_seconds": generate_seconds}, "interrupted")
        except Exception:  # e.g. the disk is still full: the images and journal are what matters
            pass
