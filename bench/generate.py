"""The generation stage: batches of units → PNG images and token grids in the run directory."""
from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Sequence

import torch
from PIL import Image

from samplers.engine import SamplerEngine
from samplers.model_transforms import apply_model_transforms
from samplers.variant import SamplerVariant

from .memory import PeakMemory
from .plan import Unit
from .progress import Progress
from .rewards import RewardBuilder
from .store import RunDirectory


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


def generate_units(model, units: Sequence[Unit], variants: dict[str, SamplerVariant], store: RunDirectory, *,
                   grid: tuple[int, int], steps: int, guidance: float, batch_size: int, device: str,
                   negative_prompt: str | None) -> dict[str, float]:
    """Generate `units` (already filtered to the unfinished ones); returns throughput figures.

    Each variant's first batch is run once untimed before it is timed (warm-up), and GPU work is
    synchronised before a batch's clock stops; ``seconds`` per unit is its batch's time per image.
    A variant's model transforms (samplers/model_transforms.py) are attached before its first batch (and
    its warm-up) and undone after its last (units come grouped by variant), so every other variant sees
    the plain model. Each record carries the batch's peak memory (bench/memory.py).

    A unit that carries its own steps and guidance (a sweep point, bench/sweep.py) uses them; `steps`
    and `guidance` are the run's values for units that do not.
    """
    engine = SamplerEngine(model)
    rewards = RewardBuilder(model, grid, device)
    compiled = getattr(model, "compiled", None)
    if compiled is not None and compiled.enabled:
        # compile every batch shape of this run before the clock starts (issue 12: compile time apart)
        with_uncond = any((guidance if u.guidance is None else u.guidance) > 1 for u in units)  # a sweep's too
        for size in sorted({len(chunk) for chunk in batches(units, batch_size)}):
            model.warm_up(size, with_uncond=with_uncond)
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
                transformed.enter_context(apply_model_transforms(model, getattr(variant, "model_transforms", ())))
                current = variant.name
                # One untimed run of each variant's first batch: the first call pays for lazy
                # initialisation, allocator growth and kernel selection (issue 10: vanilla, run first,
                # measured 0.55 s/image against 0.36–0.43 for variants with the same 16 passes). The
                # images are discarded; every unit's generation depends only on its own seed.
                w0 = time.perf_counter()
                warm = engine.generate(variant, model.encode([u.prompt.text for u in chunk], negative_prompt),
                                       [u.seed for u in chunk], grid, chunk_steps, chunk_guidance, device=device,
                                       **rewards.engine_arguments(variant, chunk))
                model.decode(warm.tokens, grid)
                _synchronize(device)
                warmup_seconds += time.perf_counter() - w0
            t0 = time.perf_counter()
            with PeakMemory(device) as peak:
                conditioning = model.encode([u.prompt.text for u in chunk], negative_prompt)
                generation = engine.generate(variant, conditioning, [u.seed for u in chunk], grid, chunk_steps,
                                             chunk_guidance, device=device, **rewards.engine_arguments(variant, chunk))
                images = model.decode(generation.tokens, grid)
                _synchronize(device)
            seconds = (time.perf_counter() - t0) / len(chunk)
            if peak.mib is not None:
                peaks.append(peak.mib)
            records = []
            for row, unit in enumerate(chunk):
                tokens = generation.tokens[row].to(torch.int32).cpu().numpy().reshape(grid)
                digest = store.save_unit_files(unit.key, to_png(images[row]), tokens)
                records.append({
                    "image_sha256": digest,  # checked on reuse: a damaged or replaced PNG is regenerated
                    "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id,
                    "seed": unit.seed, "steps": chunk_steps, "forward_passes": int(generation.forward_passes[row]),
                    "scorer_calls": scorer_calls(generation, row),
                    "seconds": round(seconds, 6),
                    # the batch's peak memory shared over its images (weights included): the cost table's MiB / image
                    "memory_mib": round(peak.mib / len(chunk), 3) if peak.mib is not None else None,
                    "trajectory": json.dumps([counts[row] for counts in generation.trajectory]),
                })
            # journal last: a unit counts as done only once its files are in place
            store.append("generated", records)
            progress.update(len(chunk))
    wall = time.perf_counter() - started
    elapsed = wall - warmup_seconds  # throughput of the timed batches only
    stats = {"images": len(units), "seconds": round(elapsed, 3), "warmup_seconds": round(warmup_seconds, 3),
             "wall_seconds": round(wall, 3),
             "images_per_second": round(len(units) / elapsed, 4) if elapsed > 0 and units else None}
    if compiled is not None and compiled.enabled:
        stats["compile_seconds"] = round(sum(compiled.compile_seconds.values()), 3)
    if torch.cuda.is_available() and str(device).startswith("cuda") and peaks:
        stats["peak_memory_gib"] = round(max(peaks) / 2**10, 3)
    return stats


def _synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a batch's time is its own and not the next one's."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def scorer_calls(generation, row: int) -> int:
    """Reward evaluations the image cost (search loops; 0 for every other sampler)."""
    calls = getattr(generation, "scorer_calls", None)
    return 0 if calls is None else int(calls[row])

