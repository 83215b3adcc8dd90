"""One benchmark run, end to end: plan → generate → score → set metrics → report
(docs/design.md, "The flow of a run").

Every stage reads and writes only the run directory (`bench.rundir`) and is idempotent: a re-run skips
finished units, an interrupted run resumes, and nothing is recomputed. Everything that can be checked —
names, parameters, prompts, weights, the device, the output directory — is checked before the first
file is written (`bench.preflight`, `bench.rundir.guard`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mgt_common.errors import UserError

from .config import BenchConfig
from .distributed import ProcessGroup, rank_device, widen_threads
from .generate import generate_units, samples_table
from .memory import free_memory
from .models.base import Backend
from .models.registry import load_backend
from .plan import Unit, make_plan
from .preflight import check_device, check_model_side, check_scorers
from .progress import announce
from .resolve import resolve_config
from .rundir.guard import RunGuard
from .rundir.manifest import Manifest
from .rundir.store import RunDirectory
from .scoring import score_images, set_metric_rows
from .set_intervals import add_set_intervals
from .sharding import Shard, ShardRecords, check_complete, shard_units, unit_cost


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


class Benchmark:
    """A configured run: resolves everything up front, then runs the stages.

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
        #: the merged view (unsuffixed journals, tables, manifest) that only the merging process writes.
        self.merged_store = RunDirectory(self.store.root)
        self.guard = RunGuard(self.store, self.shard, config)
        self.records = ShardRecords(self.store.root)
        resolved = resolve_config(config, self.device)
        self.sweep, self.variants, self.variant_steps = resolved.sweep, resolved.variants, resolved.variant_steps
        self.prompts, self.metrics = resolved.prompts, resolved.metrics
        self.manifest = Manifest(self.merged_store, config, self.sweep, self.variants, self.variant_steps,
                                 self.metrics, len(self.prompts), self.device)
        self.model: Backend | None = None
        self.units: list[Unit] = []

    # -- stage 1: plan (and every check that needs the model) -------------------------------------

    def load_model(self) -> Backend:
        if self.model is None:
            self.model = load_backend(self.config.model_name, device=self.device, dtype=self.config.dtype,
                                      **self.config.model_args)
        return self.model

    def plan(self) -> list[Unit]:
        model = self.load_model()
        self.grid = model.token_grid(self.config.height, self.config.width)
        # described after token_grid: a backend may switch resolution there (Meissonic 1024 ↔ 512 rules)
        self.manifest.model = {"name": self.config.model_name, **model.describe()}
        check_model_side(self.variants, model)
        self.negative_prompt = self.config.negative_prompt
        if self.negative_prompt is None:
            self.negative_prompt = model.default_negative_prompt
        self.manifest.negative_prompt = self.negative_prompt
        self.units = make_plan(self.config, self.prompts, self.variants, self.model_identity(), self.negative_prompt,
                               sweep=self.sweep)
        check_scorers(self.metrics, model)
        return self.units

    def model_identity(self) -> dict:
        """What of the model decides its images (for unit keys): the backend's `identity()` — weights by
        fingerprint, not by folder — never the device (keyed by type apart), and the token grid."""
        description = dict(self.model.identity())
        description.pop("device", None)
        return {"name": self.config.model_name, **description, "grid": list(self.grid)}

    def plan_manifest(self) -> dict:
        return self.manifest.build(self.units, {}, "generating")

    # -- the whole run -----------------------------------------------------------------------------

    def run(self, fresh: bool = False, report: bool = True) -> RunResult:
        """Plan, generate this process's share, then (once every shard is done) score and report."""
        try:
            return self._run(fresh, report)
        finally:
            self.guard.release()

    def _run(self, fresh: bool, report: bool) -> RunResult:
        t0 = time.perf_counter()
        units = self.plan()
        timings = {"plan_seconds": round(time.perf_counter() - t0, 3)}
        with ProcessGroup(self.shard) as group:
            self.guard.prepare_shared(fresh, group, self.plan_manifest)
            if not self.shard.is_sharded:  # shards' time is the span of their records instead
                self.manifest.resume_timings()
            mine = shard_units(units, self.shard, self.variants, self.variant_steps)
            finished = self.store.finished_units()
            todo = [u for u in mine if f"{u.variant}/{u.key}" not in finished]
            timings["generate_seconds"], throughput = self.generate(units, mine, todo)
            if self.shard.is_sharded:
                group.barrier()  # shards launched together: rank 0 merges once all of them are done
                if not (self.shard.launched_together and self.shard.index == 0):
                    return RunResult(self.store.root, {}, generated=len(todo), reused=len(mine) - len(todo),
                                     merged=False, shard=self.shard)
                self.check_complete(units, "rank 0 after the barrier")
                widen_threads()
                timings["generate_seconds"] = self.records.span() or timings["generate_seconds"]
                throughput = self.records.merged_throughput()
        paths = self.finish(units, timings, throughput, report)
        return RunResult(self.store.root, paths, generated=len(todo), reused=len(mine) - len(todo), shard=self.shard)

    def merge(self, report: bool = True) -> RunResult:
        """``--merge RUN_DIR``: check that every shard finished, then score and report once."""
        units = self.plan()
        existing = self.merged_store.read_manifest() or {}
        if existing.get("config_hash") != self.config.generation_hash():
            raise UserError(f"--merge {self.store.root}: the manifest's configuration does not match its own hash; "
                            "the run directory was edited by hand or written by another mgt-bench version")
        self.guard.lock_for_merge()
        try:
            self.check_complete(units, f"--merge {self.store.root}")
            earlier = existing.get("timings", {}).get("generate_seconds", 0.0)
            timings = {"generate_seconds": self.records.span() or earlier}
            paths = self.finish(units, timings, self.records.merged_throughput() or existing.get("throughput"), report)
        finally:
            self.guard.release()
        return RunResult(self.store.root, paths, generated=0, reused=len(units))

    # -- stage 2: generate ---------------------------------------------------------------------------

    def generate(self, units: list[Unit], mine: list[Unit], todo: list[Unit]) -> tuple[float, dict | None]:
        """Generate this process's unfinished units; (seconds, throughput figures or None if none were due).

        The seconds of an interrupted unsharded run are kept in the manifest (a resumed run adds them
        up); a shard leaves its record (`bench.sharding.ShardRecords`) for the merge instead.
        """
        started, t0 = time.time(), time.perf_counter()
        throughput = None
        try:
            if todo:
                throughput = generate_units(self.load_model(), todo, self.variants, self.store, grid=self.grid,
                                            steps=self.sweep.points[0].steps,
                                            guidance=float(self.sweep.points[0].guidance),  # units carry their own
                                            batch_size=self.config.batch_size, device=self.device,
                                            negative_prompt=self.negative_prompt)
        except BaseException:  # Ctrl-C, disk full, a crash: the time spent still counts when the run resumes
            if not self.shard.is_sharded:
                self.manifest.write_interrupted(units, round(time.perf_counter() - t0, 3))
            raise
        seconds = round(time.perf_counter() - t0, 3)
        if self.shard.is_sharded:
            self.records.write(self.shard, self.device, len(mine), len(todo), started, seconds, throughput)
        return seconds, throughput

    def check_complete(self, units: list[Unit], who: str) -> None:
        check_complete(self.merged_store.finished_units(), units, self.records,
                       unit_cost(self.variants, self.variant_steps), who)

    # -- stages 3-5: score, set metrics, report (exactly one process) --------------------------------

    def finish(self, units: list[Unit], timings: dict[str, float], throughput, report: bool) -> dict[str, Path]:
        """The stages after generation: samples table, per-image scores, set metrics, then the report."""
        store = self.merged_store
        samples = samples_table(units, self.store, self.sweep)
        store.write_table("samples", samples)

        t0 = time.perf_counter()
        world = self.model.world  # the synthetic world's exact metrics need it after the model is released
        # Free the generator's memory before big scorers load (Meissonic-1024, then HPSv2 on 24 GB): the
        # runner holds the only reference, so the weights are freed, not merely moved.
        self.model.release()
        self.model = None
        free_memory()
        scores = score_images(samples, self.metrics, store, world=world)
        store.write_table("scores", scores)
        if any(not hasattr(m, "score") for m in self.metrics.values()):
            announce("computing set metrics (FID/KID and the like) per variant and category")
        store.write_table("set_metrics", add_set_intervals(
            set_metric_rows(samples, self.metrics, store, world=world), samples, self.metrics, store, world,
            baseline=self.config.baseline, confidence=float((self.config.report or {}).get("confidence", 0.95))))
        timings["score_seconds"] = round(time.perf_counter() - t0, 3)
        tables = store.table_digests()  # --report-only verifies the tables against these (bench/rundir/finished.py)
        self.manifest.write(units, timings, "scored", throughput, tables)

        paths: dict[str, Path] = {}
        if report:
            t0 = time.perf_counter()
            announce(f"rendering the report (tables, plots, HTML, Markdown) in {store.root}")
            paths = render(store.root)
            timings["report_seconds"] = round(time.perf_counter() - t0, 3)
        self.manifest.write(units, timings, "complete", throughput, tables)
        return paths


def render(run_dir: Path) -> dict[str, Path]:
    """Render the report of a scored run directory (no model needed)."""
    from .report import render_report

    return render_report(Path(run_dir))
