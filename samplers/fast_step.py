"""The `fast` step mode: the whole MaskGIT step with one fused pass over the logits (issue 12).

A variant with ``mode = "fast"`` runs `fast_step` instead of `SamplerEngine.step`'s seven separate
tensor operations. Same composition, same decisions (guidance schedule, reveal schedule, confidence,
re-mask policy, loop), but the token draw and the confidence statistics come from `fused_step.fused_block`
with counter-based random numbers: the images follow the same distribution as the `exact` mode, not the
same tokens. `exact` (the default) stays token-for-token diffusers' AmusedScheduler for vanilla.

What the fused pass can express is checked when the variant is built (`fast_support`): the standard
CFG combination (any guidance *schedule*), noise regularization as the only logits processor, no
probability correctors (differential sampling keeps last step's probabilities: an extra tensor by
nature), the multinomial / gumbel-max-f64 / top-k / top-p / greedy token samplers, the gumbel, margin,
entropy, random and halton confidences, any reveal schedule that does not read the probabilities, and
the lowest-confidence re-mask policy. Anything else is refused with the reason.

Memory: on the CPU the logits are processed in blocks of positions (a few MiB of temporaries); on
CUDA the fused function is compiled, and blocks are used only where a sort or top-k needs its input
materialised. The model's logits are taken in the model's own dtype when the backend offers
``raw_logits`` (no float32 copy of them is ever made).
"""
from __future__ import annotations

import functools

import torch

from . import counter_random as cr
from .components import Guidance

#: entries per block of positions on the CPU, and on CUDA for samplers that sort (top-k, top-p)
_CPU_BLOCK = 1 << 20
_SORT_BLOCK = 1 << 24
#: run the compiled (CUDA) form on the CPU too: for benchmarks/step_speed.py --compiled-fused, which
#: measures what Inductor's generated code allocates where no GPU is at hand
COMPILE_ON_CPU = False

STEP_MODES = ("exact", "fast")


def fast_support(variant) -> str | None:
    """None when `variant` can run in fast mode, else the reason it cannot."""
    from .confidence import EntropyConfidence, GumbelConfidence, MarginConfidence, RandomOrder
    from .halton import HaltonOrder
    from .noise_regularization import NoiseRegularization
    from .remasking import LowestConfidence
    from .token_samplers import GreedySampler, GumbelMaxFloat64, MultinomialSampler, TopKSampler, TopPSampler

    if type(variant.guidance).combine is not Guidance.combine:
        return f"guidance {variant.guidance.name!r} combines the logits its own way"
    if any(type(p) is not NoiseRegularization for p in variant.logits_processors) or len(variant.logits_processors) > 1:
        return "only one noise-regularization logits processor is fused"
    if variant.probability_correctors:
        return "probability correctors (e.g. differential sampling) need the full probability tensor"
    if type(variant.token_sampler) not in (MultinomialSampler, GumbelMaxFloat64, TopKSampler, TopPSampler, GreedySampler):
        return f"token sampler {variant.token_sampler.name!r} is not fused"
    if type(variant.confidence) not in (GumbelConfidence, MarginConfidence, EntropyConfidence, RandomOrder, HaltonOrder):
        return f"confidence {variant.confidence.name!r} is not fused"
    if variant.reveal_schedule.name == "entropy-bounded":
        return "the entropy-bounded reveal count reads the full probabilities"
    if type(variant.remask) is not LowestConfidence:
        return f"re-mask policy {variant.remask.name!r} reads the full probabilities"
    return None


def _sampler_spec(variant, ctx) -> dict:
    from .token_samplers import GreedySampler, GumbelMaxFloat64, TopKSampler, TopPSampler

    sampler = variant.token_sampler
    if isinstance(sampler, GreedySampler):
        return {"sampler": "greedy"}
    spec = {"sampler": "multinomial"}
    if isinstance(sampler, GumbelMaxFloat64):
        spec = {"sampler": "gumbel-max-f64"}
    elif isinstance(sampler, TopKSampler):
        spec = {"sampler": "top-k", "k": min(sampler.k, ctx.generation.model.codebook_size)}
    elif isinstance(sampler, TopPSampler):
        spec = {"sampler": "top-p", "top_p": float(sampler.p)}
    return spec


