#!/usr/bin/env python
"""What each model-side choice costs, measured side by side in one run (docs/scaling.md, "Model-side choices:
what they cost"): ToMe-MGT, quantization, feature caching (FORA and residual), PAG, against the plain network.

Per variant, on the same backend and prompts, through the harness's own pieces (bench/generate.py's round
robin and warm-up, bench/flops.py, bench/memory.py, `apply_model_transforms`):

- transformer GFLOPs per image (torch's FlopCounterMode on the warm-up, as in a run) and against plain;
- MiB of the network's weights as the variant runs them (bytes of the stored tensors, packed data and
  scales included), peak MiB of a batch and the working MiB per image above what was resident;
- seconds per image (median over rounds) and its ratio to plain measured in the same rounds [p10, p90];
- a note where the costs come from a simulated layout (W4A8 without a packed kernel).

The network is a random Meissonic-structured transformer (1024 px layout: 64 × W/16 tokens, 2× down-sampled
inside; width, blocks and dtype from the flags; real weights change no cost) with a random small CLIP and VQ,
or a checkpoint with ``--path`` (e.g. the tests' tiny one). Variants a device cannot run (int4 on a CPU, float8
activations below CC 8.9) are listed as skipped with torchao's reason.

    python benchmarks/model_side_speed.py                                   # CPU, a small network
    python benchmarks/model_side_speed.py --device cuda --dtype bf16 --width 1024 --mm 14 --single 28 \\
        --codebook 8192 --image-width 1024 --steps 16 --batch 4 --rounds 3   # Meissonic's size (GPU check)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

VARIANTS = ["vanilla", "tome", "tome-0.5", "cache-2", "cache-3", "residual-cache-2", "quant-int8", "quant-w8a8",
            "quant-w4a8", "quant-int4", "quant-fp8", "pag"]
PROMPTS = ["a red cube on a blue sphere", "a cat sitting in the snow", "a lighthouse at dusk, oil painting",
           "two apples and a pear on a wooden table"]


def random_backend(args):
    """A Meissonic backend over random modules: the transformer at the flags' size, a small CLIP and VQ."""
    from transformers import CLIPTextModelWithProjection

    from bench.models.meissonic import MeissonicModel
    from bench.models.meissonic_transformer import MeissonicTransformer2DModel
    from bench.models.tiny import _clip_text_config, _tiny_vq, clip_tokenizer

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    transformer = MeissonicTransformer2DModel(
        num_layers=args.mm, num_single_layers=args.single, attention_head_dim=128, num_attention_heads=args.width // 128,
        joint_attention_dim=64, pooled_projection_dim=args.width, axes_dims_rope=(16, 56, 56), downsample=True,
        upsample=True, codebook_size=args.codebook, vocab_size=args.codebook + 64)
    vq = _tiny_vq()
    vq.quantize.embedding = torch.nn.Embedding(args.codebook, vq.config.latent_channels)  # decode any token id
    encoder = CLIPTextModelWithProjection(_clip_text_config(width=64, projection=args.width))  # a small CLIP
    return MeissonicModel.from_components(transformer.to(dtype).eval(), vq.to(dtype).eval(), encoder.to(dtype).eval(),
                                          clip_tokenizer(), height=1024, width=args.image_width, device=args.device)


def checkpoint_backend(args):
    from bench.models.meissonic import MeissonicModel

    extra = {"text_encoder": args.text_encoder} if args.text_encoder else {}
    return MeissonicModel(path=args.path, device=args.device, dtype=args.dtype, height=1024, width=args.image_width,
                          **extra)


