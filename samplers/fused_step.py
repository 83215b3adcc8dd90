"""The fused sampler step: CFG, a logits processor, sampling temperature, truncation, the token draw and the
confidence statistic in one pass over the logits (the `fast` step mode, docs/scaling.md, "mode = \"fast\"").

`fused_block` reads a block of positions of the conditional and unconditional logits (any dtype, any
strides) and returns, per position, the drawn token, log p(token) under the *untempered* guided
distribution, and the confidence's statistic (log p again unless the confidence asks for another).
Nothing logits-sized survives the call: on the CPU the step calls it on blocks of positions, so its
temporaries are a few MiB; on CUDA it runs under `torch.compile`, which fuses the element-wise work into
the reductions, so the logits are read (twice at most) and no logits-sized tensor is written.

The pass has four slots, and the components fill them with the fused forms they declare (`fused()` on
each kind's base class, samplers/components.py); the kernel pieces below are what runs inside it:

- the CFG line ℓ_u + w (ℓ_c − ℓ_u) (Ho & Salimans 2022, eq. 6 on logits), w from the guidance;
- one logits processor, a `LogitsKernel` with a per-step scalar (noise regularization, arXiv 2411.10781:
  ℓ + σ_i·n with n standard normal from the counter hash);
- the token draw, a `DrawKernel`: the exponential race / Gumbel-max trick, argmax_v (ℓ_v/T + g_v) with g
  standard Gumbel is a draw from softmax(ℓ/T) (Gumbel 1954; Maddison et al. 2014, "A* sampling"), over
  logits a subclass may truncate first (top-k, top-p) or race in float64; g comes from the counter-based
  hash of `counter_random` keyed by the image's own generator;
- the confidence's per-position statistic, a `StatisticKernel` (margin, negative entropy, or log p).

It is *distribution*-equivalent to the exact path (torch.multinomial), not token-identical:
tests/test_fast_step.py checks the laws with chi-square tests. Kernel pieces are frozen dataclasses, so
that equal pieces are one compiled configuration (`compiled_block`).
"""
from __future__ import annotations

import math
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from . import counter_random as cr

LOG_CLAMP = math.log(1e-20)  # the exact path's log(p.clamp(1e-20))


# -- what runs inside the pass ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DrawKernel:
    """The multinomial draw as a float32 exponential race: argmax_v (ℓ_v/T + g_v), g standard Gumbel from
    31-bit uniforms (up to 22.9, see `counter_random.open_uniform`). Subclasses truncate the tempered
    logits (`truncate`) or race differently (`tokens`)."""

    #: True when the draw sorts or selects over the codebook, which needs its input materialised: on CUDA
    #: the compiled block then runs on pieces of positions (`fast_step._SORT_BLOCK`).
    materialises: ClassVar[bool] = False

    def truncate(self, tempered: torch.Tensor) -> torch.Tensor:
        """The tempered logits with every entry the draw must never pick set to −∞ (none here)."""
        return tempered

    def tokens(self, logits: torch.Tensor, inv_temp: torch.Tensor, index: torch.Tensor,
               keys: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, n)`` from guided float32 logits ``(B, n, V)``; ``inv_temp`` = 1/T (0-d), ``index`` the
        entries' flat indices ``(1, n, V)``, ``keys`` the draw's two key words ``(B, 2)`` int32."""
        tempered = self.truncate(logits * inv_temp)
        return (tempered + cr.gumbel_from_bits(race_bits(index, keys))).argmax(dim=-1)


def race_bits(index: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The 32 random bits of every entry under an image's two key words ``(B, 2)``."""
    return cr.hashed_bits(index, keys[:, 0, None, None], keys[:, 1, None, None])


