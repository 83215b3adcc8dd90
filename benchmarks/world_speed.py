#!/usr/bin/env python
"""Generation time of the default run (docs/world.md, "Generation time").

Generates every unit of a config (default: the shipped ``default``) in memory, variant by variant, in
the config's batch size, exactly as the runner's generate stage does (same engine, same seeds), without
writing images or scoring. Prints per variant the images, forward passes, wall seconds and the
process's CPU seconds. On a shared machine the wall time measures the neighbours too; the CPU seconds
divided by the thread count is the better estimate of the idle-machine wall time.

    python benchmarks/world_speed.py                      # the default run, torch's thread count
    python benchmarks/world_speed.py --threads 1 --limit 8
    python benchmarks/world_speed.py --threads 1 --samplers vanilla --weights OLD.safetensors   # another network
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--model", default=None, help="override the config's model name")
    parser.add_argument("--weights", default=None, help="the model's weights file (synthetic-trained: default shipped)")
    parser.add_argument("--samplers", default=None, help="comma-separated variants to time (default: the config's)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import tempfile

    from bench.config import load_config
    from bench.runner import Benchmark
    from samplers.engine import SamplerEngine

    model_table = {"name": args.model} if args.model else dict(load_config(args.config).values["model"])
    if args.weights:
        model_table["weights"] = args.weights
    overrides = {"limit": args.limit, "model": model_table,
                 "samplers": args.samplers.split(",") if args.samplers else None}
    config = load_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as scratch:  # the plan needs a run directory; nothing is written
        bench = Benchmark(config, out=Path(scratch) / "run")
        units = bench.plan()
    model, grid = bench.model, bench.grid
    name = config.model_name
    engine = SamplerEngine(model)
    rows, total_wall, total_cpu = [], 0.0, 0.0
    for variant_name, variant in bench.variants.items():
        mine = [u for u in units if u.variant == variant_name]
        wall, cpu, passes = time.perf_counter(), time.process_time(), 0
        for start in range(0, len(mine), config.batch_size):
            chunk = mine[start:start + config.batch_size]
            conditioning = model.encode([u.prompt.text for u in chunk], bench.negative_prompt)
            generation = engine.generate(variant, conditioning, [u.seed for u in chunk], grid, config.steps,
                                         config.guidance)
            model.decode(generation.tokens, grid)
            passes += int(generation.forward_passes.sum())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        rows.append({"variant": variant_name, "images": len(mine), "forward_passes": passes,
                     "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"model": name, "threads": torch.get_num_threads(), "wall_s": round(total_wall, 1),
                      "cpu_s": round(total_cpu, 1),
                      "idle_estimate_s": round(total_cpu / torch.get_num_threads(), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
