#!/usr/bin/env python
"""The same benchmark run with 1, 2, … processes on this machine: wall time, throughput, and equality (docs/scaling.md).

For each process count n it runs ``run_bench.py`` afresh into its own run directory — one process for
n = 1, ``torchrun --standalone --nproc_per_node n`` otherwise — and reports the whole command's wall
time, the generation time (for a sharded run: first shard start to last shard end), images per second,
the speed-up over n = 1, and whether the tables (timings aside), the image bytes and the scores equal
the single-process run's.

    python benchmarks/scaling.py                              # the shipped default run, 1 and 2 processes
    python benchmarks/scaling.py --processes 1,2,4 --out /scratch/scaling -- --limit 16 --steps 8

Arguments after ``--`` go to every ``run_bench.py`` call. torchrun gives each rank one CPU thread
(OMP_NUM_THREADS=1) unless you set it; the single process uses torch's default. ``--threads K`` sets
OMP_NUM_THREADS=K for every process, so that n processes are compared with one at equal threads per
process (on a shared, oversubscribed machine torch's multi-threaded small ops can be far slower
than one thread).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def command(processes: int, out: Path, extra: list[str]) -> list[str]:
    script = [str(REPO / "run_bench.py"), "--out", str(out), "--fresh", *extra]
    if processes == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *script]


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Hashes of what must not depend on the process count: tables without timings, and every image."""
    samples = pd.read_csv(run_dir / "samples.csv").drop(columns=["seconds"])
    parts = {"samples": samples.to_csv(index=False),
             "scores": (run_dir / "scores.csv").read_text(),
             "set_metrics": (run_dir / "set_metrics.csv").read_text()}
    images = hashlib.sha256()
    for path in sorted((run_dir / "images").rglob("*.png")):
        images.update(path.name.encode() + path.read_bytes())
    return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in parts.items()} | {
        "images": images.hexdigest()}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--out", default="results/scaling", help="parent folder of the run directories")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every process (default: launcher's)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(own)
    env = dict(os.environ) | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})
    counts = [int(n) for n in args.processes.split(",")]
    rows, reference, first_sets = [], None, None
    for n in counts:
        out = Path(args.out) / f"np{n}"
        started = time.perf_counter()
        done = subprocess.run(command(n, out, extra), cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{n} process(es): run_bench.py failed with exit code {done.returncode}")
        manifest = json.loads((out / "manifest.json").read_text())
        prints = fingerprint(out)
        reference = reference or prints
        sets = pd.read_csv(out / "set_metrics.csv")
        first_sets = first_sets if n != counts[0] else sets
        same_rows = len(sets) == len(first_sets) and (sets.drop(columns="value") .astype(str)
                                                       .equals(first_sets.drop(columns="value").astype(str)))
        drift = float(((sets["value"] - first_sets["value"]).abs() / first_sets["value"].abs().clip(lower=1e-12))
                      .max()) if same_rows else float("inf")
        generate = manifest["timings"]["generate_seconds"]
        images = manifest["throughput"]["images"]
        rows.append({"processes": n, "wall_s": round(wall, 1), "generate_s": generate,
                     "score_s": manifest["timings"].get("score_seconds"), "images": images,
                     "images_per_s": round(images / generate, 3) if generate else None,
                     "identical_to_1": prints == reference,
                     # per-image outputs must match exactly; set metrics (FID) round with the scorer's threads
                     "images_samples_scores_identical": all(prints[k] == reference[k]
                                                            for k in ("samples", "scores", "images")),
                     "set_metrics_max_rel_diff": drift})
    base = rows[0]["generate_s"]
    print(f"{'procs':>5} {'wall s':>8} {'generate s':>11} {'score s':>8} {'images/s':>9} {'speed-up':>9}  identical"
          "  (images+samples+scores; set-metric max rel. diff)")
    for row in rows:
        row["speedup_generate"] = round(base / row["generate_s"], 2) if row["generate_s"] else None
        print(f"{row['processes']:>5} {row['wall_s']:>8} {row['generate_s']:>11} {row['score_s']:>8} "
              f"{row['images_per_s']:>9} {row['speedup_generate']:>9}  {row['identical_to_1']}"
              f"  ({row['images_samples_scores_identical']}; {row['set_metrics_max_rel_diff']:.1e})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(row["images_samples_scores_identical"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
