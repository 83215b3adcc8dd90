"""Test helpers: tiny configs of the synthetic world, and running the CLI as a user does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    from bench.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The one "mgt-bench: error:" line a foreseeable failure prints (and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("mgt-bench: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]

TINY_CONFIG = """
name = "tiny"
limit = {limit}
seeds = [0, 1]
steps = {steps}
guidance = 3.0
samplers = {samplers}
metrics = ["world-loglik", "world-alignment", {{ name = "fid", reference_per_prompt = 2 }}]
batch_size = {batch_size}
bootstrap = 200

[model]
name = "synthetic"
grid = 8
text_strength = 0.25

[prompts]
source = "synthetic-world"
n = 12
"""


def write_tiny_config(path: Path, *, limit: int = 4, steps: int = 6, batch_size: int = 4,
                      samplers: tuple[str, ...] = ("vanilla", "cfg-linear"), extra: str = "") -> Path:
    text = TINY_CONFIG.format(limit=limit, steps=steps, batch_size=batch_size,
                              samplers="[" + ", ".join(f'"{s}"' for s in samplers) + "]")
    # top-level keys must precede the first table
    head, tables = text.split("[model]", 1)
    path.write_text(head + extra + "\n[model]" + tables)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python run_bench.py ARGS` in a subprocess (the user's view: exit code, stdout, stderr)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "run_bench.py"), *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)




# Test-only plugin: SIGKILLs the process when it is about to journal its N-th batch, i.e. after that
# batch's PNGs were written but before they count as done: the worst moment for a kill.
KILLER = '''
import os, signal
from bench.rundir.store import RunDirectory

_append = RunDirectory.append
_calls = {"n": 0}

def append(self, name, records):
    if name == "generated" and os.environ.get("KILL_AT_BATCH"):
        _calls["n"] += 1
        if _calls["n"] == int(os.environ["KILL_AT_BATCH"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return _append(self, name, records)

RunDirectory.append = append
'''


def tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    # measurements, not results: time, the batch's memory, its size and round differ between any two runs
    samples = pd.read_csv(run_dir / "samples.csv").drop(
        columns=["seconds", "memory_mib", "peak_mib", "resident_mib", "batch_images", "time_slot"], errors="ignore")
    return {"samples": samples, "scores": pd.read_csv(run_dir / "scores.csv"),
            "set_metrics": pd.read_csv(run_dir / "set_metrics.csv")}


def image_bytes(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "images").rglob("*.png"))}


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Same tables (timings aside) and the same image bytes."""
    expected, got = tables(reference), tables(run_dir)
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, obj=name)
    assert image_bytes(run_dir) == image_bytes(reference)
