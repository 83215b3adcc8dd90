"""A real ``torchrun --nproc_per_node 2`` run equals the single-process run (issue 7).

Two ranks on the CPU (gloo) share one run directory: each generates its cost-balanced share under its
own journal, they meet at a barrier, and rank 0 alone merges, scores and reports. The tables (minus
timings), the image bytes and the scores must equal those of one process running everything.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from bench.cli import main
from helpers import REPO, assert_same_run, write_tiny_config
from test_sharding import _env


def _torchrun_available() -> str | None:
    if not torch.distributed.is_available():
        return "this PyTorch build has no torch.distributed (torchrun cannot start)"
    try:
        importlib.import_module("torch.distributed.run")  # what the `torchrun` script runs
    except ImportError as exc:
        return f"torch.distributed.run cannot be imported ({exc})"
    return None


@pytest.mark.skipif(_torchrun_available() is not None, reason=str(_torchrun_available()))
def test_torchrun_two_ranks_equal_one_process(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "config.toml", limit=4, steps=5, batch_size=2)
    single = tmp_path / "single"
    assert main(["--config", str(config), "--out", str(single)]) == 0

    out = tmp_path / "torchrun"
    # --standalone: a private rendezvous on a free port, so concurrent test runs never meet each other.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "run_bench.py"), "--config", str(config), "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "shard 0/2 (torchrun)" in done.stdout and "shard 1/2 (torchrun)" in done.stdout
    assert done.stdout.count("report (html)") == 1  # rank 0 alone reports

    assert_same_run(out, single)
    assert sorted(p.name for p in (out / "journal").glob("generated*")) == ["generated.0of2.jsonl",
                                                                            "generated.1of2.jsonl"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    records = manifest["shards"]["records"]
    assert sorted(records) == ["0of2", "1of2"] and {r["source"] for r in records.values()} == {"torchrun"}
    assert sum(r["generated"] for r in records.values()) == 16
    # the launch is resumable as it is: the same command again generates nothing
    again = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("0 images generated, 8 reused") == 2
    assert_same_run(out, single)
    assert pd.read_csv(out / "scores.csv").equals(pd.read_csv(single / "scores.csv"))