@dataclass(frozen=True)
class LogitsKernel:
    """A logits processor inside the pass: ℓ ← `apply`(ℓ, s, index, keys), with s the processor's scalar for
    the step (a 0-d float32 tensor, so that a compiled block never specialises on its value)."""

    def apply(self, logits: torch.Tensor, scalar: torch.Tensor, index: torch.Tensor,
              keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class StatisticKernel:
    """The per-position statistic a confidence reads from the pass: log p(token) itself."""

    #: True when it sorts or selects over the codebook (see `DrawKernel.materialises`).
    materialises: ClassVar[bool] = False

    def compute(self, shifted: torch.Tensor, total: torch.Tensor, log_total: torch.Tensor,
                log_p: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` from ``shifted`` = ℓ − max_v ℓ ``(B, n, V)``, ``total`` = Σ_v exp(shifted) ``(B, n, 1)``,
        ``log_total`` = log total, and ``log_p`` = log p(token) ``(B, n)``."""
        return log_p


# -- what a component declares (its `fused()`) ---------------------------------------------------------------

def _untempered(ctx) -> float:
    return 1.0


@dataclass
class FusedGuidance:
    """A guidance in the pass: the CFG line with w_i = ``weight(ctx)``; the unconditional half of the forward
    only where ``needs_uncond(ctx)``."""

    weight: Callable[[Any], float]
    needs_uncond: Callable[[Any], bool]


@dataclass
class FusedLogitsProcessor:
    """A logits processor in the pass: `kernel` with the scalar ``scalar(ctx)``; a step whose scalar is 0
    runs without it (and draws nothing for it)."""

    kernel: LogitsKernel
    scalar: Callable[[Any], float]


@dataclass
class FusedTokenSampler:
    """A token sampler in the pass: `kernel` draws from the guided logits at temperature ``temperature(ctx)``."""

    kernel: DrawKernel
    temperature: Callable[[Any], float] = _untempered


@dataclass
class FusedConfidence:
    """A confidence in the pass: the pass computes `statistic` per position, and ``score(statistic, sampled,
    ctx)`` turns it into the step's confidence ``(B, N)`` (adding noise from the image's generator)."""

    statistic: StatisticKernel
    score: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def model_free_confidence(component) -> FusedConfidence:
    """The fused form of an order that ignores the model (random, Halton): its own `score`, given an empty
    probability tensor that carries only the batch size and the dtype such an order reads."""

    def score(statistic: torch.Tensor, sampled: torch.Tensor, ctx) -> torch.Tensor:
        empty = torch.empty(statistic.shape[0], 0, dtype=torch.float32, device=statistic.device)
        return component.score(empty, sampled, ctx)

    return FusedConfidence(StatisticKernel(), score)


# -- the pass ------------------------------------------------------------------------------------------------

def fused_block(cond: torch.Tensor, uncond: torch.Tensor | None, weight: torch.Tensor, inv_temp: torch.Tensor,
                scalar: torch.Tensor, keys: torch.Tensor, first: torch.Tensor, *, draw: DrawKernel = DrawKernel(),
                processor: LogitsKernel | None = None,
                statistic: StatisticKernel = StatisticKernel()) -> tuple[torch.Tensor, ...]:
    """One block of positions ``(B, n, V)`` → (tokens ``(B, n)`` long, log p(token) float32, statistic).

    ``weight`` (CFG w), ``inv_temp`` (1/T), ``scalar`` (the processor's s) are 0-d float32 tensors and
    ``first`` (the block's first position) a 0-d int32 tensor, so that a compiled version never
    specialises on their values; ``keys`` is ``(B, 4)`` int32: two words for the draw, two for the processor.
    """
    batch, positions, vocab = cond.shape
    logits = cond.float()
    if uncond is not None:
        uncond = uncond.float()
        logits = uncond + weight * (logits - uncond)
    # the flat index of every entry, pos * V + v (< 2^31 for any real model: 4096 × 8192 = 2^25)
    pos = torch.arange(positions, device=cond.device, dtype=torch.int32) + first
    index = pos[:, None] * vocab + torch.arange(vocab, device=cond.device, dtype=torch.int32)[None, :]
    index = index[None]  # (1, n, V)
    if processor is not None:
        logits = processor.apply(logits, scalar, index, keys[:, 2:4])
    top = logits.amax(dim=-1, keepdim=True)
    shifted = logits - top
    total = shifted.exp().sum(dim=-1, keepdim=True)
    log_total = torch.log(total)
    tokens = draw.tokens(logits, inv_temp, index, keys[:, 0:2])
    picked = shifted.gather(-1, tokens[..., None])[..., 0]
    log_p = (picked - log_total[..., 0]).clamp(min=LOG_CLAMP)
    return tokens, log_p, statistic.compute(shifted, total, log_total, log_p)


_compiled: dict[tuple, object] = {}


def compiled_block(**static):
    """`fused_block` under torch.compile for one configuration: ``static`` = the keyword arguments (the draw,
    processor and statistic kernels), bound here; dynamic shapes, so one compilation serves every batch
    and block of that configuration.

    Each configuration compiles its own *copy* of `fused_block`'s code object. TorchDynamo keeps its
    cache, and its limit of 8 recompilations (``recompile_limit``), per code object: with one shared
    function, the 9th configuration of a run (a sweep over top-k's k, say) silently fell back to the
    uncompiled whole-tensor block, with its logits-sized temporaries. The backend is
    Inductor unless ``MGT_BENCH_COMPILE_BACKEND`` names another (as for the compiled transformer).
    """
    key = tuple(sorted(static.items()))
    if key not in _compiled:
        own = _function_copy(fused_block, f"fused_block_{len(_compiled)}", static)
        backend = os.environ.get("MGT_BENCH_COMPILE_BACKEND", "inductor")
        _compiled[key] = torch.compile(own, dynamic=True, backend=backend)
    return _compiled[key]


def _function_copy(function, name: str, keywords: dict):
    """`function` with a code object of its own (same bytecode, another name) and `keywords` as its
    keyword-only defaults, so that TorchDynamo caches its compilations apart from every other copy's.
    (Not functools.partial: torch.compile wraps a partial in one shared helper frame, whose code object
    would again carry every configuration's cache entries.)"""
    renamed = {"co_name": name} | ({"co_qualname": name} if sys.version_info >= (3, 11) else {})
    code = function.__code__.replace(**renamed)
    copy = types.FunctionType(code, function.__globals__, name, function.__defaults__, function.__closure__)
    copy.__kwdefaults__ = {**(function.__kwdefaults__ or {}), **keywords}
    copy.__doc__ = function.__doc__
    return copy
