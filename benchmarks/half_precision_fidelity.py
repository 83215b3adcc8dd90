#!/usr/bin/env python
"""How far the half-precision vanilla sampler follows the official pipeline (docs/models.md, "Post-model precision").

Two measurements, both on the CPU:

1. The share of exact zeros among ``uniform_`` draws per dtype. diffusers' Gumbel noise clamps u at
   1e-20, which is 0 in float16: there a zero draw makes the noise −inf. In bfloat16 (float32's
   exponent range) the clamp holds.
2. On a tiny random aMUSEd checkpoint (``bench.models.tiny``, a 16 × 16 token grid at 256 px) in the
   run's dtype, how many token grids of our vanilla sampler equal diffusers' `AmusedPipeline` (the
   official aMUSEd pipeline) run in that dtype: with ``post_model_dtype = "float32"`` (our default) and
   ``"model"`` (the official arithmetic), and "model" against the pipeline with its one deliberate
   difference taken out (a committed token is never re-masked: its confidence +inf, same noise), with
   the number of committed tokens the pipeline re-masked and how many of those had −inf noise.

    python benchmarks/half_precision_fidelity.py                      # float16, 8/12/24 steps, 24 seeds
    python benchmarks/half_precision_fidelity.py --dtype bfloat16 --seeds 8
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def zero_rates(draws: int = 20_000_000) -> dict[str, float]:
    """Share of exact zeros among `draws` CPU ``uniform_(0, 1)`` values, per half dtype."""
    rates = {}
    for name, dtype in DTYPES.items():
        generator, zeros, chunk = torch.Generator().manual_seed(0), 0, 1_000_000
        for _ in range(draws // chunk):
            zeros += int((torch.empty(chunk, dtype=dtype).uniform_(0, 1, generator=generator) == 0).sum())
        rates[name] = zeros / draws
    return rates


def pipeline_agreement(dtype: str, height: int, steps_list: list[int], seeds: int, prompt: str) -> list[dict]:
    import diffusers.schedulers.scheduling_amused as amused_scheduler
    from diffusers import AmusedScheduler

    from bench.models.amused import AmusedModel
    from bench.models.tiny import save_tiny_amused
    from samplers.engine import SamplerEngine
    from samplers.variant import build_variant

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers.pipelines.deprecated.amused.pipeline_amused import AmusedPipeline

    root = save_tiny_amused(Path(tempfile.mkdtemp()) / "amused", sample_size=height // 16)
    models = {path: AmusedModel(path=str(root), device="cpu", dtype=dtype, height=height, width=height,
                                post_model_dtype=path) for path in ("float32", "model")}
    net = models["model"]
    pipe = AmusedPipeline(vqvae=net.vqvae, tokenizer=net.prompts.tokenizer, text_encoder=net.prompts.text_encoder,
                          transformer=net.transformer, scheduler=AmusedScheduler(mask_token_id=net.mask_token_id))
    pipe.set_progress_bar_config(disable=True)
    original = amused_scheduler.mask_by_random_topk
    remasks = {"all": 0, "minus_inf": 0}

    def scheduler_mask(keep_committed: bool):
        def mask(mask_len, probs, temperature=1.0, generator=None):
            # the scheduler's rule on its own noise; committed positions carry the dtype's max as input
            noise = amused_scheduler.gumbel_noise(probs, generator=generator)
            confidence = torch.log(probs.clamp(1e-20)) + temperature * noise
            committed = probs == torch.finfo(probs.dtype).max
            if keep_committed:
                confidence = torch.where(committed, torch.inf, confidence)
            cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len.long())
            masking = confidence < cut_off
            if not keep_committed:
                remasks["all"] += int((masking & committed).sum())
                remasks["minus_inf"] += int((masking & committed & torch.isneginf(noise)).sum())
            return masking
        return mask

    def pipeline(steps: int, seed: int, keep_committed: bool) -> torch.Tensor:
        amused_scheduler.mask_by_random_topk = scheduler_mask(keep_committed)
        try:
            out = pipe([prompt], num_inference_steps=steps, guidance_scale=10.0, height=height, width=height,
                       generator=torch.Generator().manual_seed(seed), output_type="latent")
        finally:
            amused_scheduler.mask_by_random_topk = original
        return out.images.reshape(1, -1)

    rows = []
    for steps in steps_list:
        remasks.update(all=0, minus_inf=0)
        equal = {"float32": 0, "model": 0, "model_vs_kept": 0}
        for seed in range(seeds):
            official, kept = pipeline(steps, seed, False), pipeline(steps, seed, True)
            for path, model in models.items():
                tokens = SamplerEngine(model).generate(build_variant("vanilla"), model.encode([prompt]), [seed],
                                                       model.token_grid(), steps, 10.0).tokens
                equal[path] += int(torch.equal(tokens, official))
                if path == "model":
                    equal["model_vs_kept"] += int(torch.equal(tokens, kept))
        rows.append({"steps": steps, **equal, "committed_remasked": remasks["all"],
                     "of_which_minus_inf_noise": remasks["minus_inf"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    parser.add_argument("--height", type=int, default=256, help="pixels; 16 per token (256 → 16 × 16 tokens)")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 12, 24])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--draws", type=int, default=20_000_000, help="uniform draws per dtype for the zero rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, rate in zero_rates(args.draws).items():
        print(f"{name}: uniform_ returned exactly 0 in {rate:.3e} of {args.draws} CPU draws")
    print(f"\n{args.dtype}, {args.height // 16} x {args.height // 16} tokens, {args.seeds} seeds: token grids equal "
          "to AmusedPipeline in the same dtype")
    print("steps | ours, float32 post-model | ours, model dtype | model dtype vs pipeline keeping committed "
          "tokens | committed tokens the pipeline re-masked (−inf noise)")
    for row in pipeline_agreement(args.dtype, args.height, args.steps, args.seeds, "a lighthouse at dusk"):
        print(f"{row['steps']:5d} | {row['float32']:2d} | {row['model']:2d} | {row['model_vs_kept']:2d} | "
              f"{row['committed_remasked']} ({row['of_which_minus_inf_noise']})")


if __name__ == "__main__":
    main()
