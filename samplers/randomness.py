"""Per-image random streams.

Every image of a benchmark owns one `torch.Generator`, seeded from its (prompt, seed) pair and shared by
all variants, so that a variant-vs-baseline comparison is paired and an image never depends on the
batch it was generated in (DESIGN.md, "Pairing"). Every random draw of a sampler therefore goes through
these helpers, which draw row by row from the row's own generator.

For one image, the draws consume the generator exactly as `diffusers.AmusedScheduler.step` does
(`torch.multinomial` over all positions, then one uniform per position), which is what makes the
vanilla sampler token-for-token identical to the reference.
"""
from __future__ import annotations

from typing import Sequence

import torch


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of one image. Same seed → same stream on the same device type."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def uniform(generators: Sequence[torch.Generator], shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) draws of `shape` per row, stacked to ``(B, *shape)``."""
    out = torch.empty((len(generators), *shape), device=device, dtype=dtype)
    for row, generator in enumerate(generators):
        out[row].uniform_(0, 1, generator=generator)
    return out


def normal(generators: Sequence[torch.Generator], shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws of `shape` per row, stacked to ``(B, *shape)``."""
    out = torch.empty((len(generators), *shape), device=device, dtype=dtype)
    for row, generator in enumerate(generators):
        out[row].normal_(0, 1, generator=generator)
    return out


def gumbel(generators: Sequence[torch.Generator], shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """Standard Gumbel noise −log(−log u), with the clamps of diffusers' `gumbel_noise` (u, −log u ≥ 1e-20)."""
    u = uniform(generators, shape, device, dtype)
    return -torch.log((-torch.log(u.clamp(1e-20))).clamp(1e-20))


def multinomial(generators: Sequence[torch.Generator], probs: torch.Tensor) -> torch.Tensor:
    """One categorical draw per position: probs ``(B, N, V)`` → tokens ``(B, N)``."""
    out = torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
    for row, generator in enumerate(generators):
        out[row] = torch.multinomial(probs[row], 1, generator=generator)[:, 0]
    return out
