"""The fault matrix, trust boundaries: a finished run means finished, a key means its content, a shared
run directory stays safe (docs/rundir.md, "What is verified on read", "What you may edit").

Each row is one way a user, a scheduler or another member of a shared directory can break a run, and
what the suite must do about it: exit 2 with one clear line, or a repair with a warning, never a
traceback and never a silently used value. Runs are the tiny in-process runs of tests/test_fault_matrix.py
(its fixtures: a reference run, a stubbed report); a kill or a signal runs in a forked copy of this process.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.rundir.lock import RunLock
from bench.rundir.store import RunDirectory
from bench.runner import render as REAL_RENDER
from helpers import assert_same_run, tables
from test_fault_matrix import TINY, cli, finished_copy, fork_and_kill, one_error_line, run, stub_report, world  # noqa: F401


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_journal_line(path: Path, index: int, change) -> None:
    """Apply `change` to the record on line `index` of a journal, keeping its (now stale) checksum."""
    lines = path.read_text().splitlines()
    record = json.loads(lines[index])
    change(record)
    lines[index] = json.dumps(record, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")


# -- 1: an unfinished run is not reported as finished ---------------------------------------------------

def test_a_run_killed_during_set_metrics_is_not_finished(tmp_path, capsys, world):
    config, reference = world
    out = tmp_path / "run"
    fork_and_kill(config, out, "set_metrics")  # samples.csv and scores.csv are written, no FID yet
    assert (out / "samples.csv").exists() and (out / "scores.csv").exists()
    for args in (("--report-only", out), ("--compare", out, reference, "--out", tmp_path / "cmp")):
        code, _, err = cli(capsys, *args)
        line = one_error_line(err)
        assert code == 2 and "not finished" in line and "re-run the same command to resume" in line, args
    assert not (out / "report.md").exists() and not (out / "tables").exists() and not (tmp_path / "cmp").exists()
    # a configured set metric missing from set_metrics.csv (a manifest of a run made before table checksums)
    done = finished_copy(reference, tmp_path / "done")
    manifest = json.loads((done / "manifest.json").read_text())
    manifest.pop("tables", None)
    (done / "manifest.json").write_text(json.dumps(manifest))
    sets = (done / "set_metrics.csv").read_text().splitlines()
    (done / "set_metrics.csv").write_text("\n".join(sets[:1]) + "\n")
    code, _, err = cli(capsys, "--report-only", done)
    assert code == 2 and "not finished (no fid in set_metrics.csv)" in one_error_line(err)


# -- 2: set metrics are keyed by the reference's content and the feature network's weights ---------------

def test_a_replaced_fid_reference_folder_is_not_reused(tmp_path, capsys, world, monkeypatch):
    config, reference = world
    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "user-cache"))
    folder = tmp_path / "reference-images"
    folder.mkdir()
    pngs = sorted((reference / "images").rglob("*.png"))
    for i, png in enumerate(pngs):
        shutil.copy(png, folder / f"{i}.png")
    with_folder = tmp_path / "folder.toml"
    with_folder.write_text(TINY.replace('{ name = "fid", reference_per_prompt = 2 }',
                                        f'{{ name = "fid", reference = "{folder}", feature = "world" }}'))
    out = tmp_path / "run"
    assert run(with_folder, out) == 0
    first = tables(out)["set_metrics"]
    size = Image.open(pngs[0]).size
    rng = np.random.default_rng(0)
    for i in range(len(pngs)):  # the same file names, other images
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert run(with_folder, out) == 0
    again = tables(out)["set_metrics"]
    fresh = tmp_path / "fresh"
    assert run(with_folder, fresh) == 0
    expected = tables(fresh)["set_metrics"]
    fid = lambda t: t.loc[(t["metric"] == "fid") & (t["category"].fillna("") == ""), ["value", "value_lo", "value_hi"]]  # noqa: E731
    assert not np.allclose(fid(first).to_numpy(float), fid(expected).to_numpy(float))
    np.testing.assert_array_equal(fid(again).to_numpy(float), fid(expected).to_numpy(float))


def test_replaced_inception_weights_change_the_set_metric_key(tmp_path, monkeypatch):
    from metrics.fid import FID

    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "user-cache"))
    weights = tmp_path / "inception.pth"
    rng = np.random.default_rng(1)
    weights.write_bytes(rng.bytes(1 << 16))
    before = FID(feature="inception", inception_weights=str(weights)).describe()
    times = weights.stat()
    weights.write_bytes(rng.bytes(1 << 16))  # `cp -p`: the same path, size and mtime, other weights
    os.utime(weights, ns=(times.st_atime_ns, times.st_mtime_ns))
    after = FID(feature="inception", inception_weights=str(weights)).describe()
    assert before != after and before["params"] == after["params"]


# -- 4, 14: links planted in a shared run directory; a deleted lock file ----------------------------------

def test_planted_links_are_replaced_never_written_through(tmp_path, capsys, world, monkeypatch):
    import bench.runner

    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    victims = tmp_path / "another-users-files"
    victims.mkdir()
    planted = ["report.md", "report.html", "tables/win_rates.csv", "plots/distributions.png", ".mgt-bench-lock"]
    for name in planted:
        victim = victims / name.replace("/", "_")
        victim.write_text(f"{name}: not yours\n")
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(victim)
    monkeypatch.setattr(bench.runner, "render", REAL_RENDER)
    assert run(config, out) == 0
    assert main(["--report-only", str(out)]) == 0
    for name in planted:
        assert (victims / name.replace("/", "_")).read_text() == f"{name}: not yours\n", name
    assert all(not (out / name).is_symlink() for name in planted if name != ".mgt-bench-lock")
    assert (out / "report.md").read_text().startswith("# mgt-bench report")
    # a journal and the score cache are never opened through a link: exit 2, the target untouched
    for name in ("journal/generated.jsonl", "cache/scores.sqlite"):
        target = victims / name.replace("/", "_")
        target.write_bytes((out / name).read_bytes())
        before = target.read_bytes()
        (out / name).unlink()
        (out / name).symlink_to(target)
        next((out / "images").rglob("*.png")).unlink()  # work to do: the run must journal and score a unit
        code, _, err = cli(capsys, "--config", config, "--out", out)
        assert code == 2 and "is a symbolic link" in one_error_line(err), name
        assert target.read_bytes() == before, name
        (out / name).unlink()
        shutil.copy(target, out / name)
    assert run(config, out) == 0
    assert_same_run(out, reference)


def test_deleting_the_lock_file_does_not_let_a_second_run_in(tmp_path, capsys, world):
    config, _ = world
    out = tmp_path / "run"
    out.mkdir()
    holder = RunLock(out, exclusive=True, role="run").acquire()
    try:
        for entry in out.iterdir():  # everything a user could delete while the run holds the directory
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        code, _, err = cli(capsys, "--config", config, "--out", out)
        assert code == 2 and "in use" in one_error_line(err)
        assert not (out / "journal").exists()
    finally:
        holder.release()


# -- 5, 6: the score cache: group-writable, repaired when damaged -----------------------------------------

def test_the_score_cache_follows_the_umask_of_a_shared_directory(tmp_path, world):
    from metrics.score_cache import ScoreCache

    config, _ = world
    out = tmp_path / "run"
    old = os.umask(0o002)
    try:
        assert run(config, out) == 0
        database = out / "cache" / "scores.sqlite"
        with ScoreCache(database) as cache:  # open, as a resuming group member would: -wal and -shm exist now
            cache.put("probe", {("image", "prompt"): 1.0})
            files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
            modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    finally:
        os.umask(old)
    assert modes == {p.name: oct(0o664) for p in files}
    assert oct(stat.S_IMODE((out / "samples.csv").stat().st_mode)) == oct(0o664)


def test_a_damaged_score_cache_is_moved_aside_and_rebuilt(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    database = out / "cache" / "scores.sqlite"
    damaged = np.random.default_rng(2).bytes(database.stat().st_size)
    database.write_bytes(damaged)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    assert code == 0, err
    assert "score cache" in err and "is damaged" in err and "moved aside" in err and "Traceback" not in err
    aside = [p for p in (out / "cache").iterdir() if ".damaged-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    assert_same_run(out, reference)


# -- 7, 8: journal lines of the wrong shape; edited values --------------------------------------------------

@pytest.mark.parametrize("journal,index,change,expected", [
    ("generated", 0, lambda r: (r.pop("steps"), r.pop("check", None)), "no 'steps'"),
    ("generated", 0, lambda r: (r.update(seconds="fast"), r.pop("check", None)), "'seconds' is \"fast\", not a number"),
    ("set_metrics", 0, lambda r: (r.update(rows=5), r.pop("check", None)), "'rows' is 5, not a list of rows"),
    ("set_metrics", 0, lambda r: ([row.pop("value") for row in r["rows"]], r.pop("check", None)), "row 1: no 'value'"),
])
def test_a_journal_line_of_the_right_keys_and_the_wrong_shape(tmp_path, capsys, world, journal, index, change,
                                                               expected):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    path = out / "journal" / f"{journal}.jsonl"
    edit_journal_line(path, index, change)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    line = one_error_line(err)
    assert code == 2 and f"{journal}.jsonl line {index + 1}" in line and expected in line and "delete that line" in line


@pytest.mark.parametrize("journal,change", [
    ("generated", lambda r: r.update(forward_passes=r["forward_passes"] + 1)),
    ("set_metrics", lambda r: r["rows"][0].update(value=r["rows"][0]["value"] + 1.0)),
    ("set_intervals", lambda r: r["rows"][0]["jackknife"].__setitem__(0, 0.0)),
])
def test_an_edited_journal_value_stops_the_run(tmp_path, capsys, world, journal, change):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    before = tables(out)
    edit_journal_line(out / "journal" / f"{journal}.jsonl", 0, change)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    line = one_error_line(err)
    assert code == 2 and f"{journal}.jsonl line 1: its checksum does not match" in line and "delete that line" in line
    after = tables(out)
    assert all(after[name].equals(before[name]) for name in before)  # nothing rebuilt from the edited line


def test_an_edited_cached_score_is_recomputed(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    with sqlite3.connect(out / "cache" / "scores.sqlite") as db:
        assert db.execute("UPDATE scores SET value = value + 100").rowcount == 4
    db.close()
    code, _, err = cli(capsys, "--config", config, "--out", out)
    assert code == 0 and "4 cached scores" in err and "do not match their checksums" in err
    assert_same_run(out, reference)


@pytest.mark.parametrize("table", ["samples", "scores", "set_metrics"])
def test_an_edited_table_is_refused_by_report_only(tmp_path, capsys, world, table):
    _, reference = world
    out = finished_copy(reference, tmp_path / "run")
    path = out / f"{table}.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("vanilla", "vanila", 1)  # a plausible edit: the row count stays
    path.write_text("\n".join(lines) + "\n")
    before = tree_bytes(out / "tables")
    code, _, err = cli(capsys, "--report-only", out)
    line = one_error_line(err)
    assert code == 2 and f"{table}.csv does not match the sha256" in line
    assert tree_bytes(out / "tables") == before


# -- 9: a damaged table: refused before any report file is rewritten --------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "random-bytes"])
@pytest.mark.parametrize("checksums", [True, False], ids=["with-checksums", "older-run"])
def test_report_only_on_a_damaged_scores_csv_writes_nothing(tmp_path, capsys, world, damage, checksums):
    _, reference = world
    out = finished_copy(reference, tmp_path / "run")
    if not checksums:
        manifest = json.loads((out / "manifest.json").read_text())
        manifest.pop("tables", None)
        (out / "manifest.json").write_text(json.dumps(manifest))
    scores = out / "scores.csv"
    if damage == "truncated":
        scores.write_text("\n".join(scores.read_text().splitlines()[:3]) + "\n")
    else:
        scores.write_bytes(np.random.default_rng(3).bytes(2000))
    before = tree_bytes(out)
    code, _, err = cli(capsys, "--report-only", out)
    line = one_error_line(err)
    assert code == 2 and "scores.csv" in line and "re-run the same command" in line
    assert tree_bytes(out) == before


# -- 12: a killed writer's temporary files are swept, nothing else ---------------------------------------

def test_temporary_files_of_a_killed_writer_are_swept_and_nothing_else(tmp_path, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    token = next((out / "tokens").rglob("*.npy"))
    ours = [token.parent / f".{token.name}.k3j_h5g6.tmp", out / "journal" / ".generated.jsonl.abcdefgh.tmp",
            out / ".manifest.json.12345678.tmp", out / ".write-test-999999"]
    theirs = [token.parent / "notes.tmp", out / "images" / ".keep", out / ".mine.tmp", out / "tables" / ".x.tmp",
              out / "journal" / ".generated.jsonl.too-long-name.tmp"]
    for path in ours + theirs:
        path.write_bytes(b"half")
    assert run(config, out) == 0
    assert [p for p in ours if p.exists()] == []
    assert [p for p in theirs if not p.exists()] == []
    assert_same_run(out, reference)


# -- 13: SIGTERM is handled as Ctrl-C -----------------------------------------------------------------------

def test_sigterm_stops_like_ctrl_c_keeps_the_time_and_resumes(tmp_path, capsys, world):
    config, reference = world
    out = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits with main()'s code
        code = 3
        try:
            torch.set_num_threads(1)  # see fork_and_kill
            original, calls = RunDirectory.append, [0]

            def terminate_on_second_batch(self, name, records):
                if name == "generated":
                    calls[0] += 1
                    if calls[0] == 2:
                        os.kill(os.getpid(), signal.SIGTERM)  # what SLURM or Kubernetes sends
                return original(self, name, records)

            RunDirectory.append = terminate_on_second_batch
            sys.stdout = open(os.devnull, "w")
            sys.stderr = open(log, "w")
            code = run(config, out)
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 143, f"exit status {status}"
    assert "mgt-bench: interrupted (SIGTERM); run the same command again to resume" in log.read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["timings"]["generate_seconds"] > 0
    assert run(config, out) == 0
    assert_same_run(out, reference)


# -- 15: --compare's --out ----------------------------------------------------------------------------------

def test_compare_out_must_be_a_comparison_folder(tmp_path, capsys, world):
    _, reference = world
    other = finished_copy(reference, tmp_path / "other")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, _, err = cli(capsys, "--compare", reference, other, "--out", a_file)
    assert code == 2 and "is a file" in one_error_line(err) and a_file.read_text() == "mine"
    users = tmp_path / "paper"
    users.mkdir()
    (users / "comparison.md").write_text("my draft")
    (users / "figure.svg").write_text("<svg/>")
    code, _, err = cli(capsys, "--compare", reference, other, "--out", users)
    assert code == 2 and "not written by --compare" in one_error_line(err)
    assert sorted(p.name for p in users.iterdir()) == ["comparison.md", "figure.svg"]
    assert (users / "comparison.md").read_text() == "my draft"
    out = tmp_path / "cmp"
    for _ in range(2):  # a comparison folder may be written again
        code, _, err = cli(capsys, "--compare", reference, other, "--out", out)
        assert code == 0, err
    assert (out / "comparison.md").exists()


# -- 16: the manifest's git call leaves the user's repository alone -----------------------------------------

def test_the_git_commit_is_read_without_touching_the_index(tmp_path, monkeypatch):
    import bench.rundir.provenance as provenance

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "f.txt").write_text("a\n")
    subprocess.run([*git, "add", "f.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    index = repo / ".git" / "index"
    later = index.stat().st_mtime_ns + 5_000_000_000
    os.utime(repo / "f.txt", ns=(later, later))  # stale stat data: a plain `git status` rewrites the index
    before = (index.stat().st_ino, index.stat().st_mtime_ns)
    real = subprocess.run
    monkeypatch.setattr(provenance.subprocess, "run", lambda *a, **k: real(*a, **{**k, "cwd": repo}))
    assert provenance.git_commit() == head
    assert (index.stat().st_ino, index.stat().st_mtime_ns) == before
    assert not (repo / ".git" / "index.lock").exists()


# -- 18: deleted token grids -----------------------------------------------------------------------------------

def test_a_deleted_token_grid_is_regenerated(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    victim = next((out / "tokens").rglob("*.npy"))
    victim.unlink()
    capsys.readouterr()
    code, printed, err = cli(capsys, "--config", config, "--out", out)
    assert code == 0, err
    assert victim.name in err and "is missing" in err and "1 images generated, 3 reused" in printed
    assert victim.exists()
    assert_same_run(out, reference)


# -- 20: the lock holder's message names only holders that still run ---------------------------------------

def test_the_lock_message_does_not_name_a_shard_that_exited(tmp_path, capsys, world):
    config, _ = world
    out = tmp_path / "run"
    out.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a shard that took the lock and exited (its lock went with it)
        try:
            RunLock(out, exclusive=False, role="shard 0/2").acquire()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    shard = RunLock(out, exclusive=False, role="shard 1/2").acquire()
    try:
        code, _, err = cli(capsys, "--config", config, "--out", out)
        line = one_error_line(err)
        assert code == 2 and "shard 1/2" in line and "shard 0/2" not in line and f"pid {pid} " not in line
    finally:
        shard.release()
