#!/usr/bin/env python
"""Speed and memory of the real-model backends: seconds per image, peak memory, time outside the transformer.

Default (CPU, seconds): tiny random Meissonic (1024 layout at 1024 px, 512 family at 512 px) and aMUSEd
(256 px) checkpoints, built in a temporary folder and loaded through the real loading path, sampled
with the vanilla sampler at the reference step counts.

``--full-size`` (GPU): the published Meissonic-1024 architecture with *random* weights (1.0 B
parameters; the real VQ and CLIP-H text-encoder shapes), 1024 px, 64 steps, CFG 9, in the dtypes and
batch sizes given (default bf16 and fp16, batch 1 and 4). Real weights change no timing.

Reported per configuration: seconds per image (encode + sampling + decode), sampling seconds per
step, the fraction of sampling time spent *outside* the transformer forward (guidance, softmax over
the codebook, token sampling, confidence and re-masking), decode seconds, and peak memory (CUDA:
``max_memory_allocated``; CPU: the process's peak resident set, a high-water mark over the run).

    python benchmarks/model_speed.py                          # CPU, tiny models
    python benchmarks/model_speed.py --full-size              # GPU, bf16 + fp16, batch 1 and 4
    python benchmarks/model_speed.py --full-size --dtype bf16 --batch 1 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ForwardTimer:
    """Wall time inside the model forward (the device is synchronised at both ends).

    It wraps the backend's `CompiledForward.forward` rather than hooking the transformer module, so
    that nothing is traced into a compiled graph.
    """

    def __init__(self, model, device: torch.device):
        self.device, self.seconds, self.calls = device, 0.0, 0
        self._owner = model.compiled
        self._inner = model.compiled.forward

        def timed(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            out = self._inner(*args, **kwargs)
            sync(self.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return out

        self._owner.forward = timed

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def remove(self) -> None:
        del self._owner.forward  # back to the class's method


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build_variants(names: list[str], mode: str) -> list:
    """Each named preset, in fast mode where the fused step can express it (else exact, marked so)."""
    from samplers.fast_step import fast_support
    from samplers.variant import build_variant

    out = []
    for name in names:
        variant = build_variant(name)
        if mode == "fast" and fast_support(variant) is None:
            variant = build_variant(f"{name}@fast", {f"{name}@fast": {"base": name, "mode": "fast"}})
        out.append(variant)
    return out


def measure(label: str, model, *, batch: int, steps: int, guidance: float, repeats: int = 1, variant=None) -> dict:
    """Time encode → sampling → decode for one batch, after a 2-step warm-up (kernels, compilation, caches)."""
    from samplers.engine import SamplerEngine
    from samplers.variant import build_variant

    device = model.device
    engine, variant = SamplerEngine(model), variant or build_variant("vanilla")
    grid = model.token_grid()
    prompts = [f"a benchmark prompt number {i}, highly detailed" for i in range(batch)]
    timer = ForwardTimer(model, device)
    compiled_before = dict(model.compiled.compile_seconds)
    try:
        sync(device)
        t0 = time.perf_counter()
        engine.generate(variant, model.encode(prompts, model.default_negative_prompt), list(range(batch)), grid, 2,
                        guidance, device=device)  # warm-up: kernels, allocator, caches, compilation
        sync(device)
        warm_up = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rows = []
        for r in range(repeats):
            timer.reset()
            fresh = [f"{p} (repeat {r})" for p in prompts]  # not in the encoder cache
            sync(device)
            t0 = time.perf_counter()
            conditioning = model.encode(fresh, model.default_negative_prompt)
            sync(device)
            t1 = time.perf_counter()
            generation = engine.generate(variant, conditioning, list(range(batch)), grid, steps, guidance, device=device)
            sync(device)
            t2 = time.perf_counter()
            model.decode(generation.tokens, grid)
            sync(device)
            t3 = time.perf_counter()
            rows.append((t1 - t0, t2 - t1, t3 - t2, timer.seconds, timer.calls))
    finally:
        timer.remove()
    encode, sample, decode, inside, calls = (min(col) for col in zip(*rows))
    compiled_now = {k: v for k, v in model.compiled.compile_seconds.items() if k not in compiled_before}
    return {
        "model": label, "device": str(device), "dtype": str(model.dtype).removeprefix("torch."), "batch": batch,
        "height": model.height, "width": model.width, "steps": steps, "forward_passes": calls,
        "variant": variant.name, "mode": variant.mode,
        "compiled": model.compiled.enabled,
        "seconds_per_image": round((encode + sample + decode) / batch, 4),
        "sampling_seconds_per_step": round(sample / steps, 5),
        "transformer_share": round(inside / sample, 4) if sample > 0 else None,
        "outside_transformer_fraction": round(1 - inside / sample, 4) if sample > 0 else None,
        "encode_seconds": round(encode, 4), "decode_seconds": round(decode, 4),
        "peak_memory_gib": round(peak_memory_gib(device), 3),
        "compile_seconds": round(sum(compiled_now.values()), 2) if compiled_now else 0.0,
        "warm_up_seconds": round(warm_up, 2),
    }


def compiled_agreement(model, batch: int) -> float:
    """max |compiled − eager| of one forward's logits (compiled logits are not bit-identical)."""
    rows, cols = model.token_grid()
    tokens = torch.full((batch, rows * cols), model.mask_token_id, dtype=torch.long, device=model.device)
    tokens[:, ::3] = torch.randint(0, model.codebook_size, tokens[:, ::3].shape, generator=torch.Generator().manual_seed(0)).to(model.device)
    conditioning = model.encode(["agreement check"] * batch, model.default_negative_prompt)
    enabled = model.compiled.enabled
    model.compiled.enabled = False
    eager = model.raw_logits(tokens, conditioning, 3, 64)[0].float()
    model.compiled.enabled = enabled
    compiled = model.raw_logits(tokens, conditioning, 3, 64)[0].float()
    return float((compiled - eager).abs().max())


