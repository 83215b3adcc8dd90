"""The generation stage: batches of units → PNG images and token grids in the run directory, and samples.csv."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from typing import Any, Sequence

import pandas as pd
import torch
from PIL import Image

from mgt_common.errors import UserError
from samplers.cost import ROW_KINDS
from samplers.engine import SamplerEngine
from samplers.model_transforms import apply_model_transforms
from samplers.variant import SamplerVariant

from .flops import FlopMeter
from .memory import PeakMemory, tensor_bytes
from .models.base import Backend
from .plan import Unit
from .progress import Progress
from .rewards import RewardBuilder
from .rundir.store import COST_COLUMNS, SAMPLE_COLUMNS, RunDirectory


def to_png(image: torch.Tensor) -> bytes:
    """A float image ``(3, H, W)`` in [0, 1] → PNG bytes (8-bit, rounded; deterministic)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def batches(units: Sequence[Unit], batch_size: int):
    """Consecutive chunks of at most `batch_size` units of the same variant."""
    chunk: list[Unit] = []
    for unit in units:
        if chunk and (len(chunk) == batch_size or chunk[0].variant != unit.variant):
            yield chunk
            chunk = []
        chunk.append(unit)
    if chunk:
        yield chunk


def interleaved(units: Sequence[Unit], batch_size: int) -> list[tuple[int, list[Unit]]]:
    """The batches in the order they run, with their round: round j holds batch j of every variant
    (round robin over prompt batches), each round starting one variant later than the one before.

    Background load then lands on every variant alike instead of on whichever ran at the time (on a
    loaded 2-core machine, variants run one after another showed 1.3 to 11 s/image for the same passes),
    and each variant's seconds can be read against the baseline's in the same rounds. The batches
    themselves are those of `batches` (the same units together): only their order changes, and no image
    depends on it (each has its own random generator; docs/design.md, "Pairing").
    """
    by_variant: dict[str, list[list[Unit]]] = {}
    for chunk in batches(units, batch_size):
        by_variant.setdefault(chunk[0].variant, []).append(chunk)
    names = list(by_variant)
    order = []
    for round_index in range(max((len(c) for c in by_variant.values()), default=0)):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if round_index < len(by_variant[name]):
                order.append((round_index, by_variant[name][round_index]))
    return order


