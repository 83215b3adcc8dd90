"""The generation stage: batches of units → PNG images and token grids in the run directory, and samples.csv."""
from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Any, Sequence

import pandas as pd
import torch
from PIL import Image

from mgt_common.errors import UserError
from samplers.engine import SamplerEngine
from samplers.model_transforms import apply_model_transforms
from samplers.variant import SamplerVariant

from .memory import PeakMemory
from .models.base import Backend
from .plan import Unit
from .progress import Progress
from .rewards import RewardBuilder
from .rundir.store import SAMPLE_COLUMNS, RunDirectory


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


def generate_units(model: Backend, units: Sequence[Unit], variants: dict[str, SamplerVariant], store: RunDirectory,
                   *, grid: tuple[int, int], steps: int, guidance: float, batch_size: int, device: str,
                   negative_prompt: str | None) -> dict[str, Any]:
    """Generate `units` (already filtered to the unfinished ones); returns throughput figures.

    Each variant's first batch is run once untimed before it is timed (warm-up), and GPU work is
    synchronised before a batch's clock stops; ``seconds`` per unit is its batch's time per image.
    A variant's model transforms (samplers/model_transforms.py) are attached before its first batch (and
    its warm-up) and undone after its last (units come grouped by variant), so every other variant sees
    the plain model. Each record carries the batch's peak memory (bench/memory.py).

    A unit that carries its own steps and guidance (a sweep point, bench/sweep.py) uses them; `steps`
    and `guidance` are the run's values for units that do not.
    """
    batch = BatchGenerator(model, grid, device, negative_prompt)
    if model.compiled.enabled:
        compile_batch_shapes(model, units, batch_size, guidance)
    started = time.perf_counter()
    peaks: list[float] = []
    warmup_seconds = 0.0
    with Progress("generate", len(units)) as progress, contextlib.ExitStack() as transformed:
        current = None
        for chunk in batches(units, batch_size):
            variant = variants[chunk[0].variant]
            # a chunk holds one variant, so one (steps, guidance) point
            chunk_steps = steps if chunk[0].steps is None else int(chunk[0].steps)
            chunk_guidance = guidance if chunk[0].guidance is None else float(chunk[0].guidance)
            progress.set_postfix(variant.name)
            if variant.name != current:
                transformed.close()  # undo the previous variant's transforms first
                transformed.enter_context(apply_model_transforms(model, variant.model_transforms))
                current = variant.name
                # One untimed run of each variant's first batch: the first call pays for lazy
                # initialisation, allocator growth and kernel selection (measured: vanilla, run first,
                # took 0.55 s/image against 0.36–0.43 for variants with the same 16 passes). The
                # images are discarded; every unit's generation depends only on its own seed.
                w0 = time.perf_counter()
                batch.run(variant, chunk, chunk_steps, chunk_guidance)
                warmup_seconds += time.perf_counter() - w0
            t0 = time.perf_counter()
            with PeakMemory(device) as peak:
                generation, images = batch.run(variant, chunk, chunk_steps, chunk_guidance)
            seconds = (time.perf_counter() - t0) / len(chunk)
            if peak.mib is not None:
                peaks.append(peak.mib)
            save_batch(store, chunk, generation, images, grid, chunk_steps, seconds, peak.mib)
            progress.update(len(chunk))
    return throughput(len(units), time.perf_counter() - started, warmup_seconds, peaks, model, device, batch_size)


class BatchGenerator:
    """One batch of units of one variant → its `Generation` and decoded images (what is timed per batch)."""

    def __init__(self, model: Backend, grid: tuple[int, int], device: str, negative_prompt: str | None):
        self.model, self.grid, self.device, self.negative_prompt = model, grid, device, negative_prompt
        self.engine = SamplerEngine(model)
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
               steps: int, seconds: float, peak_mib: float | None) -> None:
    """Each unit's PNG and token grid, then its journal line (a unit counts as done only once its files are
    in place)."""
    records = []
    for row, unit in enumerate(chunk):
        tokens = generation.tokens[row].to(torch.int32).cpu().numpy().reshape(grid)
        digests = store.save_unit_files(unit.key, to_png(images[row]), tokens)
        records.append({
            **digests,  # image_sha256, tokens_sha256: checked on reuse, a damaged or missing file is regenerated
            "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id,
            "seed": unit.seed, "steps": steps, "forward_passes": int(generation.forward_passes[row]),
            "scorer_calls": scorer_calls(generation, row),
            "seconds": round(seconds, 6),
            # the batch's peak memory shared over its images (weights included): the cost table's MiB / image
            "memory_mib": round(peak_mib / len(chunk), 3) if peak_mib is not None else None,
            "trajectory": json.dumps([counts[row] for counts in generation.trajectory]),
        })
    store.append("generated", records)


def throughput(images: int, wall: float, warmup_seconds: float, peaks: list[float], model: Backend, device: str,
               batch_size: int) -> dict[str, Any]:
    """The manifest's throughput figures: images per second of the timed batches, compile and warm-up time
    apart, per-image seconds, and peak memory (GPU per batch and per image; the process's resident set)."""
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
    if stats.get("peak_memory_gib") is not None:
        # Peak GPU memory of a full batch, divided over its images (the model's weights included).
        stats["peak_memory_per_image_gib"] = round(stats["peak_memory_gib"] / min(batch_size, images), 4)
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
            "seconds": record["seconds"], "memory_mib": record.get("memory_mib"),
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