def tiny_models(folder: Path, device: str, dtype: str):
    from bench.models.amused import AmusedModel
    from bench.models.meissonic import MeissonicModel
    from bench.models.tiny import save_tiny_amused, save_tiny_meissonic

    save_tiny_meissonic(folder / "meissonic-1024", downsample=True)
    save_tiny_meissonic(folder / "meissonic-512", downsample=False)
    save_tiny_amused(folder / "amused", sample_size=16)  # 16 tokens × 16 px = 256 px, as amused-256
    common = dict(device=device, dtype=dtype)
    yield "tiny meissonic-1024", MeissonicModel(path=str(folder / "meissonic-1024"), text_encoder="checkpoint", **common), 64, 9.0
    yield "tiny meissonic-512", MeissonicModel(path=str(folder / "meissonic-512"), **common), 48, 9.0
    yield "tiny amused-256", AmusedModel(path=str(folder / "amused"), **common), 12, 10.0


def full_size_meissonic(device: torch.device, dtype: torch.dtype, width: int = 1024, post_model_dtype: str = "float32",
                        layers: int | None = None):
    """Meissonic-1024 with random weights: the published transformer, VQ and CLIP-H text-encoder shapes."""
    from diffusers import VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from bench.models.hf_backend import quiet_loading
    from bench.models.meissonic import MeissonicModel
    from bench.models.meissonic_transformer import MeissonicTransformer2DModel
    from bench.models.tiny import clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        transformer = MeissonicTransformer2DModel(
            num_layers=layers or 14, num_single_layers=2 * (layers or 14), attention_head_dim=128, num_attention_heads=8,
            joint_attention_dim=1024, pooled_projection_dim=1024, axes_dims_rope=(16, 56, 56),
            downsample=True, upsample=True, codebook_size=8192, vocab_size=8256)
        vq = VQModel(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 5,
                     up_block_types=["UpDecoderBlock2D"] * 5, block_out_channels=[128, 256, 256, 512, 768],
                     layers_per_block=2, act_fn="silu", latent_channels=64, norm_num_groups=32, num_vq_embeddings=8192,
                     sample_size=32, norm_type="group", lookup_from_codebook=True, mid_block_add_attention=False,
                     force_upcast=True)
        text = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
            projection_dim=1024, max_position_embeddings=77, hidden_act="gelu", eos_token_id=2))
    # as the backend loads them: everything in the run dtype, an fp16 VQ upcast to fp32 (force_upcast)
    with quiet_loading():  # diffusers warns about .to(dtype) on models without fp32-only modules
        vq = vq.float() if dtype == torch.float16 else vq.to(dtype)
        transformer = transformer.to(dtype)
    return MeissonicModel.from_components(transformer, vq, text.to(dtype), clip_tokenizer(),
                                          height=1024, width=width, device=str(device),
                                          post_model_dtype=post_model_dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-size", action="store_true", help="random full-size Meissonic-1024 (needs a GPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", nargs="+", default=None, choices=sorted(DTYPES),
                        help="default: fp32 for the tiny CPU run, bf16 fp16 for --full-size")
    parser.add_argument("--batch", nargs="+", type=int, default=None, help="default: 1 (tiny), 1 4 (full size)")
    parser.add_argument("--steps", type=int, default=None, help="default: the reference steps of each model")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per configuration (the minimum is kept)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--width", type=int, default=1024, help="--full-size image width (height is 1024)")
    parser.add_argument("--allow-cpu", action="store_true", help="run --full-size on the CPU (a smoke test: slow)")
    parser.add_argument("--variants", default="vanilla", help="comma-separated presets (e.g. vanilla,noise-reg,"
                        "differential,zigzag,top-p,gumbel-max-f64)")
    parser.add_argument("--mode", choices=("exact", "fast"), default="exact",
                        help="sampler step mode; fast where the fused step can express the variant (else exact)")
    parser.add_argument("--compile", choices=("off", "on", "both"), default="off",
                        help="torch.compile the transformer: off (eager), on, or both (eager rows, then compiled)")
    parser.add_argument("--compile-mode", choices=("default", "max-autotune"), default="default")
    parser.add_argument("--cuda-graphs", action="store_true", help="also capture the compiled forward as CUDA graphs")
    parser.add_argument("--eager-variants", default=None,
                        help="with --compile both: the variants of the eager rows (default: the same as --variants)")
    parser.add_argument("--tiny-size", type=int, default=None,
                        help="--full-size layout with this many layers of each kind (a quick CPU test of the script)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    results = []
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    eager_names = names if args.eager_variants is None else [v.strip() for v in args.eager_variants.split(",")]
    phases = {"off": [False], "on": [True], "both": [False, True]}[args.compile]

    def run_phases(label, model, steps, guidance, batches):
        for compiled in phases:
            if compiled:
                model.compiled.configure(model.name, True, args.compile_mode, args.cuda_graphs, model.device)
            variants = build_variants(names if compiled or args.compile != "both" else eager_names, args.mode)
            for batch in batches:
                for variant in variants:
                    results.append(measure(label, model, batch=batch, steps=steps, guidance=guidance,
                                           repeats=args.repeats, variant=variant))
                    print(json.dumps(results[-1]), flush=True)
                if compiled:
                    delta = compiled_agreement(model, batch)
                    print(json.dumps({"check": "compiled vs eager logits", "batch": batch, "max_abs_diff": delta}),
                          flush=True)
                    results[-1]["compiled_max_abs_diff"] = delta

    if args.full_size:
        if device.type != "cuda" and not args.allow_cpu:
            parser.error("--full-size needs a CUDA device (one 1024 px image takes about 13 minutes on a 2-core CPU)")
        for dtype in args.dtype or ["bf16", "fp16"]:
            model = full_size_meissonic(device, DTYPES[dtype], args.width, layers=args.tiny_size)
            run_phases(f"meissonic-1024 (random, {dtype})", model, args.steps or 64, 9.0, args.batch or [1, 4])
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    else:
        with tempfile.TemporaryDirectory(prefix="mgt-speed-") as folder:
            for dtype in args.dtype or ["fp32"]:
                for label, model, steps, guidance in tiny_models(Path(folder), str(device), dtype):
                    run_phases(label, model, args.steps or steps, guidance, args.batch or [1])

    header = ["model", "dtype", "compiled", "batch", "variant", "mode", "seconds_per_image", "sampling_seconds_per_step",
              "transformer_share", "outside_transformer_fraction", "peak_memory_gib", "compile_seconds"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in results:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    print(f"\ndevice: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                  f" ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"))
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
