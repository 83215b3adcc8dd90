#!/usr/bin/env python
"""Transformer seconds per step under each model-side choice (ToMe-MGT, quantization, feature caching, PAG).

A random Meissonic-structured transformer (1024 px layout: 64 × 64 tokens, 2× down-sampled to
32 × 32 inside; width, block counts and dtype from the flags; real weights change no timing) is run
for T steps at the CFG batch (2 rows per image) under each variant's model transforms, through the
same `apply_model_transforms` the harness uses. Reported: mean seconds per step (PAG: its extra
conditional pass included), the speed-up over the plain network, and the bytes of the linear weights.

    python benchmarks/model_side_speed.py                                  # CPU, a small network
    python benchmarks/model_side_speed.py --device cuda --dtype bf16 --width 1024 --mm 14 --single 28 --codebook 8192
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

VARIANTS = ["vanilla", "tome", "tome-0.5", "cache-2", "cache-3", "quant-int8", "quant-w8a8", "quant-w4a8",
            "quant-int4", "quant-fp8", "pag"]


class Backend:
    """The part of a backend the transforms use: a swappable transformer, the token grid, the step."""

    name = "bench"

    def __init__(self, transformer, grid):
        self.transformer, self.grid, self.current_step = transformer, grid, 0
        self.attention_perturbed = False  # set inside perturbed_attention (feature caching keys on it)

    def token_grid(self):
        return self.grid

    def perturbed_attention(self, layers):
        from bench.models.transforms.attention import perturbed_attention

        return perturbed_attention(self, layers)


def linear_bytes(network) -> int:
    total = 0
    for module in network.modules():
        if isinstance(module, torch.nn.Linear):
            weight = module.weight
            inner = getattr(weight, "qdata", None) or getattr(weight, "int_data", None)
            tensor = inner if isinstance(inner, torch.Tensor) else weight
            total += tensor.numel() * tensor.element_size()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--width", type=int, default=256, help="inner width (heads × 128)")
    ap.add_argument("--mm", type=int, default=4, help="dual-stream (MM) blocks")
    ap.add_argument("--single", type=int, default=8, help="single-stream blocks")
    ap.add_argument("--codebook", type=int, default=1024,
                    help="logit channels (Meissonic: 8192; smaller keeps the CPU default about the blocks)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()

    import bench.models  # noqa: F401  (registers the transforms)
    from bench.models.meissonic_transformer import MeissonicTransformer2DModel, rope_image_ids, text_position_ids
    from mgt_common.errors import ConfigError
    from samplers.model_transforms import apply_model_transforms
    from samplers.variant import build_variant

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = torch.device(args.device)
    torch.manual_seed(0)
    network = MeissonicTransformer2DModel(num_layers=args.mm, num_single_layers=args.single,
                                          attention_head_dim=128, num_attention_heads=args.width // 128,
                                          joint_attention_dim=1024, pooled_projection_dim=args.width,
                                          downsample=True, upsample=True, codebook_size=args.codebook,
                                          vocab_size=args.codebook + 64).to(device, dtype).eval()
    backend = Backend(network, (64, 64))
    tokens = torch.full((2, 64, 64), args.codebook + 63, device=device)  # all masked
    inputs = dict(encoder_hidden_states=torch.randn(2, 77, 1024, device=device, dtype=dtype),
                  pooled_projections=torch.randn(2, args.width, device=device, dtype=dtype),
                  img_ids=rope_image_ids(64, 64, 1024, device), txt_ids=text_position_ids(77, device),
                  micro_conds=torch.tensor([[1024, 1024, 0, 0, 6]] * 2, device=device, dtype=dtype))
    base = None
    print(f"{'variant':<12} {'s / step':>9} {'speed-up':>9} {'linear MiB':>11}")
    for name in args.variants.split(","):
        variant = build_variant(name)
        try:
            for component in variant.components():
                if hasattr(component, "check_model"):
                    component.check_model(backend)
        except ConfigError as exc:
            print(f"{name:<12} skipped: {exc}")
            continue
        pag = getattr(variant.guidance, "pag_scale", 0) > 0
        with apply_model_transforms(backend, variant.model_transforms), torch.no_grad():
            seconds = 0.0
            for step in range(args.steps):
                backend.current_step = step
                timestep = torch.tensor([args.steps - 1 - step], device=device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                backend.transformer(tokens, timestep=timestep, **inputs)
                if pag:
                    with backend.perturbed_attention(variant.guidance.layers):
                        backend.transformer(tokens[:1], timestep=timestep,
                                            **{k: (v[:1] if k not in ("img_ids", "txt_ids") else v) for k, v in inputs.items()})
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds += time.perf_counter() - t0
            mib = linear_bytes(backend.transformer) / 2**20
        per_step = seconds / args.steps
        base = base or per_step
        print(f"{name:<12} {per_step:9.4f} {base / per_step:9.2f} {mib:11.1f}")


if __name__ == "__main__":
    main()