def measure(args) -> dict:
    """Build the backend, run every variant round robin, and return the table's rows (plus skips)."""
    import bench.models  # noqa: F401  (registers the model transforms)
    from bench.generate import BatchGenerator
    from bench.flops import FlopMeter
    from bench.memory import PeakMemory, tensor_bytes
    from bench.plan import Unit
    from bench.preflight import check_model_side
    from bench.prompts import Prompt
    from mgt_common.errors import ConfigError
    from samplers.model_transforms import apply_model_transforms
    from samplers.variant import build_variant

    model = checkpoint_backend(args) if args.path else random_backend(args)
    grid = model.token_grid()
    meter = FlopMeter(model)
    batch = BatchGenerator(model, grid, args.device, "", meter)
    variants, skipped = {}, {}
    for name in args.variants.split(","):
        variant = build_variant(name)
        if name == "pag" and model.transformer.config.num_layers < 2:  # the default block 1 needs two MM blocks
            variant = build_variant(name, {name: {"base": "pag", "guidance": {"name": "pag", "pag_scale": 3.0,
                                                                               "layers": [0]}}})
        try:
            check_model_side({name: variant}, model)
        except ConfigError as exc:
            skipped[name] = str(exc)
            continue
        variants[name] = variant
    units = [Unit(key=f"{p}", variant="", prompt=Prompt(id=str(p), text=PROMPTS[p % len(PROMPTS)]), seed=p, order=p)
             for p in range(args.batch)]
    results = {name: {"seconds": [], "peak": [], "working": []} for name in variants}
    names = list(variants)
    for round_index in range(args.rounds + 1):  # round 0 is every variant's warm-up (and FLOP count)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            variant, row = variants[name], results[name]
            with apply_model_transforms(model, variant.model_transforms):
                row["note"] = "; ".join(n for n in (t.cost_note(model) for t in variant.model_transforms
                                                    if not t.neutral()) if n)
                row["weight_mib"] = tensor_bytes(model.transformer) / 2**20
                meter.use(name, counting=round_index == 0)
                with PeakMemory(args.device) as memory:
                    t0 = time.perf_counter()
                    generation, _ = batch.run(variant, units, args.steps, args.guidance)
                    seconds = (time.perf_counter() - t0) / args.batch
                if round_index == 0:
                    row["flops"] = float(generation.flops.mean())
                    continue
                row["seconds"].append(seconds)
                if memory.peak_mib is not None:
                    row["peak"].append(memory.peak_mib)
                    row["working"].append((memory.peak_mib - memory.resident_mib) / args.batch)
    plain = results.get("vanilla")
    rows = []
    for name, row in results.items():
        ratios = [s / b for s, b in zip(row["seconds"], plain["seconds"])] if plain else []
        rows.append({"variant": name, "gflops_per_image": row["flops"] / 1e9,
                     "flops_vs_plain": row["flops"] / plain["flops"] if plain else None,
                     "weight_mib": row["weight_mib"], "peak_mib_per_batch": max(row["peak"], default=None),
                     "working_mib_per_image": statistics.median(row["working"]) if row["working"] else None,
                     "seconds_per_image": statistics.median(row["seconds"]),
                     "time_vs_plain": statistics.median(ratios) if ratios else None,
                     "time_vs_plain_range": [min(ratios), max(ratios)] if ratios else None, "note": row["note"]})
    return {"device": args.device, "dtype": args.dtype, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
            "grid": list(grid), "rows": rows, "skipped": skipped}


def table(result: dict) -> str:
    """The Markdown table docs/scaling.md records."""
    def f(value, spec):
        return "" if value is None else format(value, spec)

    lines = [f"device {result['device']}, {result['dtype']}, batch {result['batch']}, {result['steps']} steps, "
             f"token grid {result['grid'][0]}×{result['grid'][1]}, {result['rounds']} rounds",
             "", "| variant | GFLOPs / image | FLOPs vs plain | weights MiB | peak MiB / batch | MiB / image above "
                 "resident | s / image | time vs plain [min, max over rounds] |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        spread = r["time_vs_plain_range"]
        ratio = f"{r['time_vs_plain']:.2f}× [{spread[0]:.2f}, {spread[1]:.2f}]" if spread else ""
        mark = " ‡" if r["note"] else ""
        lines.append(f"| {r['variant']}{mark} | {r['gflops_per_image']:.4g} | {f(r['flops_vs_plain'], '.3f')}× | "
                     f"{r['weight_mib']:.2f} | {f(r['peak_mib_per_batch'], '.0f')} | {f(r['working_mib_per_image'], '.1f')} | "
                     f"{r['seconds_per_image']:.3f}{mark} | {ratio} |")
    notes = {r["variant"]: r["note"] for r in result["rows"] if r["note"]}
    lines += [""] + [f"‡ {v}: {n}" for v, n in notes.items()]
    lines += [f"skipped {v}: {reason}" for v, reason in result["skipped"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--path", help="a Meissonic checkpoint directory instead of the random network")
    ap.add_argument("--text-encoder", help="with --path: its text encoder (as [model] text_encoder)")
    ap.add_argument("--width", type=int, default=256, help="inner width (heads × 128)")
    ap.add_argument("--mm", type=int, default=2, help="dual-stream (MM) blocks")
    ap.add_argument("--single", type=int, default=4, help="single-stream blocks")
    ap.add_argument("--codebook", type=int, default=1024,
                    help="logit channels (Meissonic: 8192; smaller keeps the CPU default about the blocks)")
    ap.add_argument("--image-width", type=int, default=256, help="image width in px at height 1024 (tokens: /16)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=2, help="images per batch")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up round")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    result = measure(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