def generate_units(model: Backend, units: Sequence[Unit], variants: dict[str, SamplerVariant], store: RunDirectory,
                   *, grid: tuple[int, int], steps: int, guidance: float, batch_size: int, device: str,
                   negative_prompt: str | None) -> dict[str, Any]:
    """Generate `units` (already filtered to the unfinished ones); returns throughput figures.

    Batches run round robin over the variants (`interleaved`); each unit records its round
    (``time_slot``), so that the report can read a variant's seconds against the baseline's in the same
    rounds. A variant's model transforms (samplers/model_transforms.py) are attached before each of its
    batches and undone after it, so every other variant sees the plain model (the seconds this takes are
    reported apart, as ``transform_seconds``).

    Each variant's first batch is run once untimed before it is timed (warm-up); that run also counts the
    transformer's FLOPs (bench/flops.py), which every later batch of the variant looks up. GPU work is
    synchronised before a batch's clock stops; ``seconds`` per unit is its batch's time per image. Each
    record carries the batch's peak and starting memory (bench/memory.py), the bytes of the network's
    weights as the variant runs them, its row evaluations and FLOPs per image, and any note on why its
    costs are not representative (a simulated quantization layout).

    A unit that carries its own steps and guidance (a sweep point, bench/sweep.py) uses them; `steps`
    and `guidance` are the run's values for units that do not.
    """
    meter = FlopMeter(model)
    batch = BatchGenerator(model, grid, device, negative_prompt, meter)
    if model.compiled.enabled:
        compile_batch_shapes(model, units, batch_size, guidance)
    started = time.perf_counter()
    # rounds of this invocation: a resumed run or another shard has its own (their clocks are not shared)
    invocation = f"{store.shard or 'run'}@{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    peaks: list[float] = []
    warmup_seconds = transform_seconds = 0.0
    warmed: set[str] = set()
    with Progress("generate", len(units)) as progress, contextlib.ExitStack() as transformed:
        current = None
        costs: dict[str, Any] = {}
        for round_index, chunk in interleaved(units, batch_size):
            variant = variants[chunk[0].variant]
            # a chunk holds one variant, so one (steps, guidance) point
            chunk_steps = steps if chunk[0].steps is None else int(chunk[0].steps)
            chunk_guidance = guidance if chunk[0].guidance is None else float(chunk[0].guidance)
            progress.set_postfix(variant.name)
            if variant.name != current:
                t0 = time.perf_counter()
                transformed.close()  # undo the previous variant's transforms first
                costs = {"cost_note": "; ".join(n for n in (t.cost_note(model) for t in variant.model_transforms
                                                            if not t.neutral()) if n)}
                transformed.enter_context(apply_model_transforms(model, variant.model_transforms))
                costs["weight_mib"] = (round(tensor_bytes(model.transformer) / 2**20, 4)
                                       if model.transformer is not None else None)
                current = variant.name
                transform_seconds += time.perf_counter() - t0
            if variant.name not in warmed:
                # One untimed run of each variant's first batch: the first call pays for lazy
                # initialisation, allocator growth and kernel selection (measured: vanilla, run first,
                # took 0.55 s/image against 0.36–0.43 for variants with the same 16 passes). It also
                # counts the FLOPs of every call. The images are discarded; every unit's generation
                # depends only on its own seed.
                w0 = time.perf_counter()
                meter.use(variant.name, counting=True)
                batch.run(variant, chunk, chunk_steps, chunk_guidance)
                warmed.add(variant.name)
                warmup_seconds += time.perf_counter() - w0
            meter.use(variant.name, counting=False)
            with PeakMemory(device) as memory:
                t0 = time.perf_counter()  # the memory's reset (a garbage collection on the CPU) is not timed
                generation, images = batch.run(variant, chunk, chunk_steps, chunk_guidance)
                seconds = (time.perf_counter() - t0) / len(chunk)
            if memory.peak_mib is not None:
                peaks.append(memory.peak_mib)
            save_batch(store, chunk, generation, images, grid, chunk_steps, seconds,
                       {**costs, "peak_mib": memory.peak_mib, "resident_mib": memory.resident_mib,
                        "time_slot": f"{invocation}:{round_index}"})
            progress.update(len(chunk))
    figures = throughput(len(units), time.perf_counter() - started, warmup_seconds, peaks, model, device, batch_size)
    figures["transform_seconds"] = round(transform_seconds, 3)
    if meter.live_counts or meter.unmeasured:
        figures["flops_calls_counted_in_timed_batches"] = meter.live_counts
        figures["flops_calls_unmeasured"] = meter.unmeasured
    return figures


class BatchGenerator:
    """One batch of units of one variant → its `Generation` and decoded images (what is timed per batch)."""

    def __init__(self, model: Backend, grid: tuple[int, int], device: str, negative_prompt: str | None,
                 meter: FlopMeter | None = None):
        self.model, self.grid, self.device, self.negative_prompt = model, grid, device, negative_prompt
        self.engine = SamplerEngine(model, meter)
        self.rewards = RewardBuilder(model, grid, device)

    def run(self, variant: SamplerVariant, chunk: Sequence[Unit], steps: int, guidance: float):
        """Encode, sample, decode, and wait for the device: ``(generation, images (B, 3, H, W))``."""
        conditioning = self.model.encode([u.prompt.text for u in chunk], self.negative_prompt)
        generation = self.engine.generate(variant, conditioning, [u.seed for u in chunk], self.grid, steps, guidance,
                                          device=self.device, **self.rewards.engine_arguments(variant, chunk))
        images = self.model.decode(generation.tokens, self.grid)
        _synchronize(self.device)
        return generation, images


def compile_batch_shapes(model: Backend, units: Sequence[Unit], batch_size: int, guidance: float) -> None:
    """Compile every batch shape of this run before the clock starts, so compile time is reported apart
    (docs/scaling.md, "GPU throughput: compiled transformer and the fused step")."""
    with_uncond = any((guidance if u.guidance is None else u.guidance) > 1 for u in units)  # a sweep's too
    for size in sorted({len(chunk) for chunk in batches(units, batch_size)}):
        model.warm_up(size, with_uncond=with_uncond)


