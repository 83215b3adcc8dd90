"""The generation stage: batches of units → PNG images and token grids in the run directory."""
from __future__ import annotations

import io
import json
import time
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from samplers.engine import SamplerEngine
from samplers.variant import SamplerVariant

from .plan import Unit
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

    A unit that carries its own steps and guidance (a sweep point, bench/sweep.py) uses them; `steps`
    and `guidance` are the run's values for units that do not.
    """
    engine = SamplerEngine(model)
    started = time.perf_counter()
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tqdm(total=len(units), desc="generate", unit="img", disable=None) as progress:
        for chunk in batches(units, batch_size):
            variant = variants[chunk[0].variant]
            # a chunk holds one variant, so one (steps, guidance) point
            chunk_steps = steps if chunk[0].steps is None else int(chunk[0].steps)
            chunk_guidance = guidance if chunk[0].guidance is None else float(chunk[0].guidance)
            progress.set_postfix_str(variant.name)
            t0 = time.perf_counter()
            conditioning = model.encode([u.prompt.text for u in chunk], negative_prompt)
            generation = engine.generate(variant, conditioning, [u.seed for u in chunk], grid, chunk_steps,
                                         chunk_guidance, device=device)
            images = model.decode(generation.tokens, grid)
            seconds = (time.perf_counter() - t0) / len(chunk)
            records = []
            for row, unit in enumerate(chunk):
                tokens = generation.tokens[row].to(torch.int32).cpu().numpy().reshape(grid)
                store.save_unit_files(unit.key, to_png(images[row]), tokens)
                records.append({
                    "unit_key": unit.key, "variant": unit.variant, "prompt_id": unit.prompt.id,
                    "seed": unit.seed, "steps": chunk_steps, "forward_passes": int(generation.forward_passes[row]),
                    "seconds": round(seconds, 6),
                    "trajectory": json.dumps([counts[row] for counts in generation.trajectory]),
                })
            # journal last: a unit counts as done only once its files are in place
            store.append("generated", records)
            progress.update(len(chunk))
    elapsed = time.perf_counter() - started
    stats = {"images": len(units), "seconds": round(elapsed, 3),
             "images_per_second": round(len(units) / elapsed, 4) if elapsed > 0 and units else None}
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        stats["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return stats


def load_image(path) -> torch.Tensor:
    """A saved PNG as float ``(3, H, W)`` in [0, 1] — what the scorers see."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
