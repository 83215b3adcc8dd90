"""The `fast` step mode: the whole MaskGIT step with one fused pass over the logits (docs/scaling.md,
"mode = \"fast\"").

A variant with ``mode = "fast"`` runs `fast_step` instead of `SamplerEngine.step`'s seven separate
tensor operations. Same composition, same decisions (guidance schedule, reveal schedule, confidence,
re-mask policy, loop), but the token draw and the confidence statistics come from `fused_step.fused_block`
with counter-based random numbers: the images follow the same distribution as the `exact` mode, not the
same tokens. `exact` (the default) stays token-for-token diffusers' AmusedScheduler for vanilla.

What the pass can express is each component's to say: `fast_support` asks every component of the
variant for its fused form (`fused()`, defined per kind in samplers/components.py; `fused_form` keeps a
subclass from inheriting a form written for code it replaced) when the variant is built, and refuses
the variant, naming the component, when one has none. The pass has one slot per
stage: the CFG line, one logits processor, the token draw and the confidence's statistic; the reveal
schedule, re-mask policy, loop and model transforms run around it as they are, on the sampled tokens
and the confidence (never the full probabilities, which the pass does not build).

Memory: on the CPU the logits are processed in blocks of positions (a few MiB of temporaries); on
CUDA the fused function is compiled, and blocks are used only where a sort or top-k needs its input
materialised. The model's logits are taken in the model's own dtype when the backend offers
``raw_logits`` (no float32 copy of them is ever made).
"""
from __future__ import annotations

import functools

import torch

from mgt_common.errors import ConfigError

from . import counter_random as cr
from .components import fused_form
from .fused_step import compiled_block, fused_block

#: entries per block of positions on the CPU, and on CUDA for samplers that sort (top-k, top-p)
_CPU_BLOCK = 1 << 20
_SORT_BLOCK = 1 << 24
#: run the compiled (CUDA) form on the CPU too: for benchmarks/step_speed.py --compiled-fused, which
#: measures what Inductor's generated code allocates where no GPU is at hand
COMPILE_ON_CPU = False

STEP_MODES = ("exact", "fast")


def fast_support(variant) -> str | None:
    """None when `variant` can run in fast mode, else the reason it cannot: the one rule is that every
    component has a fused form, and the pass has a single logits-processor slot."""
    for component in variant.components():
        if fused_form(component) is None:
            return (f"{component.kind} {component.name!r} has no fused form: the pass builds no probability "
                    "tensor, only the CFG line, one logits processor, the token draw and a confidence "
                    "statistic (docs/scaling.md)")
    if len(variant.logits_processors) > 1:
        return "the fused pass has one logits-processor slot, and this variant lists several processors"
    return None


def _raw_logits(engine, generation, step: int, with_uncond: bool):
    """The forward pass in the model's dtype when the backend can give it (else its float32 logits)."""
    model = engine.model
    tokens = generation.tokens
    return engine.counted_forward(
        generation, step, tokens, with_uncond, None, False,
        lambda: model.raw_logits(tokens, generation.conditioning, step, generation.total_steps, with_uncond))


def fused_statistics(cond, uncond, weight: float, inv_temp: float, scalar: float, keys, draw, processor, statistic):
    """Run `fused_block` over all positions (in blocks where needed): tokens, log p(token), the statistic."""
    batch, positions, vocab = cond.shape
    device = cond.device
    scalars = [torch.tensor(v, dtype=torch.float32, device=device) for v in (weight, inv_temp, scalar)]
    configuration = {"draw": draw, "processor": processor, "statistic": statistic}
    if device.type == "cuda" or COMPILE_ON_CPU:  # compiled once per configuration (fused_step.compiled_block)
        function = compiled_block(**configuration)
        limit = _SORT_BLOCK if draw.materialises or statistic.materialises else None
    else:
        function, limit = functools.partial(fused_block, **configuration), _CPU_BLOCK
    block = positions if limit is None else max(1, min(positions, limit // max(1, batch * vocab)))
    out = [torch.empty(batch, positions, dtype=dtype, device=device)
           for dtype in (torch.long, torch.float32, torch.float32)]
    for first in range(0, positions, block):
        part = slice(first, first + block)
        results = function(cond[:, part], None if uncond is None else uncond[:, part], *scalars, keys,
                           torch.tensor(first, dtype=torch.int32, device=device))
        for target, value in zip(out, results):
            target[:, part] = value
    return out


def fast_step(engine, generation, ctx, guidance=None, notify: bool = True) -> None:
    """`SamplerEngine.step` with the fused pass (see the module doc), on the step context `ctx` the engine
    made; updates `generation.tokens`."""
    variant = generation.variant
    step = ctx.step
    guidance = variant.guidance if guidance is None else guidance
    cfg = fused_form(guidance)
    if cfg is None:  # a loop's own guidance (the variant's was checked when it was built)
        raise ConfigError(f"guidance {guidance.name!r} has no fused form; run this loop with mode = \"exact\"")
    weight = float(cfg.weight(ctx))
    with_uncond = cfg.needs_uncond(ctx)
    cond, uncond = _raw_logits(engine, generation, step, with_uncond)
    if uncond is None or weight == 1.0:
        uncond = None
    processor, scalar = None, 0.0
    for component in variant.logits_processors:  # at most one (fast_support)
        form = fused_form(component)
        value = float(form.scalar(ctx))
        if value != 0.0:  # a step whose scalar is 0 leaves the logits alone and draws nothing for them
            processor, scalar = form.kernel, value
    sampler = fused_form(variant.token_sampler)
    inv_temp = 1.0 / float(sampler.temperature(ctx))
    confidence = fused_form(variant.confidence)
    keys = cr.step_keys(generation.generators, 4, generation.device)
    sampled, _, statistic = fused_statistics(cond, uncond, weight, inv_temp, scalar, keys, sampler.kernel,
                                             processor, confidence.statistic)
    del cond, uncond
    sampled = torch.where(ctx.unknown, sampled, generation.tokens)
    ctx.sampled = sampled
    engine.commit(generation, ctx, sampled, lambda: confidence.score(statistic, sampled, ctx), step, notify)
