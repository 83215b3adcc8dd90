"""Counter-based random numbers for the fused sampler step (the `fast` step mode, samplers/fast_step.py).

A `torch.Generator` cannot be used inside a compiled (fused) function, and drawing a logits-sized
tensor of uniforms from it costs a full float32 (or float64) copy. Instead, each image draws two 32-bit
words per step from *its own* generator (so images stay independent of batching, docs/design.md "Pairing"),
and every (position, codebook entry) gets its uniform from a hash of its flat index under that key,
computed where it is used. This is the counter-based idea of Philox (Salmon et al. 2011, "Parallel
random numbers: as easy as 1, 2, 3"), with a cheaper mixer: the 32-bit integer hash found by Chris
Wellons' hash-prospector (``x ^= x >> 16; x *= 0x21f0aaad; x ^= x >> 15; x *= 0x735a2d97; x ^= x >> 15``),
applied twice with the key words in between.

All arithmetic is int32 with wrap-around multiplication (the same bits on the CPU, on CUDA and in
Triton code that Inductor generates) and logical shifts written as arithmetic shift + mask, so the
streams are identical on every device and whether or not the function is compiled.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

_M1 = 0x21F0AAAD
_M2 = 0x735A2D97
#: a third odd constant that separates a second stream drawn from the same key
_STREAM2 = 0x5BD1E995
_TWO_POW_M31 = 2.0 ** -31
_TWO_POW_M53 = 2.0 ** -53


def mix32(x: torch.Tensor) -> torch.Tensor:
    """hash-prospector's 32-bit mixer on int32 tensors (a bijection of the 32-bit words)."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _M1
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _M2
    return x ^ ((x >> 15) & 0x1FFFF)


def step_keys(generators: Sequence[torch.Generator], words: int, device) -> torch.Tensor:
    """``(B, words)`` int32 keys, drawn from each image's own generator (one call per image)."""
    rows = [torch.randint(-2**31, 2**31 - 1, (words,), generator=g, device=g.device, dtype=torch.int64)
            for g in generators]
    return torch.stack(rows).to(device=device, dtype=torch.int32)


def hashed_bits(index: torch.Tensor, key0: torch.Tensor, key1: torch.Tensor) -> torch.Tensor:
    """32 random bits (int32) per entry of `index` under the key (key0, key1), broadcast against it."""
    return mix32(mix32(index + key0) ^ key1)


def open_uniform(bits: torch.Tensor) -> torch.Tensor:
    """float32 in (0, 1) from the low 31 bits: (k + ½)·2⁻³¹, never 0 or 1.

    Small values are represented to float32's relative precision, so −log(u) reaches 22.2 and an
    exponential E = −log1p(−u) resolves down to 2⁻³²: a Gumbel draw −log E reaches 22.9 (where a
    float32 uniform u in [0, 1) truncates it at about 16.6, Zheng et al. 2024, arXiv 2409.02908).
    """
    return ((bits & 0x7FFFFFFF).to(torch.float32) + 0.5) * _TWO_POW_M31


def open_uniform64(bits: torch.Tensor, more: torch.Tensor) -> torch.Tensor:
    """float64 in (0, 1) with 53 random bits (31 from `bits`, 22 from `more`)."""
    high = (bits & 0x7FFFFFFF).to(torch.float64)
    low = ((more >> 10) & 0x3FFFFF).to(torch.float64)
    return (high * 4194304.0 + low + 0.5) * _TWO_POW_M53


def gumbel_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel −log E with E = −log1p(−u) exponential (float32)."""
    return -torch.log(-torch.log1p(-open_uniform(bits)))


def gumbel64_from_bits(bits: torch.Tensor, more: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel in float64 from 53 random bits: reaches 36.7, as float64 uniforms do."""
    return -torch.log(-torch.log1p(-open_uniform64(bits, more)))


def normal_from_bits(bits: torch.Tensor, more: torch.Tensor) -> torch.Tensor:
    """Standard normal (Box–Muller, cosine branch) from two independent 31-bit uniforms."""
    radius = torch.sqrt(-2.0 * torch.log(open_uniform(bits)))
    return radius * torch.cos((2.0 * math.pi) * open_uniform(more))


def second_stream(bits: torch.Tensor) -> torch.Tensor:
    """Independent-looking bits for the same entry (a further mix with another constant)."""
    return mix32(bits ^ _STREAM2)