def _stats_kind(variant) -> str:
    from .confidence import EntropyConfidence, MarginConfidence

    if type(variant.confidence) is MarginConfidence:
        return "margin"
    if type(variant.confidence) is EntropyConfidence:
        return "entropy"
    return ""


def _raw_logits(engine, generation, step: int, with_uncond: bool):
    """The forward pass in the model's dtype when the backend can give it (else its float32 logits)."""
    model = engine.model
    tokens = generation.tokens
    cond, uncond = model.raw_logits(tokens, generation.conditioning, step, generation.total_steps, with_uncond)
    generation.forward_passes += (tokens == model.mask_token_id).any(dim=-1).cpu().long()
    return cond, uncond


def fused_statistics(cond, uncond, weight: float, inv_temp: float, sigma: float, keys, spec: dict, stats: str):
    """Run `fused_block` over all positions (in blocks where needed): tokens, log p(token), extra statistic."""
    from .fused_step import compiled_block, fused_block

    batch, positions, vocab = cond.shape
    device = cond.device
    scalars = [torch.tensor(v, dtype=torch.float32, device=device) for v in (weight, inv_temp, sigma)]
    configuration = {"noise": sigma != 0.0, "stats": stats, **spec}
    if device.type == "cuda" or COMPILE_ON_CPU:  # compiled once per configuration (fused_step.compiled_block)
        function = compiled_block(**configuration)
        limit = _SORT_BLOCK if spec["sampler"] in ("top-k", "top-p") or stats == "margin" else None
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


def fast_step(engine, generation, step: int, guidance=None, notify: bool = True) -> None:
    """`SamplerEngine.step` with the fused pass (see the module doc); updates `generation.tokens`."""
    from .engine import StepContext
    from .noise_regularization import NoiseRegularization

    variant = generation.variant
    guidance = variant.guidance if guidance is None else guidance
    unknown = generation.masked()
    ctx = StepContext(generation, step, unknown)
    weight = float(guidance.scale(ctx))
    with_uncond = guidance.needs_uncond(ctx)
    cond, uncond = _raw_logits(engine, generation, step, with_uncond)
    if uncond is None or weight == 1.0:
        uncond = None
    sigma = 0.0
    for processor in variant.logits_processors:
        if isinstance(processor, NoiseRegularization):
            sigma = float(processor.sigma(step, generation.total_steps))
    spec = _sampler_spec(variant, ctx)
    inv_temp = 1.0
    if spec["sampler"] != "greedy":
        inv_temp = 1.0 / float(variant.token_sampler.sampling_temperature(ctx))
    keys = cr.step_keys(generation.generators, 4, generation.device)
    stats = _stats_kind(variant)
    sampled, log_p, extra = fused_statistics(cond, uncond, weight, inv_temp, sigma, keys, spec, stats)
    del cond, uncond
    sampled = torch.where(unknown, sampled, generation.tokens)
    ctx.sampled = sampled
    engine.commit(generation, ctx, sampled, lambda: _confidence(variant.confidence, log_p, extra, sampled, ctx),
                  step, notify)


def _confidence(component, log_p, extra, sampled, ctx):
    """The confidence component's score from the fused statistics (same noise draws as its exact form)."""
    from .confidence import EntropyConfidence, GumbelConfidence, MarginConfidence

    if type(component) is GumbelConfidence:
        return component.with_noise(log_p, ctx, always_draw=True)
    if type(component) in (MarginConfidence, EntropyConfidence):
        return component.with_noise(extra, ctx, always_draw=False)
    # model-free orders (random, halton) read only the batch size and dtype of the probabilities
    return component.score(torch.empty(log_p.shape[0], 0, dtype=torch.float32, device=log_p.device), sampled, ctx)
