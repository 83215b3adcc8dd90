"""The run directory's images as every scorer sees them: the saved 8-bit PNGs, read back as float tensors.

Per-image scorers (through the score cache) and set metrics both read what generation saved, never
the decoder's float output, so a score can be recomputed from the run directory alone. The decoding
itself is `metrics.score_cache.read_image` (`metrics` may not import `bench`), so that the two paths
cannot drift apart.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import torch

from metrics.score_cache import read_image

#: images stacked per batch: a variant's 3,200 images at 1024² would be 40 GB as one float tensor.
BATCH_IMAGES = 64


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """A saved PNG as float ``(3, H, W)`` in [0, 1] (RGB, ``uint8 / 255``)."""
    return read_image(path)


def image_batches(paths: Sequence[str | os.PathLike], batch_size: int = BATCH_IMAGES) -> Iterator[torch.Tensor]:
    """The images at `paths`, in order, as stacked batches ``(≤ batch_size, 3, H, W)``, read lazily."""
    for start in range(0, len(paths), batch_size):
        yield torch.stack([load_image(p) for p in paths[start:start + batch_size]])
