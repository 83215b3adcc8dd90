"""Per-image random streams.

Every image of a benchmark owns one `torch.Generator`, seeded from its (prompt, seed) pair and shared by
all variants, so that a variant-vs-baseline comparison is paired and an image never depends on the
batch it was generated in (docs/design.md, "Pairing"). Every random draw of a sampler therefore goes through
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
    """One categorical draw per position: probs ``(B, N, V)`` → tokens ``(B, N)``.

    Token for token, and generator state for generator state, what ``torch.multinomial(probs[b], 1,
    generator=…)`` returns; on the CPU it gets there with less work (see `exponential_race`).
    """
    out = torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
    for row, generator in enumerate(generators):
        row_probs = probs[row]
        if row_probs.device.type == "cpu" and row_probs.dtype in (torch.bfloat16, torch.float16):
            row_probs = row_probs.float()  # as AmusedScheduler.step: CPU multinomial draws from float32
        if _race_applies(row_probs, generator):
            out[row] = exponential_race(row_probs, generator)
        else:
            out[row] = torch.multinomial(row_probs, 1, generator=generator)[:, 0]
    return out


# -- torch.multinomial, exactly, with less work ------------------------------------------------------
#
# For one sample per row, torch.multinomial (ATen Distributions.cpp, the "fast-path ... if only one
# sample is drawn", pytorch/pytorch#11931) fills q = empty_like(p).exponential_(1, generator) — one float32
# q = −log1p(−u) per entry from a float64 uniform u — and returns argmax(p / q): the exponential race, an
# exact categorical sampler. On the CPU, that serial log1p over every entry (33.5 M per image per
# Meissonic step) is most of a sampler step. Since −log1p(−u) ≥ u, p/u bounds p/q from above: after
# drawing the *same* uniforms (same generator, same order, so the stream is consumed exactly as torch
# does), only the few entries whose bound reaches a row's best exact value need their exact race value.
# The winner is torch's argmax: the first index on ties, NaN above everything.

#: uniforms drawn per chunk (float64, 16 MiB): the extra memory stays a small fraction of the logits.
_RACE_CHUNK = 1 << 21
#: relative slack on the p/u bound: covers the float32 roundings of q and of p/q, and those of the float32
#: bound itself (u and p/u, 2^-24 each): a few 2^-24 in all, far below 1e-5.
_RACE_SLACK = 1.0 + 1e-5
_race_checked: bool | None = None


def _race_value(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """p / q with q = float32(−log1p(−u)): the value torch.multinomial's argmax compares."""
    return p / (-torch.log1p(-u)).to(p.dtype)


def exponential_race(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``torch.multinomial(probs, 1, generator=generator)[:, 0]`` for float32 probs ``(N, V)`` on the CPU."""
    rows, vocab = probs.shape
    out = torch.empty(rows, dtype=torch.long)
    step = max(1, _RACE_CHUNK // vocab)
    buffer = torch.empty((min(step, rows), vocab), dtype=torch.float64)
    bound_buffer = torch.empty((min(step, rows), vocab), dtype=torch.float32)
    for start in range(0, rows, step):
        p = probs[start:start + step]
        u = buffer[: p.shape[0]].uniform_(0, 1, generator=generator)
        # The bound in float32: a float32 / float64 division takes torch's slow mixed-dtype path (3× the
        # time of casting u and dividing in float32). Its two extra roundings (≤ 2^-24 each) are covered
        # by _RACE_SLACK like the race value's own.
        bound = torch.div(p, bound_buffer[: p.shape[0]].copy_(u), out=bound_buffer[: p.shape[0]])
        # argmax lets NaN and inf win, so a row with u = 0 somewhere (p/0) shows up in its leader's value
        leader = bound.argmax(dim=-1, keepdim=True)
        best = _race_value(p.gather(1, leader), u.gather(1, leader))  # ≤ the row's maximum race value
        if bool(torch.isfinite(best).all()) and bool((best > 1e-30).all()):
            row, col = torch.ge(bound, best / _RACE_SLACK).nonzero(as_tuple=True)
            values = _race_value(p[row, col], u[row, col])
            out[start:start + p.shape[0]] = _first_argmax(row, col, values, p.shape[0], vocab)
        else:  # a zero uniform or denormal values (probability ~2^-53 per entry): torch's own formula
            out[start:start + p.shape[0]] = _race_value(p, u).argmax(dim=-1)
    return out


def _first_argmax(row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, rows: int, vocab: int) -> torch.Tensor:
    """Per row, the smallest column among the maximal values, NaN above everything: torch.argmax's rule."""
    nan = torch.isnan(value)
    has_nan = torch.zeros(rows, dtype=torch.long).scatter_reduce(0, row, nan.long(), "amax")
    finite = torch.where(nan, torch.full_like(value, float("-inf")), value)
    top = torch.full((rows,), float("-inf"), dtype=value.dtype).scatter_reduce(0, row, finite, "amax")
    winner = torch.where(has_nan[row] > 0, nan, finite == top[row])
    return torch.full((rows,), vocab, dtype=torch.long).scatter_reduce(0, row[winner], col[winner], "amin")


def _race_applies(probs: torch.Tensor, generator: torch.Generator) -> bool:
    """Float32 CPU rows with finite, positive sums (torch.multinomial raises on the others, and still does),
    once this PyTorch build has been seen to match torch.multinomial."""
    if probs.device.type != "cpu" or generator.device.type != "cpu" or probs.dtype != torch.float32 \
            or probs.dim() != 2 or probs.shape[-1] < 2:
        return False
    low, high = torch.aminmax(probs)  # torch.multinomial's own validity checks, in one pass and a sum
    if not (bool(low >= 0) and bool(torch.isfinite(high)) and bool((probs.sum(dim=-1) > 0).all())):
        return False
    return _race_matches_torch()


def _race_matches_torch() -> bool:
    """Does `exponential_race` reproduce torch.multinomial (tokens and generator state) in this build?

    Checked once per process on peaked, flat and partly zero rows: should a PyTorch release change how
    multinomial draws, the sampler falls back to torch.multinomial itself instead of drifting.
    """
    global _race_checked
    if _race_checked is None:
        source = torch.Generator().manual_seed(1234)
        logits = torch.randn(48, 300, generator=source) * torch.linspace(0.1, 12, 48)[:, None]
        probs = logits.softmax(dim=-1)
        probs[::5, ::3] = 0.0
        ours, theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        same = torch.equal(exponential_race(probs, ours), torch.multinomial(probs, 1, generator=theirs)[:, 0])
        _race_checked = same and torch.equal(ours.get_state(), theirs.get_state())
    return _race_checked
