#!/usr/bin/env python
"""One sampler step at Meissonic's real shape, ours against ``diffusers.AmusedScheduler.step`` (docs/scaling.md, "The sampler step is not the bottleneck").

For every batch size and dtype asked for, the same conditional and unconditional logits ``(B, 4096,
8192)`` (Meissonic-1024: a 64×64 token grid, an 8192-entry codebook) go through

- the reference: the pipeline's CFG line ``uncond + w (cond − uncond)`` then
  ``AmusedScheduler.step`` (softmax, multinomial, Gumbel-perturbed confidence, sort, re-mask);
- our `SamplerEngine.step` with the vanilla composition and with every requested preset variant
  (each design choice's own step; variants whose loop adds passes — zig-zag — are timed per step and
  flagged, their extra passes are a loop cost, not a step cost).

Every measurement starts from the same state: step 0 of T = 64, every position masked (the step with
the most work), w = 9 (Meissonic's default). Reference and ours alternate within each repetition, so a
slow moment of a shared machine hits both. Reported: median and interquartile range of the seconds,
the ratio of medians ours / reference, and the peak *extra* memory during the step in multiples of one
logits tensor of that shape and dtype (CPU: the growth of the process's peak resident set, reset
before each call through /proc/self/clear_refs; CUDA: ``max_memory_allocated`` above the baseline).

    python benchmarks/step_speed.py                               # CPU: B = 1, 2; fp32, bf16; vanilla
    python benchmarks/step_speed.py --variants all --batch 1 --dtype fp32 --reps 3
    python benchmarks/step_speed.py --device cuda --variants all --mode both   # exact and fused steps
    python benchmarks/step_speed.py --seq-len 256 --vocab 512     # a quick smoke run
    python benchmarks/step_speed.py --mode fast --compiled-fused  # the compiled fused step, on the CPU
    python benchmarks/step_speed.py --batch 1 --watch both        # the cost of the per-step NaN watch
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import AmusedScheduler  # noqa: E402

from samplers.engine import Generation, SamplerEngine  # noqa: E402
from samplers.fast_step import fast_support  # noqa: E402
from samplers.protocol import MaskedTokenModel  # noqa: E402
from samplers.variant import VARIANT_PRESETS, build_variant  # noqa: E402

try:  # the step's NaN watch (absent from versions before it existed: measure those without)
    from samplers.output_checks import StepWatch  # noqa: E402
except ImportError:  # pragma: no cover
    StepWatch = None

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MASK_TOKEN_ID = 8255  # Meissonic's [MASK] id (the codebook is 0 … 8191)
TOTAL_STEPS = 64
GUIDANCE = 9.0


class FixedLogits(MaskedTokenModel):
    """A stand-in transformer that returns the benchmark's logits (no copy: the step must not need one)."""

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor):
        self.cond, self.uncond = cond, uncond
        self.mask_token_id = MASK_TOKEN_ID
        self.codebook_size = cond.shape[-1]
        self.forward_passes = 0

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        self.forward_passes += 1
        return self.cond, (self.uncond if with_uncond else None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak extra memory of one call: CUDA allocator statistics, or the resident-set high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_ok = device.type == "cpu" and _can_reset_hwm()

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.cpu_ok:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM to the current resident set (Linux ≥ 4.0)
            self.base = _proc_status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.extra = torch.cuda.max_memory_allocated(self.device) - self.base
        elif self.cpu_ok:
            self.extra = _proc_status("VmHWM") - self.base
        else:
            self.extra = None


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        _proc_status("VmHWM")
        return True
    except OSError:
        return False


def reference_step(cond, uncond, tokens, seed: int, device) -> torch.Tensor:
    scheduler = AmusedScheduler(mask_token_id=MASK_TOKEN_ID, masking_schedule="cosine")
    scheduler.set_timesteps(TOTAL_STEPS, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    logits = uncond + GUIDANCE * (cond - uncond)  # the reference pipeline's CFG on logits
    return scheduler.step(logits, scheduler.timesteps[0], tokens, generator=generator).prev_sample


def our_step(engine: SamplerEngine, variant, tokens, seeds, device, watch: bool = True) -> torch.Tensor:
    fields = {f.name for f in dataclasses.fields(Generation)}
    grid_side = int(round(tokens.shape[1] ** 0.5))
    extra = {"grid": (grid_side, tokens.shape[1] // grid_side)} if "grid" in fields else {}
    generation = Generation(
        model=engine.model, variant=variant, conditioning={}, tokens=tokens.clone(),
        generators=[torch.Generator(device=device).manual_seed(s) for s in seeds], total_steps=TOTAL_STEPS,
        guidance_scale=GUIDANCE, forward_passes=torch.zeros(len(seeds), dtype=torch.long), **extra)
    # a run watches every step for NaN (samplers/output_checks.py StepWatch); ``watch=False`` leaves it out
    engine.watch = StepWatch() if watch and StepWatch is not None else None
    engine.step(generation, 0)
    if engine.watch is not None:
        engine.watch.first()  # the end-of-generation read, paid here for one step
    engine.watch = None
    return generation.tokens


def measure(fn, device, reps_out: list[float], memory_out: list):
    with PeakMemory(device) as peak:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        reps_out.append(time.perf_counter() - start)
    memory_out.append(peak.extra)


def summarise(seconds: list[float]) -> tuple[float, float]:
    quartiles = statistics.quantiles(seconds, n=4, method="inclusive") if len(seconds) > 1 else [seconds[0]] * 3
    return statistics.median(seconds), quartiles[2] - quartiles[0]


def run(args) -> list[dict]:
    device = torch.device(args.device)
    names = list(VARIANT_PRESETS.names()) if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    names = ["vanilla"] + [n for n in names if n != "vanilla"]
    variants = {}
    for name in names:
        if args.mode in ("exact", "both"):
            variants[name] = build_variant(name)
        # the fused step (docs/plugins.md, "Fast mode") for every composition it can express: NAME@fast
        if args.mode in ("fast", "both") and fast_support(build_variant(name)) is None:
            variants[f"{name}@fast"] = build_variant(f"{name}@fast", {f"{name}@fast": {"base": name, "mode": "fast"}})
    # NAME-unwatched: the same step without the NaN watch, alternated with the watched one
    watched = {name: True for name in variants}
    if args.watch == "both":
        for name in list(variants):
            variants[f"{name}-unwatched"], watched[f"{name}-unwatched"] = variants[name], False
    elif args.watch == "off":
        watched = {name: False for name in variants}
    names = list(variants)
    rows = []
    for batch in args.batch:
        for dtype_name in args.dtype:
            dtype = DTYPES[dtype_name]
            source = torch.Generator().manual_seed(0)
            shape = (batch, args.seq_len, args.vocab)
            # logits of a confident model: peaked rows, as a trained transformer gives late in training
            cond = (torch.randn(shape, generator=source) * 3.0).to(device=device, dtype=dtype)
            uncond = (torch.randn(shape, generator=source) * 3.0).to(device=device, dtype=dtype)
            logits_bytes = cond.numel() * cond.element_size()
            tokens = torch.full((batch, args.seq_len), MASK_TOKEN_ID, dtype=torch.long, device=device)
            engine = SamplerEngine(FixedLogits(cond, uncond))
            timings = {"reference": ([], [])} | {name: ([], []) for name in names}
            for rep in range(args.reps + 1):  # the first repetition warms up and is dropped
                record = rep > 0
                seconds, memory = timings["reference"]
                measure(lambda: reference_step(cond, uncond, tokens, 0, device), device,
                        seconds if record else [], memory if record else [])
                for name in names:
                    seconds, memory = timings[name]
                    measure(lambda: our_step(engine, variants[name], tokens, list(range(batch)), device, watched[name]), device,
                            seconds if record else [], memory if record else [])
            ref_median, _ = summarise(timings["reference"][0])
            for name, (seconds, memory) in timings.items():
                median, iqr = summarise(seconds)
                peaks = [m for m in memory if m is not None]
                loop = variants[name].loop.name if name in variants else "-"
                rows.append({
                    "batch": batch, "dtype": dtype_name, "sampler": name, "median_s": median, "iqr_s": iqr,
                    "ratio": median / ref_median, "extra_memory_x_logits": max(peaks) / logits_bytes if peaks else None,
                    # logits-shaped float32 tensors: the unit of the "at most two extra copies" budget (a bf16
                    # step needs float32 probabilities, so its floor is 2 such copies = 4 bf16 logits)
                    "extra_float32_copies": max(peaks) / (cond.numel() * 4) if peaks else None,
                    "reps": len(seconds), "loop": loop,
                })
                print(format_row(rows[-1]), flush=True)
            del cond, uncond, engine
            gc.collect()
    return rows


HEADER = (f"{'B':>2} {'dtype':<5} {'sampler':<28} {'median ms':>10} {'IQR ms':>8} {'ours/ref':>8} {'extra mem':>10} "
          f"{'f32 copies':>10}")


def format_row(row: dict) -> str:
    memory = "n/a" if row["extra_memory_x_logits"] is None else f"{row['extra_memory_x_logits']:.2f}x"
    copies = "n/a" if row["extra_float32_copies"] is None else f"{row['extra_float32_copies']:.2f}"
    flag = " !" if row["extra_float32_copies"] is not None and row["sampler"] != "reference" \
        and row["extra_float32_copies"] > 2.0 + 0.05 else ""
    note = " (loop adds passes)" if row["loop"] not in ("standard", "-") else ""
    return (f"{row['batch']:>2} {row['dtype']:<5} {row['sampler']:<28} {row['median_s'] * 1e3:>10.3f} {row['iqr_s'] * 1e3:>8.3f} "
            f"{row['ratio']:>8.2f} {memory:>10} {copies:>10}{flag}{note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--dtype", type=lambda s: s.split(","), default=["fp32", "bf16"])
    parser.add_argument("--variants", default="vanilla", help="comma-separated preset names, or 'all'")
    parser.add_argument("--mode", choices=("exact", "fast", "both"), default="exact",
                        help="step mode: exact (reference arithmetic), fast (fused; NAME@fast rows), both")
    parser.add_argument("--watch", choices=("on", "off", "both"), default="on",
                        help="the per-step NaN watch a run has (on), without it (off), or both alternated (both)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (after one warm-up)")
    parser.add_argument("--seq-len", type=int, default=4096, help="token positions (Meissonic-1024: 4096)")
    parser.add_argument("--vocab", type=int, default=8192, help="codebook size (Meissonic: 8192)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--compiled-fused", action="store_true",
                        help="on the CPU, run the fast step's compiled (CUDA) form instead of its blocks: what "
                             "Inductor's code allocates and costs, where no GPU is at hand (compiles per preset)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compiled_fused:
        import samplers.fast_step

        samplers.fast_step.COMPILE_ON_CPU = True
    for name in args.dtype:
        if name not in DTYPES:
            parser.error(f"--dtype {name}: choose from {', '.join(DTYPES)}")
    print(f"# one sampler step, logits B x {args.seq_len} x {args.vocab}, step 0 of {TOTAL_STEPS} (all masked), "
          f"CFG w = {GUIDANCE}; device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("# ours/ref = median ours / median AmusedScheduler.step (+ the pipeline's CFG line); extra mem = peak "
          "above the start, in logits tensors of that shape and dtype; f32 copies = the same in float32 "
          "logits-shaped tensors; '!' = more than 2 of those")
    print(HEADER)
    rows = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
