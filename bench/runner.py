"""One benchmark run, end to end: plan → generate → score → report (DESIGN.md, "The flow").

Every stage reads and writes only the run directory and is idempotent: a re-run skips finished units,
an interrupted run resumes, and nothing is recomputed. Everything that can be checked — names,
parameters, prompts, weights, the output directory — is checked before the first file is written.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mgt_common.errors import UserError
from samplers.variant import build_variant

from .config import BenchConfig
from .generate import generate_units
from .models.registry import MODELS
from .plan import Unit, make_plan
from .prompts import load_prompts
from .scoring import build_metrics, score_images, set_metric_rows
from .store import SAMPLE_COLUMNS, RunDirectory

PACKAGES = ("mgt-bench", "torch", "torchvision", "diffusers", "transformers", "open_clip_torch", "torchmetrics",
            "numpy", "pandas", "scipy")


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Path]
    generated: int
    reused: int


def default_out(config: BenchConfig) -> Path:
    return Path(config.out) if config.out else Path("results") / (config.name or "default")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The commit of the mgt-bench source tree (with '+dirty' when it has local changes), if it is a clone."""
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class Benchmark:
    """A configured run: resolves everything up front, then executes the stages."""

    def __init__(self, config: BenchConfig, out: Path | None = None):
        self.config = config
        self.store = RunDirectory(out or default_out(config))
        self.variants = {name: build_variant(name, config.variants) for name in config.samplers}
        prompt_source, prompt_params = config.prompt_source
        prompts = load_prompts(prompt_source, **prompt_params)
        self.prompts = prompts[: config.limit] if config.limit else prompts
        self.metrics = build_metrics(config.metrics, config.device)
        self.model = None

    def load_model(self):
        if self.model is None:
            factory = MODELS.get(self.config.model_name)
            args = {"device": self.config.device, "dtype": self.config.dtype, **self.config.model_args}
            self.model = factory(**args)
        return self.model

    def plan(self) -> list[Unit]:
        model = self.load_model()
        self.grid = model.token_grid(self.config.height, self.config.width)
        self.negative_prompt = self.config.negative_prompt
        if self.negative_prompt is None:
            self.negative_prompt = getattr(model, "default_negative_prompt", None)
        return make_plan(self.config, self.prompts, self.variants, self.model_identity(), self.negative_prompt)

    def model_identity(self) -> dict[str, Any]:
        description = dict(self.model.describe())
        description.pop("device", None)  # the device type enters the unit key separately
        return {"name": self.config.model_name, **description, "grid": list(self.grid)}

    # -- the guard against mixing configs --------------------------------------------------------

    def prepare_directory(self, fresh: bool) -> None:
        root = self.store.root
        existing = self.store.read_manifest()
        if fresh and root.exists() and any(root.iterdir()):
            if existing is None:
                raise UserError(f"--fresh: {root} exists but is not an mgt-bench run directory (no manifest.json); "
                                "refusing to delete it — pass another --out")
            shutil.rmtree(root)
            existing = None
        if existing is not None and existing.get("config_hash") != self.config.generation_hash():
            changed = sorted(k for k in existing.get("generation_keys", {})
                             if existing["generation_keys"][k] != _generation_values(self.config).get(k))
            detail = f" (changed: {', '.join(changed)})" if changed else ""
            raise UserError(f"{root} was made with a different configuration{detail}; pass --fresh to start it over "
                            "or --out NEW_DIR to keep both")
        if existing is None and root.exists() and any(p.name != ".gitkeep" for p in root.iterdir()):
            raise UserError(f"{root} exists and is not an mgt-bench run directory; pass an empty or new --out")
        self.store.check_writable()

    # -- the manifest ----------------------------------------------------------------------------

    def manifest(self, units: list[Unit], timings: dict[str, float], status: str, throughput=None) -> dict[str, Any]:
        previous = self.store.read_manifest() or {}
        return {
            "tool": "mgt-bench",
            "status": status,
            "created": previous.get("created", _now()),
            "updated": _now(),
            "config_source": self.config.source,
            "config": self.config.to_dict(),
            "config_hash": self.config.generation_hash(),
            "generation_keys": _generation_values(self.config),
            "baseline": self.config.baseline,
            "variants": {name: {"description": v.description, "summary": v.summary(), "components": v.resolved(),
                                "forward_passes_per_image": v.forward_passes(self.config.steps)}
                         for name, v in self.variants.items()},
            "metrics": {label: m.describe() for label, m in self.metrics.items()},
            "model": {"name": self.config.model_name, **self.model.describe()} if self.model is not None
                     else previous.get("model"),
            "prompts": {"source": self.config.prompt_source[0], "count": len(self.prompts)},
            "seeds": sorted({u.seed for u in units}),
            "units": len(units),
            "negative_prompt": getattr(self, "negative_prompt", None),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "device": device_description(str(self.config.device)),
            "platform": platform.platform(),
            "timings": {**previous.get("timings", {}), **timings},
            "throughput": throughput or previous.get("throughput"),
        }

    # -- the stages ------------------------------------------------------------------------------

    def run(self, fresh: bool = False, report: bool = True) -> RunResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        units = self.plan()
        timings["plan_seconds"] = round(time.perf_counter() - t0, 3)
        self.prepare_directory(fresh)
        self.store.write_manifest(self.manifest(units, timings, "generating"))

        finished = self.store.finished_units()
        todo = [u for u in units if f"{u.variant}/{u.key}" not in finished]
        t0 = time.perf_counter()
        throughput = None
        if todo:
            throughput = generate_units(self.model, todo, self.variants, self.store, grid=self.grid,
                                        steps=self.config.steps, guidance=float(self.config.guidance),
                                        batch_size=self.config.batch_size, device=str(self.config.device),
                                        negative_prompt=self.negative_prompt)
        timings["generate_seconds"] = round(time.perf_counter() - t0, 3)
        samples = self.samples_table(units)
        self.store.write_table("samples", samples)

        t0 = time.perf_counter()
        world = getattr(self.model, "world", None)
        self.release_generation_model()
        scores = score_images(samples, self.metrics, self.store, world=world)
        self.store.write_table("scores", scores)
        self.store.write_table("set_metrics", set_metric_rows(samples, self.metrics, self.store, world=world))
        timings["score_seconds"] = round(time.perf_counter() - t0, 3)
        self.store.write_manifest(self.manifest(units, timings, "scored", throughput))

        paths: dict[str, Path] = {}
        if report:
            t0 = time.perf_counter()
            paths = render(self.store.root)
            timings["report_seconds"] = round(time.perf_counter() - t0, 3)
        self.store.write_manifest(self.manifest(units, timings, "complete", throughput))
        return RunResult(self.store.root, paths, generated=len(todo), reused=len(units) - len(todo))

    def release_generation_model(self) -> None:
        """Free the generator's GPU memory before big scorers load (Meissonic-1024 then HPSv2 on 24 GB)."""
        release = getattr(self.model, "release", None)
        if release is not None:
            release()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def samples_table(self, units: list[Unit]) -> pd.DataFrame:
        finished = self.store.finished_units()
        rows = []
        for unit in units:
            record = finished[f"{unit.variant}/{unit.key}"]
            rows.append({
                "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id, "prompt": unit.prompt.text,
                "category": unit.prompt.category, "seed": unit.seed, "steps": record["steps"],
                "forward_passes": record["forward_passes"], "seconds": record["seconds"],
                "image_path": str(self.store.image_path(unit.key).relative_to(self.store.root)),
                "trajectory": record.get("trajectory", ""),
            })
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def render(run_dir: Path) -> dict[str, Path]:
    """Render the report of a scored run directory (no model needed)."""
    from .report import render_report

    return render_report(Path(run_dir))


def _generation_values(config: BenchConfig) -> dict[str, str]:
    from .config import GENERATION_KEYS, stable_hash

    return {key: stable_hash(config.values[key]) for key in GENERATION_KEYS}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
