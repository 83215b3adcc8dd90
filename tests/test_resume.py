"""Resumption: a run killed with SIGKILL mid-generation resumes to exactly the tables and images of an
uninterrupted run; a finished run recomputes nothing; its report re-renders without any model."""
from __future__ import annotations

import signal

from bench.cli import main
from helpers import KILLER, assert_same_run, run_cli, write_tiny_config



def test_kill_9_then_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    config = write_tiny_config(tmp_path / "c.toml", limit=4, steps=5, batch_size=2)
    plugin = tmp_path / "killer.py"
    plugin.write_text(KILLER)

    reference = tmp_path / "reference"
    assert main(["--config", str(config), "--out", str(reference)]) == 0

    # only the killed run needs its own process
    resumed = tmp_path / "resumed"
    monkeypatch.setenv("KILL_AT_BATCH", "3")
    killed = run_cli("--config", str(config), "--out", str(resumed), "--plugin", str(plugin))
    monkeypatch.delenv("KILL_AT_BATCH")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    journal = (resumed / "journal" / "generated.jsonl").read_text().splitlines()
    assert len(journal) == 4  # two batches of two units were journalled before the kill
    assert len(list((resumed / "images").rglob("*.png"))) == 6  # the third batch's PNGs: written, not counted
    assert not (resumed / "samples.csv").exists()

    capsys.readouterr()
    assert main(["--config", str(config), "--out", str(resumed)]) == 0
    assert "12 images generated, 4 reused" in capsys.readouterr().out

    assert_same_run(resumed, reference)
    assert not list(resumed.rglob("*.tmp"))

    # a finished run recomputes nothing, and its report re-renders from the tables alone
    assert main(["--config", str(config), "--out", str(resumed)]) == 0
    assert "0 images generated, 16 reused" in capsys.readouterr().out
    (resumed / "report.html").unlink()
    assert main(["--report-only", str(resumed)]) == 0
    assert (resumed / "report.html").exists()
