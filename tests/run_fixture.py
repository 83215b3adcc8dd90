"""A synthetic run directory with the harness's contract (samples, scores, set metrics, manifest, PNGs).

Known effects let tests check direction and size: ``strong`` beats the baseline on every per-image
metric, ``weak`` barely, ``worse`` loses; ``toy_nll`` is lower-is-better with a tie tolerance, so a
sign mistake or a tie mistake shows up as a wrong win rate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CATEGORIES = ["anime", "concept-art", "paintings", "photo"]
EFFECTS = {"vanilla": 0.0, "strong": 1.5, "weak": 0.05, "worse": -0.5}
PASSES = {"vanilla": 16, "strong": 32, "weak": 16, "worse": 24}


def make_run_dir(root: Path, n_prompts: int = 16, seeds: tuple[int, ...] = (0, 1), image_size: int = 24,
                 variants: dict[str, float] | None = None, rng_seed: int = 0, with_trajectory: bool = True) -> Path:
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    variants = variants or EFFECTS
    rng = np.random.default_rng(rng_seed)
    prompt_effect = rng.normal(size=n_prompts)
    samples, scores = [], []
    steps = 16
    for v, eff in variants.items():
        for p in range(n_prompts):
            for s in seeds:
                key = f"{v}-{p:03d}-{s}"
                path = f"images/{key}.png"
                colour = np.array([(p * 37) % 255, (s * 91 + 40) % 255, int(120 + 100 * np.tanh(eff))], np.uint8)
                img = np.tile(colour, (image_size, image_size, 1))
                img[: image_size // 3] = 255 - colour  # a stripe so that no two images are flat copies
                Image.fromarray(img).save(root / path)
                masked = [int(256 * np.cos(np.pi * (i + 1) / (2 * steps))) for i in range(steps)]
                samples.append({"unit_key": key, "variant": v, "prompt_id": f"{p:03d}",
                                "prompt": f"prompt number {p}, a {CATEGORIES[p % 4]} scene",
                                "category": CATEGORIES[p % 4], "seed": s, "steps": steps,
                                "forward_passes": PASSES.get(v, 16), "seconds": 0.1 * PASSES.get(v, 16) + 0.01 * rng.random(),
                                "image_path": path, "trajectory": json.dumps(masked)})
                noise = rng.normal(size=3)
                hps = 0.25 + 0.01 * (prompt_effect[p] + eff + noise[0])
                clip = 30 + prompt_effect[p] + eff + noise[1]
                nll = round(5.0 - 0.5 * eff + 0.5 * noise[2], 1)  # rounded: many exact ties
                for metric, value in (("hpsv2", hps), ("clip_score", clip), ("toy_nll", nll)):
                    scores.append({"unit_key": key, "variant": v, "prompt_id": f"{p:03d}", "seed": s,
                                   "metric": metric, "value": value})
    sdf = pd.DataFrame(samples)
    if not with_trajectory:
        sdf = sdf.drop(columns="trajectory")
    sdf.to_csv(root / "samples.csv", index=False)
    pd.DataFrame(scores).to_csv(root / "scores.csv", index=False)
    sets = []
    for v, eff in variants.items():
        sets.append({"variant": v, "category": "", "metric": "fid", "value": 20 - 5 * eff, "std": "", "n": n_prompts * len(seeds)})
        sets.append({"variant": v, "category": "", "metric": "kid", "value": 0.01 - 0.002 * eff, "std": 0.001, "n": n_prompts * len(seeds)})
        for c in CATEGORIES:
            sets.append({"variant": v, "category": c, "metric": "fid", "value": 25 - 5 * eff, "std": "", "n": n_prompts * len(seeds) // 4})
    pd.DataFrame(sets).to_csv(root / "set_metrics.csv", index=False)
    manifest = {
        "status": "complete",
        "config": {"model": "synthetic", "steps": steps, "report": {"n_boot": 200, "bootstrap_seed": 7}},
        "config_hash": "abc123def456",
        "baseline": "vanilla",
        "variants": {v: {"components": {"guidance": "constant"}, "forward_passes_per_image": PASSES.get(v, 16),
                         "description": f"synthetic variant {v}"} for v in variants},
        "metrics": {
            "hpsv2": {"higher_is_better": True, "version": "2.1", "tie_tolerance": None, "display_name": "HPS v2.1"},
            "clip_score": {"higher_is_better": True, "version": "1", "tie_tolerance": 0.0},
            "toy_nll": {"higher_is_better": False, "version": "1", "tie_tolerance": 0.05},
            "fid": {"higher_is_better": False, "version": "1", "tie_tolerance": None},
            "kid": {"higher_is_better": False, "version": "1", "tie_tolerance": None},
        },
        "model": {"id": "synthetic-world", "revision": "0", "dtype": "float32"},
        "versions": {"torch": "2.x", "mgt-bench": "0.1.0"},
        "git_commit": "0123456789abcdef",
        "device": "cpu",
        "seeds": list(seeds),
        "timings": {"generate": 12.5, "score": 3.0},
        "created": "2026-11-22T04:00:00+00:00",
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
