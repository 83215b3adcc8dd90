"""The fused sampler step: CFG, noise regularization, sampling temperature, truncation, the token draw and
the confidence statistics in one pass over the logits (issue 12, `fast` mode).

`fused_block` reads a block of positions of the conditional and unconditional logits (any dtype, any
strides) and returns, per position, the drawn token, log p(token) under the *untempered* guided
distribution, and optionally the top-1 − top-2 probability margin or the negative entropy Σ p log p.
Nothing logits-sized survives the call: on the CPU the step calls it on blocks of positions, so its
temporaries are a few MiB; on CUDA it runs under `torch.compile`, which fuses the element-wise work into
the reductions, so the logits are read (twice at most) and no logits-sized tensor is written.

Sampling is the exponential race / Gumbel-max trick: argmax_v (ℓ_v/T + g_v) with g standard Gumbel is a
draw from softmax(ℓ/T) (Gumbel 1954; Maddison et al. 2014, "A* sampling"); g comes from the counter-based
hash of `counter_random` keyed by the image's own generator. It is *distribution*-equivalent to the
exact path (torch.multinomial), not token-identical: tests/test_fast_step.py checks the laws with
chi-square tests.

- multinomial: float32 race; Gumbel up to 22.9 (31-bit uniforms, see `counter_random.open_uniform`);
- gumbel-max-f64: float64 race with 53-bit uniforms (Gumbel up to 36.7), as the float64 sampler;
- top-k: the race among entries ≥ the k-th largest tempered logit (ties at the k-th value kept, as the
  exact sampler does);
- top-p: the nucleus of softmax(ℓ/T) from a sort of the block (Holtzman et al. 2020, §3.1): entries
  whose tempered logit ≥ the smallest kept one;
- greedy: argmax ℓ;
- noise regularization (arXiv 2411.10781): ℓ + σ_i·n with n standard normal (Box–Muller from the hash).
"""
from __future__ import annotations

import math
import os
import sys
import types

import torch

from . import counter_random as cr

LOG_CLAMP = math.log(1e-20)  # the exact path's log(p.clamp(1e-20))


def fused_block(cond: torch.Tensor, uncond: torch.Tensor | None, weight: torch.Tensor, inv_temp: torch.Tensor,
                sigma: torch.Tensor, keys: torch.Tensor, first: torch.Tensor, *, sampler: str, k: int = 0,
                top_p: float = 1.0, noise: bool = False, stats: str = "") -> tuple[torch.Tensor, ...]:
    """One block of positions ``(B, n, V)`` → (tokens ``(B, n)`` long, log p(token) float32, extra).

    ``weight`` (CFG w), ``inv_temp`` (1/T), ``sigma`` (noise σ) are 0-d float32 tensors and ``first``
    (the block's first position) a 0-d int32 tensor, so that a compiled version never specialises on
    their values; ``keys`` is ``(B, 4)`` int32 (two words for the draw, two for the noise). ``stats`` =
    "margin" or "entropy" adds that statistic as the third output (else it is log p again).
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
    if noise:
        nbits = cr.hashed_bits(index, keys[:, 2, None, None], keys[:, 3, None, None])
        logits = logits + sigma * cr.normal_from_bits(nbits, cr.second_stream(nbits))
    top = logits.amax(dim=-1, keepdim=True)
    shifted = logits - top
    total = shifted.exp().sum(dim=-1, keepdim=True)
    log_total = torch.log(total)

    if sampler == "greedy":
        tokens = logits.argmax(dim=-1)
    else:
        tempered = logits * inv_temp
        if sampler == "top-k":
            kth = tempered.topk(k, dim=-1).values[..., -1:]
            tempered = torch.where(tempered >= kth, tempered, float("-inf"))
        elif sampler == "top-p":
            ordered = tempered.sort(dim=-1, descending=True).values
            mass = torch.softmax(ordered, dim=-1)
            before = mass.cumsum(dim=-1) - mass
            kept = (before < top_p).sum(dim=-1, keepdim=True).clamp(min=1)
            smallest = ordered.gather(-1, kept - 1)
            tempered = torch.where(tempered >= smallest, tempered, float("-inf"))
        bits = cr.hashed_bits(index, keys[:, 0, None, None], keys[:, 1, None, None])
        if sampler == "gumbel-max-f64":
            race = tempered.double() + cr.gumbel64_from_bits(bits, cr.second_stream(bits))
        else:
            race = tempered + cr.gumbel_from_bits(bits)
        tokens = race.argmax(dim=-1)
    picked = shifted.gather(-1, tokens[..., None])[..., 0]
    log_p = (picked - log_total[..., 0]).clamp(min=LOG_CLAMP)
    if stats == "margin":
        two = shifted.topk(2, dim=-1).values
        extra = (two[..., 0].exp() - two[..., 1].exp()) / total[..., 0]
    elif stats == "entropy":
        # Σ p log p = Σ e^s (s − log Z) / Z with s = ℓ − max: one reduction, no probabilities tensor
        weights = shifted.exp()
        extra = (weights * torch.where(weights > 0, shifted, 0.0)).sum(dim=-1) / total[..., 0] - log_total[..., 0]
    else:
        extra = log_p
    return tokens, log_p, extra


_compiled: dict[tuple, object] = {}


def compiled_block(**static):
    """`fused_block` under torch.compile for one sampler configuration: ``static`` = the keyword arguments
    (sampler, k, top_p, noise, stats), bound here; dynamic shapes, so one compilation serves every batch
    and block of that configuration.

    Each configuration compiles its own *copy* of `fused_block`'s code object. TorchDynamo keeps its
    cache, and its limit of 8 recompilations (``recompile_limit``), per code object: with one shared
    function, the 9th configuration of a run (a sweep over top-k's k, say) silently fell back to the
    uncompiled whole-tensor block, with its logits-sized temporaries (issue 12). The backend is
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
