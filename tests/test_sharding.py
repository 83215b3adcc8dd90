"""Sharded runs (issue 7): shard detection, cost-balanced assignment, and shards + merge == one process.

The end-to-end tests run two ``--shard`` processes *at the same time* on a fresh run directory (as a
SLURM array does), merge them, and compare with a single-process run: the same units, image bytes,
scores and set metrics. A shard killed with SIGKILL is then re-run alone: it generates only what it
had not journalled, and the other shard's files are not touched.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.distributed import rank_device
from bench.plan import Unit
from bench.prompts import Prompt
from bench.sharding import Shard, assign, detect_shard, parse_shard, shard_units
from mgt_common.errors import UserError
from samplers.variant import build_variant

from helpers import KILLER, assert_same_run, image_bytes, write_tiny_config

REPO = Path(__file__).resolve().parent.parent



LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                      "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")


# -- detection -------------------------------------------------------------------------------------

def test_parse_shard_accepts_index_over_count_and_rejects_the_rest():
    assert (parse_shard("1/4").index, parse_shard("1/4").count) == (1, 4)
    assert parse_shard(" 0 / 1 ").label == ""  # one shard of one is an ordinary run
    assert parse_shard("3/4").label == "3of4"
    for bad in ("4/4", "1/0", "-1/2", "a/b", "1", "1/2/3", ""):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_detect_shard_reads_each_launcher():
    assert detect_shard(None, {}) == Shard()
    torchrun = detect_shard(None, {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (torchrun.index, torchrun.count, torchrun.local_rank, torchrun.launched_together) == (3, 4, 1, True)
    # accelerate launch with one process sets WORLD_SIZE=1: an ordinary run
    assert not detect_shard(None, {"RANK": "0", "WORLD_SIZE": "1"}).is_sharded
    # SLURM arrays may number their tasks from 1 (--array=1-8) or in steps (--array=0-14:2)
    slurm = detect_shard(None, {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8",
                                "SLURM_ARRAY_TASK_MIN": "1"})
    assert (slurm.index, slurm.count, slurm.source, slurm.launched_together) == (4, 8, "slurm-array", False)
    stepped = detect_shard(None, {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4",
                                  "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"})
    assert (stepped.index, stepped.count) == (3, 4)
    # --shard wins over a SLURM array, and is refused under a multi-rank launcher (ranks would duplicate work)
    assert detect_shard("1/2", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8"}).count == 2
    with pytest.raises(UserError, match="drop --shard"):
        detect_shard("1/2", {"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="job array"):
        detect_shard(None, {"RANK": "0", "WORLD_SIZE": "2", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"})
    with pytest.raises(UserError, match="RANK"):
        detect_shard(None, {"WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="inconsistent"):
        detect_shard(None, {"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="SLURM_ARRAY_TASK_ID"):
        detect_shard(None, {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})


def test_each_rank_generates_on_its_own_gpu():
    rank1 = Shard(1, 2, "torchrun", local_rank=1)
    if not torch.cuda.is_available() or torch.cuda.device_count() >= 2:  # with one GPU, LOCAL_RANK 1 is refused
        assert rank_device("cuda", rank1) == "cuda:1"
    assert rank_device("cpu", rank1) == "cpu"
    assert rank_device("cuda:0", rank1) == "cuda:0"  # an explicit choice is kept
    assert rank_device("cuda", Shard()) == "cuda"


# -- assignment ------------------------------------------------------------------------------------

def _units(costs: dict[str, int], prompts: int, seeds: int) -> list[Unit]:
    units = []
    for variant in costs:
        for p in range(prompts):
            for s in range(seeds):
                key = hashlib.sha256(f"{variant}/{p}/{s}".encode()).hexdigest()[:32]
                units.append(Unit(key=key, variant=variant, prompt=Prompt(id=str(p), text=f"p{p}"), seed=s,
                                  order=p * seeds + s))
    return units


@pytest.mark.parametrize("count", [2, 3, 8])
def test_assignment_is_a_deterministic_balanced_partition(count):
    costs = {"vanilla": 16, "cfg-linear": 16, "zigzag": 46, "zigzag+noise-reg": 46}
    units = _units(costs, prompts=10, seeds=3)
    cost = lambda unit: costs[unit.variant]  # noqa: E731
    shares = assign(units, count, cost)

    keys = [(u.variant, u.key) for share in shares for u in share]
    assert sorted(keys) == sorted((u.variant, u.key) for u in units) and len(set(keys)) == len(units)
    loads = [sum(cost(u) for u in share) for share in shares]
    assert max(loads) - min(loads) <= max(costs.values())  # LPT: within one unit of each other
    for variant in ("zigzag", "zigzag+noise-reg"):  # the expensive variant is spread, not piled on one rank
        per_shard = [sum(u.variant == variant for u in share) for share in shares]
        assert max(per_shard) - min(per_shard) <= 1, per_shard
    for share in shares:  # plan order inside a share, so one variant's units batch together
        assert [u.order for u in share if u.variant == "vanilla"] == sorted(u.order for u in share
                                                                            if u.variant == "vanilla")
        variants_in_order = [u.variant for u in share]
        assert variants_in_order == sorted(variants_in_order, key=list(costs).index)

    shuffled = units[:]
    random.Random(0).shuffle(shuffled)
    again = assign(shuffled, count, cost)
    assert [sorted(u.key + u.variant for u in s) for s in again] == [sorted(u.key + u.variant for u in s) for s in shares]


def test_shard_units_costs_come_from_the_variants_declared_forward_passes():
    variants = {name: build_variant(name) for name in ("vanilla", "zigzag")}
    assert variants["zigzag"].forward_passes(16) > variants["vanilla"].forward_passes(16)
    units = _units({"vanilla": 0, "zigzag": 0}, prompts=6, seeds=2)
    shares = [shard_units(units, Shard(i, 2, "--shard"), variants, 16) for i in range(2)]
    loads = [sum(variants[u.variant].forward_passes(16) for u in share) for share in shares]
    assert abs(loads[0] - loads[1]) <= variants["zigzag"].forward_passes(16)
    assert shard_units(units, Shard(), variants, 16) == units


# -- end to end ------------------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **extra}


def _shard(config: Path, out: Path, shard: str, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "run_bench.py"), "--config", str(config), "--out", str(out),
                             "--shard", shard, *extra], cwd=REPO, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_same_sixteen(run_dir: Path, reference: Path) -> None:
    assert_same_run(run_dir, reference)
    assert len(image_bytes(reference)) == 16


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process run of the tiny config."""
    root = tmp_path_factory.mktemp("reference")
    config = write_tiny_config(root / "config.toml", limit=4, steps=5, batch_size=2)
    assert main(["--config", str(config), "--out", str(root / "run")]) == 0
    return config, root / "run"


