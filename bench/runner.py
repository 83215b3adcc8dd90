"""One benchmark run, end to end: plan → generate → score → report (DESIGN.md, "The flow").

Every stage reads and writes only the run directory and is idempotent: a re-run skips finished units,
an interrupted run resumes, and nothing is recomputed. Everything that can be checked — names,
parameters, prompts, weights, the output directory — is checked before the first file is written.
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mgt_common.errors import ConfigError, UserError

from .config import BenchConfig
from .distributed import ProcessGroup, rank_device
from .generate import generate_units
from .models.registry import MODELS
from .plan import Unit, make_plan
from .progress import announce
from .prompts import load_prompts
from .rewards import check_reward_metrics
from .scoring import build_metrics, score_images, set_metric_rows
from .set_intervals import add_set_intervals
from .sharding import Shard, assign, shard_units, unit_cost
from .rundir_lock import GuardLock, RunLock
from .store import LOCK_FILES, MARKER, SAMPLE_COLUMNS, RunDirectory, atomic_write_text
from .sweep import build_variants, steps_by_variant

#: timings summed over the invocations of a resumed run (plan time is per invocation)
CUMULATIVE_TIMINGS = ("generate_seconds", "score_seconds", "report_seconds")
PACKAGES = ("mgt-bench", "torch", "torchvision", "diffusers", "transformers", "open_clip_torch", "torchmetrics",
            "numpy", "pandas", "scipy")


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Path]
    generated: int
    reused: int
    #: False for a shard that only generated (scoring and the report come with the merge).
    merged: bool = True
    shard: Shard | None = None


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
    """A configured run: resolves everything up front, then executes the stages.

    As shard i of n (`bench.sharding`), it generates only its share of the units, journals them under
    its own name, and leaves scoring and the report to the merge (rank 0 after a barrier, or
    ``--merge RUN_DIR``): shards share the run directory without locks because no two of them ever
    write the same file, except identical content-addressed images of units with equal keys.
    """

    def __init__(self, config: BenchConfig, out: Path | None = None, shard: Shard | None = None):
        self.config = config
        self.shard = shard or Shard()
        #: this process's device: ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher (the config keeps
        #: "cuda", so every rank has the same config hash and unit keys).
        self.device = rank_device(str(config.device), self.shard)
        check_device(self.device)
        self.store = RunDirectory(out or default_out(config), shard=self.shard.label)
        if self.store.root.exists() and not self.store.root.is_dir():
            raise UserError(f"out: {self.store.root} is a file, not a directory; pass a directory for --out")
        self._run_lock: RunLock | None = None
        self._prior_timings: dict[str, float] = {}
        #: the merged view (unsuffixed journals, tables, manifest) that only the merging process writes.
        self.merged_store = RunDirectory(self.store.root)
        #: the grid of variants (one point per variant unless steps, guidance or parameters are lists)
        self.sweep = config.sweep()
        self.variants = build_variants(self.sweep, config.variants)
        self.variant_steps = steps_by_variant(self.sweep)
        check_reward_metrics(self.variants.values())
        prompt_source, prompt_params = config.prompt_source
        prompts = load_prompts(prompt_source, **prompt_params)
        self.prompts = prompts[: config.limit] if config.limit else prompts
        self.metrics = build_metrics(config.metrics, self.device)
        self.model = None
        self.model_description: dict[str, Any] | None = None

    def load_model(self):
        if self.model is None:
            factory = MODELS.get(self.config.model_name)
            args = {"device": self.device, "dtype": self.config.dtype, **self.config.model_args}
            self.model = factory(**args)
        return self.model

    def plan(self) -> list[Unit]:
        model = self.load_model()
        self.grid = model.token_grid(self.config.height, self.config.width)
        # described after token_grid: a backend may switch resolution there (Meissonic 1024 ↔ 512 rules)
        self.model_description = {"name": self.config.model_name, **self.model.describe()}
        check_model_side(self.variants, model)
        self.negative_prompt = self.config.negative_prompt
        if self.negative_prompt is None:
            self.negative_prompt = getattr(model, "default_negative_prompt", None)
        self._planned_units = make_plan(self.config, self.prompts, self.variants, self.model_identity(),
                                        self.negative_prompt, sweep=self.sweep)
        return self._planned_units

    def check_scorers(self) -> None:
        """Find every scorer's weights now, before the first image: a missing checkpoint must not surface
        hours into a run, after generation (`MissingWeightsError` names the `hf download …` command)."""
        world = getattr(self.model, "world", None)
        for metric in self.metrics.values():
            check = getattr(metric, "check_weights", None)
            if check is not None:
                check(world=world)

    def model_identity(self) -> dict[str, Any]:
        """What of the model decides its images (for unit keys): `identity()` where the backend has one —
        weights by fingerprint, not by folder — else `describe()`; never the device (keyed by type apart)."""
        identity = getattr(self.model, "identity", None)
        description = dict(identity() if identity is not None else self.model.describe())
        description.pop("device", None)
        return {"name": self.config.model_name, **description, "grid": list(self.grid)}

    # -- the guard against mixing configs ---------------------------------------------------------

    def check_out_is_usable(self, fresh: bool) -> None:
        """Read-only checks of ``--out`` before anything is written: a file, or a folder that is not ours.

        A folder is a run directory only if it carries the suite's marker (or, made before the marker
        existed, a manifest naming the tool); nothing else is ever written into, nor deleted by --fresh.
        """
        root = self.store.root
        if not root.exists():
            return
        if not root.is_dir():
            raise UserError(f"out: {root} is a file, not a directory; pass a directory for --out")
        # Shards started at the same moment (a SLURM array) may find each other's first files before the
        # marker: what shards themselves create does not make the directory foreign.
        own = {".gitkeep", MARKER, *LOCK_FILES}
        if self.shard.is_sharded:
            own |= {"journal", "images", "tokens", "shards"}
        foreign = [p.name for p in root.iterdir()
                   if p.name not in own and not (self.shard.is_sharded and p.name.startswith("."))]
        if foreign and not self.store.is_run_directory():
            if fresh:
                raise UserError(f"--fresh: {root} is not an mgt-bench run directory (no {MARKER} marker); refusing to "
                                "delete it; pass another --out")
            raise UserError(f"{root} exists and is not an mgt-bench run directory (it holds {foreign[0]!r} and no "
                            f"{MARKER} marker); pass an empty or new --out")

    def prepare_directory(self, fresh: bool, write_manifest: bool = True) -> None:
        """Take the run lock, then under the configuration guard: --fresh, the config check, marker, manifest.

        The run lock (exclusive for an unsharded run, shared by shards) is held until the run ends, so
        a second writer is refused at once; the guard serialises the check and the first manifest
        write, so two processes started together cannot both pass it with different configurations.
        """
        root = self.store.root
        self.check_out_is_usable(fresh)
        self.store.check_writable()
        if self._run_lock is None:
            role = f"shard {self.shard}" if self.shard.is_sharded else "run"
            self._run_lock = RunLock(root, exclusive=not self.shard.is_sharded, role=role).acquire()
        with GuardLock(root):
            if fresh and any(p.name not in (MARKER, *LOCK_FILES) for p in root.iterdir()):
                self.store.clear()
            existing = self.store.read_manifest()
            if existing is not None and existing.get("config_hash") != self.config.generation_hash():
                changed = sorted(k for k in existing.get("generation_keys", {})
                                 if existing["generation_keys"][k] != _generation_values(self.config).get(k))
                detail = f" (changed: {', '.join(changed)})" if changed else ""
                fix = "pass --fresh to start it over or --out NEW_DIR to keep both" if not self.shard.is_sharded \
                    or self.shard.launched_together else "pass --out NEW_DIR"
                raise UserError(f"{root} was made with a different configuration{detail}; {fix}")
            self.store.write_marker()
            if write_manifest and existing is None:
                self.merged_store.write_manifest(self.manifest_for_plan())

    def release_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

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
            # a sweep pairs each point with the baseline at its steps and guidance (manifest["sweep"]); the
            # run's single baseline is the first point's (unswept: the config's baseline itself)
            "baseline": self.sweep.reference_baseline,
            "variants": {name: {"description": v.description, "summary": v.summary(), "components": v.resolved(),
                                "forward_passes_per_image": v.forward_passes(self.variant_steps[name]),
                                **({"model_side": [f"{t.name}: {t.cost_effect}" for t in v.model_transforms]}
                                   if v.model_transforms else {})}
                         for name, v in self.variants.items()},
            **({"sweep": self.sweep.record()} if self.sweep.is_sweep else {}),
            "metrics": {label: {**m.describe(), "notes": m.notes() if hasattr(m, "notes") else []}
                        for label, m in self.metrics.items()},
            "model": self.model_description or previous.get("model"),
            "prompts": {"source": self.config.prompt_source[0], "count": len(self.prompts)},
            "seeds": sorted({u.seed for u in units}),
            "units": len(units),
            "negative_prompt": getattr(self, "negative_prompt", None),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "device": device_description(self.device),
            "platform": platform.platform(),
            "timings": {**previous.get("timings", {}), **self.cumulative(timings)},
            "last_run_timings": timings,
            "throughput": throughput or previous.get("throughput"),
            "shards": self.shard_summary() or previous.get("shards"),
        }

    def record_interrupted(self, units: list[Unit], generate_seconds: float) -> None:
        """Best effort: the manifest keeps an interrupted invocation's generation time (not possible after kill -9)."""
        try:
            self.merged_store.write_manifest(self.manifest(units, {"generate_seconds": generate_seconds}, "interrupted"))
        except Exception:  # e.g. the disk is still full: the images and journal are what matters
            pass

    def cumulative(self, timings: dict[str, float]) -> dict[str, float]:
        """Stage seconds summed over every invocation of this run (a resumed run keeps what came before)."""
        return {key: round(self._prior_timings.get(key, 0.0) + value, 3) if key in CUMULATIVE_TIMINGS else value
                for key, value in timings.items()}

    # -- the stages ------------------------------------------------------------------------------

    def run(self, fresh: bool = False, report: bool = True) -> RunResult:
        """Plan, generate this process's share, then (once every shard is done) score and report."""
        try:
            return self._run(fresh, report)
        finally:
            self.release_lock()

    def _run(self, fresh: bool, report: bool) -> RunResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        units = self.plan()
        self.check_scorers()
        timings["plan_seconds"] = round(time.perf_counter() - t0, 3)
        with ProcessGroup(self.shard) as group:
            self.prepare_shared_directory(fresh, group)
            if not self.shard.is_sharded:  # shards' time is the span of their records instead
                self._prior_timings = dict((self.merged_store.read_manifest() or {}).get("timings") or {})
            mine = shard_units(units, self.shard, self.variants, self.variant_steps)
            finished = self.store.finished_units()
            todo = [u for u in mine if f"{u.variant}/{u.key}" not in finished]
            started = time.time()
            t0 = time.perf_counter()
            throughput = None
            try:
                if todo:
                    throughput = generate_units(self.load_model(), todo, self.variants, self.store, grid=self.grid,
                                                steps=self.sweep.points[0].steps,
                                                guidance=float(self.sweep.points[0].guidance),  # units carry their own
                                                batch_size=self.config.batch_size, device=self.device,
                                                negative_prompt=self.negative_prompt)
                    throughput = self.per_image_figures(throughput)
            except BaseException:  # Ctrl-C, disk full, a crash: the time spent still counts when the run resumes
                if not self.shard.is_sharded:
                    self.record_interrupted(units, round(time.perf_counter() - t0, 3))
                raise
            timings["generate_seconds"] = round(time.perf_counter() - t0, 3)
            if self.shard.is_sharded:
                self.write_shard_record(len(mine), len(todo), started, timings["generate_seconds"], throughput)
                group.barrier()  # shards launched together: rank 0 merges once all of them are done
                if not (self.shard.launched_together and self.shard.index == 0):
                    return RunResult(self.store.root, {}, generated=len(todo), reused=len(mine) - len(todo),
                                     merged=False, shard=self.shard)
                self.check_complete(units, "rank 0 after the barrier")
                self.widen_threads()
                timings["generate_seconds"] = self.shard_span() or timings["generate_seconds"]
                throughput = self.merged_throughput()
        paths = self.finish(units, timings, throughput, report)
        return RunResult(self.store.root, paths, generated=len(todo), reused=len(mine) - len(todo), shard=self.shard)

    def merge(self, report: bool = True) -> RunResult:
        """``--merge RUN_DIR``: check that every shard finished, then score and report once."""
        units = self.plan()
        self.check_scorers()
        existing = self.merged_store.read_manifest() or {}
        if existing.get("config_hash") != self.config.generation_hash():
            raise UserError(f"--merge {self.store.root}: the manifest's configuration does not match its own hash; "
                            "the run directory was edited by hand or written by another mgt-bench version")
        self._run_lock = RunLock(self.store.root, exclusive=True, role="merge").acquire()
        try:
            self.check_complete(units, f"--merge {self.store.root}")
            timings = {"generate_seconds": self.shard_span() or existing.get("timings", {}).get("generate_seconds", 0.0)}
            paths = self.finish(units, timings, self.merged_throughput() or existing.get("throughput"), report)
        finally:
            self.release_lock()
        return RunResult(self.store.root, paths, generated=0, reused=len(units))

    def check_complete(self, units: list[Unit], who: str) -> None:
        finished = self.merged_store.finished_units()
        missing = [u for u in units if f"{u.variant}/{u.key}" not in finished]
        if missing:
            raise UserError(f"{who}: {len(missing)} of {len(units)} images are not generated yet "
                            f"({self.missing_by_shard(missing, units)}); re-run those shards with the same command "
                            "(they resume where they stopped), then merge with --merge RUN_DIR")

    def finish(self, units: list[Unit], timings: dict[str, float], throughput, report: bool) -> dict[str, Path]:
        """The stages after generation, run by exactly one process: tables, scores, set metrics, report."""
        store = self.merged_store
        samples = self.samples_table(units)
        store.write_table("samples", samples)

        t0 = time.perf_counter()
        world = getattr(self.model, "world", None)
        self.release_generation_model()
        scores = score_images(samples, self.metrics, store, world=world)
        store.write_table("scores", scores)
        if any(not hasattr(m, "score") for m in self.metrics.values()):
            announce("computing set metrics (FID/KID and the like) per variant and category")
        store.write_table("set_metrics", add_set_intervals(
            set_metric_rows(samples, self.metrics, store, world=world), samples, self.metrics, store, world,
            baseline=self.config.baseline, confidence=float((self.config.report or {}).get("confidence", 0.95))))
        timings["score_seconds"] = round(time.perf_counter() - t0, 3)
        store.write_manifest(self.manifest(units, timings, "scored", throughput))

        paths: dict[str, Path] = {}
        if report:
            t0 = time.perf_counter()
            announce(f"rendering the report (tables, plots, HTML, Markdown) in {store.root}")
            paths = render(store.root)
            timings["report_seconds"] = round(time.perf_counter() - t0, 3)
        store.write_manifest(self.manifest(units, timings, "complete", throughput))
        return paths

    # -- shards ----------------------------------------------------------------------------------

    def prepare_shared_directory(self, fresh: bool, group: ProcessGroup) -> None:
        """The config guard and the first manifest, without two shards racing to create or delete the directory.

        Shards launched together: rank 0 prepares (and honours --fresh) while the others wait at a
        barrier. Separate shards cannot wait for each other, so --fresh is refused there: it would delete
        work other shards may be doing right now.
        """
        if self.shard.is_sharded and fresh and not self.shard.launched_together:
            raise UserError(f"--fresh with --shard {self.shard} (or a SLURM array) would delete the other shards' "
                            f"work; delete {self.store.root} once before submitting the shards, or pass a new --out")
        first = not self.shard.launched_together or self.shard.index == 0
        if first:
            self.prepare_directory(fresh)
            if not self.shard.is_sharded:  # a resumed run records this invocation's plan (status, versions)
                self.merged_store.write_manifest(self.manifest_for_plan())
        group.barrier()
        if not first:
            self.prepare_directory(False, write_manifest=False)

    def manifest_for_plan(self) -> dict[str, Any]:
        units = self._planned_units
        return self.manifest(units, {}, "generating")

    def shard_path(self, label: str) -> Path:
        return self.store.root / "shards" / f"{label}.json"

    def write_shard_record(self, assigned: int, generated: int, started: float, seconds: float, throughput) -> None:
        """shards/<label>.json: what this shard did, where and how fast (the merge collects them)."""
        record = {
            "shard": str(self.shard), "label": self.shard.label, "source": self.shard.source,
            "host": platform.node(), "pid": os.getpid(), "device": device_description(self.device),
            "units": assigned, "generated": generated, "reused": assigned - generated,
            "started": started, "finished": time.time(), "generate_seconds": seconds, "throughput": throughput,
        }
        atomic_write_text(self.shard_path(self.shard.label), json.dumps(record, indent=2, sort_keys=True) + "\n")

    def shard_records(self) -> dict[str, dict[str, Any]]:
        folder = self.store.root / "shards"
        records = {}
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                records[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a shard record is informative only; the journals decide what is done
        return records

    def shard_summary(self) -> dict[str, Any] | None:
        records = self.shard_records()
        if not records:
            return None
        counts = sorted({int(label.split("of")[1]) for label in records})
        return {"count": counts[-1] if len(counts) == 1 else counts, "records": records}

    def shard_span(self) -> float | None:
        """Wall-clock seconds from the first shard's start to the last shard's end (the sharded generate time)."""
        records = [r for r in self.shard_records().values() if r.get("generated")]
        if not records:
            return None
        return round(max(r["finished"] for r in records) - min(r["started"] for r in records), 3)

    def merged_throughput(self) -> dict[str, Any] | None:
        records = [r for r in self.shard_records().values() if r.get("throughput")]
        if not records:
            return None
        images = sum(r["throughput"]["images"] for r in records)
        span = self.shard_span()
        merged = {"images": images, "seconds": span, "shards": len(records),
                  "images_per_second": round(images / span, 4) if span else None}
        for key in ("peak_memory_gib", "peak_memory_per_image_gib", "peak_rss_gib"):
            values = [r["throughput"][key] for r in records if r["throughput"].get(key) is not None]
            if values:
                merged[key] = max(values)  # the worst shard: what one device must hold
        return merged

    def missing_by_shard(self, missing: list[Unit], units: list[Unit]) -> str:
        """'shard 1/2: 12 images' for the shard layout(s) the run was launched with."""
        counts = sorted({int(label.split("of")[1]) for label in self.shard_records()}) or [1]
        count = counts[-1]
        shares = assign(units, count, unit_cost(self.variants, self.variant_steps)) if count > 1 else [units]
        wanted = {f"{u.variant}/{u.key}" for u in missing}
        parts = [f"shard {index}/{count}: {sum(f'{u.variant}/{u.key}' in wanted for u in share)} images"
                 for index, share in enumerate(shares) if any(f"{u.variant}/{u.key}" in wanted for u in share)]
        return "; ".join(parts)

    def widen_threads(self) -> None:
        """Rank 0 scores alone: give it the threads a single process would have (torch's default, one per
        physical core), at most what its node's ranks had between them.

        torchrun sets OMP_NUM_THREADS=1 per rank; scoring with one thread is slow, and some reductions
        (the eigenvalues inside FID) round differently with another thread count, so the merged run's set
        metrics would differ from a single process's in their last digits.
        """
        ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        if ranks_here <= 1:
            return
        try:
            import psutil

            cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
        except ImportError:
            cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, min(cores, torch.get_num_threads() * ranks_here)))

    def per_image_figures(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Add per-image time and memory to generate_units' figures (issue 7: reported in the manifest)."""
        stats = dict(stats)
        stats["batch_size"] = self.config.batch_size
        if stats.get("images"):
            stats["seconds_per_image"] = round(stats["seconds"] / stats["images"], 4)
        if stats.get("peak_memory_gib") is not None:
            # Peak GPU memory of a full batch, divided over its images (the model's weights included).
            per_batch = min(self.config.batch_size, stats["images"])
            stats["peak_memory_per_image_gib"] = round(stats["peak_memory_gib"] / per_batch, 4)
        try:
            import resource

            # ru_maxrss is in KiB on Linux: the process's peak resident memory (CPU runs, and the host side of GPU runs).
            stats["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        except (ImportError, OSError):
            pass
        return stats

    def release_generation_model(self) -> None:
        """Free the generator's GPU memory before big scorers load (Meissonic-1024 then HPSv2 on 24 GB).

        The runner drops its only reference to the model (scoring needs none: the synthetic world is
        passed on separately), so its weights are freed, not merely moved.
        """
        release = getattr(self.model, "release", None)
        if release is not None:
            release()
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def samples_table(self, units: list[Unit]) -> pd.DataFrame:
        finished = self.store.finished_units()
        missing = [u for u in units if f"{u.variant}/{u.key}" not in finished]
        if missing:  # an image damaged or deleted after this run generated it: never score around it
            raise UserError(f"{len(missing)} of {len(units)} images of {self.store.root} went missing or changed "
                            "during this run (see the warnings above); re-run the same command to regenerate them")
        points = self.sweep.by_name()
        rows = []
        for unit in units:
            record = finished[f"{unit.variant}/{unit.key}"]
            rows.append({
                "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id, "prompt": unit.prompt.text,
                "category": unit.prompt.category, "seed": unit.seed, "steps": record["steps"],
                "forward_passes": record["forward_passes"], "scorer_calls": record.get("scorer_calls", 0),
                "seconds": record["seconds"], "memory_mib": record.get("memory_mib"),
                "image_path": str(self.store.image_path(unit.key).relative_to(self.store.root)),
                "trajectory": record.get("trajectory", ""),
                # the swept values (bench/sweep.py): guidance as used, the config's variant, its grid point
                "guidance": points[unit.variant].guidance, "base_variant": points[unit.variant].variant,
                "sweep_values": json.dumps(points[unit.variant].values, sort_keys=True)
                if points[unit.variant].values else "",
            })
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def check_model_side(variants, model) -> None:
    """Config-time check that the loaded backend can carry every variant's model-side choices (model
    transforms, PAG's attention hook): a ConfigError (exit 2) names the variant before anything is written.

    A compiled transformer (`[model] compile`) is refused with them: the transforms rewrite the blocks'
    forwards and PAG swaps attention processors after the graph was traced, which no test has shown to
    re-trace correctly, so the combination is not offered until it is proven."""
    compiled = getattr(getattr(model, "compiled", None), "enabled", False)
    for name, variant in variants.items():
        for component in variant.components():
            check = getattr(component, "check_model", None)
            if check is None:
                continue
            if compiled:
                raise ConfigError(f"variants.{name}: the model-side choice {component.name!r} cannot run on a "
                                  "compiled transformer yet; set compile = false in [model] for this run")
            try:
                check(model)
            except UserError as exc:
                raise type(exc)(f"variants.{name}: {exc}") from None


def render(run_dir: Path) -> dict[str, Path]:
    """Render the report of a scored run directory (no model needed)."""
    from .report import render_report

    return render_report(Path(run_dir))


def check_device(device: str) -> None:
    """A device this machine has, checked before anything is written (a CUDA config on a CPU node would
    otherwise fail with a torch traceback after the manifest had locked the directory to ``device = cuda``)."""
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"device {device!r}: CUDA is not available on this machine ({why}; torch "
                            f"{torch.__version__}); pass --device cpu, or run on a GPU node")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                            f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {device!r}: Apple MPS is not available on this machine; pass --device cpu")


def _generation_values(config: BenchConfig) -> dict[str, str]:
    from .config import GENERATION_KEYS, stable_hash

    return {key: stable_hash(config.values[key]) for key in GENERATION_KEYS}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
