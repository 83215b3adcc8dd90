"""HPS scorer throughput: our batched scorer vs one image per call with the checkpoint reloaded each time.

What is compared, side by side in one process, on the same images and the same checkpoint file:

- ``batched (bs=B)``: `metrics.hpsv2.HPSv2` loaded once, scoring all images in batches of B.
- ``reload per image``: what ``hpsv2.score(img, prompt)`` does per call (github.com/tgxs002/HPSv2,
  ``hpsv2/img_score.py``): the model object is kept, but every call ``torch.load``s the 2 GB checkpoint,
  loads it into the model, builds the tokenizer and scores one image.

Weights are random (ViT-H-14 architecture, saved in the HPS checkpoint format, fp16 as the published
"compressed" files), so no download is needed; speed does not depend on the weights' values.

    python benchmarks/scorer_speed.py                       # ViT-H-14, 32 images, batch 1/8/32
    python benchmarks/scorer_speed.py --images 8 --model TinyCLIP  (a registered small config, quick check)

Input images are 1024 x 1024 (Meissonic's output), so the timings include the preprocessing resize.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.base import ScoreBatch  # noqa: E402
from metrics.hpsv2 import HPSv2, hps_preprocess  # noqa: E402


def make_checkpoint(model_name: str, folder: Path) -> Path:
    import open_clip

    path = folder / f"random-{model_name}-hps.pt"
    if not path.exists():
        model = open_clip.create_model(model_name, pretrained=None)
        torch.save({"state_dict": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}}, path)
        del model
    return path


def reload_per_image(model_name: str, checkpoint: Path, images: torch.Tensor, prompts: list[str]) -> list[float]:
    """One image per call, checkpoint re-read every call, as ``hpsv2.score`` does."""
    import open_clip

    model = open_clip.create_model(model_name, pretrained=None)  # hpsv2 builds its model once per process
    scores = []
    for image, prompt in zip(images, prompts):
        state = torch.load(checkpoint, map_location="cpu")
        model.load_state_dict(state["state_dict"])
        tokenizer = open_clip.get_tokenizer(model_name)
        model.eval()
        with torch.no_grad():
            i = model.encode_image(hps_preprocess(image[None]), normalize=True)
            t = model.encode_text(tokenizer([prompt]), normalize=True)
            scores.append(float(100 * (i * t).sum()))
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-H-14", help="OpenCLIP config (ViT-H-14 is HPSv2's)")
    parser.add_argument("--model-config", help="a JSON model config to register first (open_clip.add_model_config)")
    parser.add_argument("--images", type=int, default=32, help="images per batched measurement")
    parser.add_argument("--reload-images", type=int, default=4, help="images for the reload-per-image baseline")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--size", type=int, default=1024, help="input image side")
    parser.add_argument("--checkpoint", help="an HPS-format checkpoint (default: random weights written to --workdir)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mgt-bench-scorer-speed"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import open_clip

    if args.model_config:
        open_clip.add_model_config(args.model_config)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MGT_BENCH_CACHE", str(workdir / "cache"))
    t0 = time.perf_counter()
    checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(args.model, workdir)
    print(f"checkpoint {checkpoint} ({checkpoint.stat().st_size / 1e9:.2f} GB), prepared in {time.perf_counter() - t0:.1f} s")
    torch.manual_seed(0)
    n = max(args.images, args.reload_images)
    images = torch.rand(n, 3, args.size, args.size)
    prompts = [f"a picture of thing number {i}, highly detailed" for i in range(n)]
    print(f"model {args.model}, device {args.device}, torch threads {torch.get_num_threads()}, images {args.size}x{args.size}")

    results = {"model": args.model, "device": args.device, "threads": torch.get_num_threads(), "rows": []}
    reference_scores = None
    for batch_size in args.batch_sizes:
        scorer = HPSv2(checkpoint=str(checkpoint), model=args.model, batch_size=batch_size, device=args.device)
        t0 = time.perf_counter()
        scorer.load()
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = scorer.score(ScoreBatch(images=images[:args.images], prompts=prompts[:args.images]))
        score_s = time.perf_counter() - t0
        if reference_scores is None:
            reference_scores = scores
        drift = float((scores - reference_scores).abs().max())
        row = {"method": f"batched bs={batch_size}", "images": args.images, "load_s": load_s, "score_s": score_s,
               "images_per_s": args.images / score_s, "images_per_s_incl_load": args.images / (score_s + load_s),
               "max_abs_diff_vs_first": drift}
        results["rows"].append(row)
        print(f"{row['method']:>18}: load {load_s:6.1f} s, {args.images} images in {score_s:7.1f} s -> "
              f"{row['images_per_s']:.3f} img/s ({row['images_per_s_incl_load']:.3f} incl. load); max |Δscore| vs bs={args.batch_sizes[0]}: {drift:.2e}")
        scorer.unload()
        del scorer

    t0 = time.perf_counter()
    baseline = reload_per_image(args.model, checkpoint, images[:args.reload_images], prompts[:args.reload_images])
    reload_s = time.perf_counter() - t0
    agreement = float((torch.tensor(baseline, dtype=torch.float64) - reference_scores[:args.reload_images]).abs().max())
    row = {"method": "reload per image", "images": args.reload_images, "score_s": reload_s,
           "images_per_s": args.reload_images / reload_s, "max_abs_diff_vs_batched": agreement}
    results["rows"].append(row)
    print(f"{'reload per image':>18}: {args.reload_images} images in {reload_s:7.1f} s -> {row['images_per_s']:.3f} img/s; "
          f"max |Δscore| vs batched: {agreement:.2e}")
    best = max(r["images_per_s"] for r in results["rows"][:-1])
    results["speedup_best_batched_vs_reload"] = best / row["images_per_s"]
    print(f"speed-up, best batched vs reload-per-image: {results['speedup_best_batched_vs_reload']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