def test_two_concurrent_shards_then_merge_equal_one_process(reference, tmp_path, capsys):
    config, single = reference
    out = tmp_path / "sharded"
    procs = [_shard(config, out, f"{i}/2") for i in range(2)]  # both at once, on a directory that does not exist
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
        assert "8 images generated" in stdout and "--merge" in stdout
    assert not (out / "samples.csv").exists()  # shards never score or report
    assert sorted(p.name for p in (out / "journal").iterdir()) == ["generated.0of2.jsonl", "generated.1of2.jsonl"]

    assert main(["--merge", str(out)]) == 0
    assert_same_sixteen(out, single)
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["shards"]["count"] == 2
    assert sorted(manifest["shards"]["records"]) == ["0of2", "1of2"]
    assert sum(r["generated"] for r in manifest["shards"]["records"].values()) == 16
    assert manifest["throughput"]["images"] == 16 and manifest["throughput"]["images_per_second"] > 0


def test_a_killed_shard_is_rerun_alone_and_nothing_else_is_redone(reference, tmp_path, capsys):
    config, single = reference
    out = tmp_path / "sharded"
    plugin = tmp_path / "killer.py"
    plugin.write_text(KILLER)
    survivor = _shard(config, out, "0/2")
    victim = _shard(config, out, "1/2", "--plugin", str(plugin), KILL_AT_BATCH="3")
    assert survivor.communicate(timeout=240) and survivor.returncode == 0
    victim.communicate(timeout=240)
    assert victim.returncode == -signal.SIGKILL
    assert len((out / "journal" / "generated.1of2.jsonl").read_text().splitlines()) == 4  # 2 batches of 2

    # merging now names the shard to re-run, and writes nothing
    assert main(["--merge", str(out)]) == 2
    assert "shard 1/2: 4 images" in capsys.readouterr().err
    assert not (out / "samples.csv").exists()

    done_by_survivor = (out / "journal" / "generated.0of2.jsonl").read_bytes()
    survivor_images = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}
    rerun = _shard(config, out, "1/2")
    stdout, stderr = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, stderr
    assert "4 images generated, 4 reused" in stdout  # only what the kill cut short
    assert (out / "journal" / "generated.0of2.jsonl").read_bytes() == done_by_survivor
    changed = [p for p, mtime in survivor_images.items() if p.stat().st_mtime_ns != mtime]
    assert len(changed) <= 2  # at most the killed batch's PNGs (written, never journalled) are rewritten

    assert main(["--merge", str(out)]) == 0
    assert_same_sixteen(out, single)


def test_fresh_is_refused_for_separate_shards(reference, tmp_path, capsys):
    config, _ = reference
    assert main(["--config", str(config), "--out", str(tmp_path / "x"), "--shard", "0/2", "--fresh"]) == 2
    assert "--fresh" in capsys.readouterr().err
    assert main(["--merge", str(tmp_path / "nothing")]) == 2