def save_batch(store: RunDirectory, chunk: Sequence[Unit], generation, images: torch.Tensor, grid: tuple[int, int],
               steps: int, seconds: float, costs: dict[str, Any]) -> None:
    """Each unit's PNG and token grid, then its journal line (a unit counts as done only once its files are
    in place). `costs`: the batch's memory, weight bytes, round and cost note (docs/rundir.md, "Cost columns")."""
    records = []
    rows = generation.rows
    for row, unit in enumerate(chunk):
        tokens = generation.tokens[row].to(torch.int32).cpu().numpy().reshape(grid)
        digests = store.save_unit_files(unit.key, to_png(images[row]), tokens)
        flops = float(generation.flops[row])
        records.append({
            **digests,  # image_sha256, tokens_sha256: checked on reuse, a damaged or missing file is regenerated
            "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id,
            "seed": unit.seed, "steps": steps, "forward_passes": int(generation.forward_passes[row]),
            **{f"rows_{kind}": int(rows[row, i]) for i, kind in enumerate(ROW_KINDS)},
            "flops": None if math.isnan(flops) else flops,
            "scorer_calls": scorer_calls(generation, row),
            "seconds": round(seconds, 6),
            # the batch's peak and starting memory, with the batch's size (not divided: bench/memory.py)
            "peak_mib": _rounded(costs.get("peak_mib")), "resident_mib": _rounded(costs.get("resident_mib")),
            "batch_images": len(chunk), "weight_mib": costs.get("weight_mib"),
            "cost_note": costs.get("cost_note", ""), "time_slot": costs.get("time_slot", ""),
            "trajectory": json.dumps([counts[row] for counts in generation.trajectory]),
        })
    store.append("generated", records)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def throughput(images: int, wall: float, warmup_seconds: float, peaks: list[float], model: Backend, device: str,
               batch_size: int) -> dict[str, Any]:
    """The manifest's throughput figures: images per second of the timed batches, compile and warm-up time
    apart, per-image seconds, and peak memory (the highest batch peak on the GPU, weights included, with the
    batch size; the process's resident set)."""
    elapsed = wall - warmup_seconds  # throughput of the timed batches only
    stats: dict[str, Any] = {
        "images": images, "seconds": round(elapsed, 3), "warmup_seconds": round(warmup_seconds, 3),
        "wall_seconds": round(wall, 3),
        "images_per_second": round(images / elapsed, 4) if elapsed > 0 and images else None}
    if model.compiled.enabled:
        stats["compile_seconds"] = round(sum(model.compiled.compile_seconds.values()), 3)
    if torch.cuda.is_available() and str(device).startswith("cuda") and peaks:
        stats["peak_memory_gib"] = round(max(peaks) / 2**10, 3)
    stats["batch_size"] = batch_size
    if images:
        stats["seconds_per_image"] = round(stats["seconds"] / images, 4)
    try:
        import resource

        # ru_maxrss is in KiB on Linux: the process's peak resident memory (CPU runs, and the host side of GPU runs).
        stats["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    except (ImportError, OSError):
        pass
    return stats


def samples_table(units: Sequence[Unit], store: RunDirectory, sweep) -> pd.DataFrame:
    """samples.csv: one row per planned unit, from the generation journal (every unit must be there)."""
    finished = store.finished_units()
    missing = [u for u in units if f"{u.variant}/{u.key}" not in finished]
    if missing:  # an image damaged or deleted after this run generated it: never score around it
        raise UserError(f"{len(missing)} of {len(units)} images of {store.root} went missing or changed "
                        "during this run (see the warnings above); re-run the same command to regenerate them")
    points = sweep.by_name()
    rows = []
    for unit in units:
        record = finished[f"{unit.variant}/{unit.key}"]
        point = points[unit.variant]
        rows.append({
            "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id, "prompt": unit.prompt.text,
            "category": unit.prompt.category, "seed": unit.seed, "steps": record["steps"],
            "forward_passes": record["forward_passes"], "scorer_calls": record.get("scorer_calls", 0),
            "seconds": record["seconds"],
            # cost columns (docs/rundir.md); journal lines written before they existed leave them empty
            **{column: record.get(column) for column in COST_COLUMNS},
            "image_path": str(store.image_path(unit.key).relative_to(store.root)),
            "trajectory": record.get("trajectory", ""),
            # the swept values (bench/sweep.py): guidance as used, the config's variant, its grid point
            "guidance": point.guidance, "base_variant": point.variant,
            "sweep_values": json.dumps(point.values, sort_keys=True) if point.values else "",
        })
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def _synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a batch's time is its own and not the next one's."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def scorer_calls(generation, row: int) -> int:
    """Reward evaluations the image cost (search loops; 0 for every other sampler)."""
    calls = generation.scorer_calls
    return 0 if calls is None else int(calls[row])

