"""The fault matrix (issue 11): what a careful user can do to a run, and what the suite must do about it.

Rows: never lose a user's files or results (--fresh, concurrent writers, damaged images, permissions);
fail before writing with exit 2 and one clear line (devices, weights, --out, --report-only, journals,
disk full, prompt files); scores follow the weights and images do not follow the batch; operability
(plain progress lines, cumulative timings); and the cases that already held (kill -9 at every stage,
a torn journal, a truncated samples.csv). Runs are tiny (2 prompts x 2 seeds, 3 steps, one variant)
and in-process; a kill -9 runs in a forked copy of this process, so no interpreter start is paid.
Most rows start from a copy of one finished reference run, and the report (plots: the slow part,
covered by tests/test_report.py) is replaced by a stub after that reference, since no row is about it.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.rundir.store
from bench.cli import main
from helpers import cli, one_error_line  # noqa: F401 - test_fault_matrix_trust imports them from here
from bench.rundir.lock import HOLDERS_NAME, RunLock
from bench.runner import render as REAL_RENDER
from bench.rundir.store import MARKER, RunDirectory
from helpers import assert_same_run, image_bytes, write_tiny_config


TINY = """
name = "fault-matrix"
limit = 2
seeds = [0, 1]
steps = 3
guidance = 3.0
samplers = ["vanilla"]
metrics = ["world-loglik", { name = "fid", reference_per_prompt = 2 }]
batch_size = 2

[model]
name = "synthetic"
grid = 8
text_strength = 0.25

[prompts]
source = "synthetic-world"
n = 12
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny config and its uninterrupted reference run (shared by the rows that compare against it)."""
    root = tmp_path_factory.mktemp("matrix")
    config = root / "c.toml"
    config.write_text(TINY)
    assert main(["--config", str(config), "--out", str(root / "reference")]) == 0
    assert (root / "reference" / "report.html").exists()
    return config, root / "reference"


@pytest.fixture(autouse=True)
def stub_report(world, monkeypatch):
    """After the reference run: a one-line report instead of the plots (nothing here is about the report)."""
    import bench.runner

    def render(run_dir):
        path = Path(run_dir) / "report.md"
        path.write_text("stub\n")
        return {"markdown": path}

    monkeypatch.setattr(bench.runner, "render", render)


def finished_copy(reference: Path, out: Path) -> Path:
    """A finished run without running it again (the reference, copied with its times)."""
    shutil.copytree(reference, out)
    return out


def run(config, out, *extra) -> int:
    return main(["--config", str(config), "--out", str(out), *map(str, extra)])


def fork_and_kill(config, out, where: str, nth: int = 1) -> None:
    """Run in a forked child that SIGKILLs itself at the `nth` call of `where` (no cleanup code runs)."""
    import bench.runner
    import metrics.score_cache

    targets = {"generate": (RunDirectory, "append", lambda args: args[1] == "generated"),
               "score": (metrics.score_cache.ScoreCache, "put", lambda args: True),
               "set_metrics": (RunDirectory, "append", lambda args: args[1] == "set_metrics"),
               "report": (bench.runner, "render", lambda args: True)}
    owner, name, wanted = targets[where]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            # GNU OpenMP's thread pool does not survive fork (a 2-thread region in the child hangs); one
            # thread needs no pool. The resumed run then equals the reference bit for bit (checked below).
            torch.set_num_threads(1)
            original, calls = getattr(owner, name), [0]

            def killer(*args, **kwargs):
                if wanted(args):
                    calls[0] += 1
                    if calls[0] == nth:
                        os.kill(os.getpid(), signal.SIGKILL)
                return original(*args, **kwargs)

            setattr(owner, name, killer)
            sys.stdout = sys.stderr = open(os.devnull, "w")
            run(config, out)
        finally:
            os._exit(3)  # only if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"{where}: exit status {status}"


# -- never lose a user's files or results ----------------------------------------------------------------

def test_fresh_never_deletes_a_folder_without_the_marker(tmp_path, capsys, world):
    config, _ = world
    extension = tmp_path / "extension"
    (extension / "icons").mkdir(parents=True)
    (extension / "manifest.json").write_text(json.dumps({"manifest_version": 3, "name": "x"}))
    (extension / "background.js").write_text("chrome.runtime.onInstalled.addListener(() => {});\n")
    before = sorted(p.relative_to(extension) for p in extension.rglob("*"))
    for flags in ((), ("--fresh",)):
        code, _, err = cli(capsys, "--config", config, "--out", extension, *flags)
        line = one_error_line(err)
        assert code == 2 and "not an mgt-bench run directory" in line and "pass --fresh" not in line
    assert sorted(p.relative_to(extension) for p in extension.rglob("*")) == before  # nothing added either


def test_marker_comes_first_and_fresh_advice_works_where_given(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    assert json.loads((out / MARKER).read_text())["tool"] == "mgt-bench"
    (out / "manifest.json").write_text("{ torn")
    code, _, err = cli(capsys, "--config", config, "--out", out)
    assert code == 2 and "pass --fresh" in one_error_line(err)
    assert run(config, out, "--fresh") == 0  # the advice works
    assert_same_run(out, reference)
    # a run directory of the version before the marker (a manifest naming the tool) is still accepted
    (out / MARKER).unlink()
    assert run(config, out) == 0 and (out / MARKER).exists()
    # without the marker, a corrupt manifest gets no --fresh advice (--fresh would refuse it)
    (out / MARKER).unlink()
    (out / "manifest.json").write_text("{ torn")
    code, _, err = cli(capsys, "--config", config, "--out", out, "--fresh")
    assert code == 2 and "pass --fresh" not in one_error_line(err) and (out / "samples.csv").exists()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys, world):
    config, _ = world
    out = tmp_path / "run"
    out.mkdir()
    holder = RunLock(out, exclusive=True, role="run").acquire()  # another run, in the middle of its work
    try:
        code, _, err = cli(capsys, "--config", config, "--out", out, "--steps", "4")
        line = one_error_line(err)
        assert code == 2 and f"pid {os.getpid()}" in line and "in use" in line
        assert sorted(p.name for p in out.iterdir()) == [HOLDERS_NAME]  # the loser wrote nothing
        assert len(list((out / HOLDERS_NAME).iterdir())) == 1  # (the holder's own record)
        code, _, err = cli(capsys, "--config", config, "--out", out, "--shard", "0/2")
        assert code == 2 and "in use" in one_error_line(err)
    finally:
        holder.release()
    # shards of one run share it: a running shard (shared lock) lets another shard in, not a plain run
    shard = RunLock(out, exclusive=False, role="shard 1/2").acquire()
    try:
        assert run(config, out, "--shard", "0/2") == 0
        code, _, err = cli(capsys, "--config", config, "--out", out)
        assert code == 2 and "shard 1/2" in one_error_line(err)
    finally:
        shard.release()


def test_racing_configs_on_a_new_directory_cannot_both_pass(tmp_path, capsys, world, monkeypatch):
    """Two different configs: whoever is second (here: while the first holds the run) is refused; once the
    first is done, the second meets its manifest and is refused for the configuration."""
    config, _ = world
    out = tmp_path / "run"
    from bench.rundir.guard import RunGuard

    original = RunGuard.prepare
    seen = {}

    def prepare_then_meet_a_rival(self, fresh, first_manifest):
        original(self, fresh, first_manifest)
        if not seen:  # the rival starts while this run holds the directory
            seen["rival"] = cli(capsys, "--config", config, "--out", out, "--steps", "4")

    monkeypatch.setattr(RunGuard, "prepare", prepare_then_meet_a_rival)
    assert run(config, out) == 0
    code, _, err = seen["rival"]
    assert code == 2 and "in use by pid" in one_error_line(err)
    monkeypatch.undo()
    code, _, err = cli(capsys, "--config", config, "--out", out, "--steps", "4")
    assert code == 2 and "different configuration (changed: steps)" in one_error_line(err)


@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "another-valid-png"])
def test_a_damaged_image_is_regenerated_never_scored(tmp_path, capsys, world, damage):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    images = sorted((out / "images").rglob("*.png"))
    victim, other = images[0], images[1]
    if damage == "random-bytes":
        victim.write_bytes(np.random.default_rng(0).bytes(victim.stat().st_size))
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:200])
    else:
        victim.write_bytes(other.read_bytes())
    capsys.readouterr()
    code, out_text, err = cli(capsys, "--config", config, "--out", out)
    assert code == 0, err
    assert victim.name.removesuffix(".png") in err and "does not match the sha256" in err
    assert "1 images generated, 3 reused" in out_text
    assert_same_run(out, reference)


# -- fail before writing: exit 2, one line ----------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it(tmp_path, capsys, world):
    config, _ = world
    code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_missing_scorer_weights_fail_before_the_first_image(tmp_path, capsys, world, monkeypatch):
    config, _ = world
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("MGT_BENCH_OFFLINE", "1")
    code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run", "--metrics", "world-loglik,hpsv2")
    line = one_error_line(err)
    assert code == 2 and "hf download xswu/HPSv2 HPS_v2.1_compressed.pt" in line
    assert not (tmp_path / "run").exists()


def test_out_naming_a_file_and_report_only_of_an_unfinished_run(tmp_path, capsys, world, monkeypatch):
    config, _ = world
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, _, err = cli(capsys, "--config", config, "--out", a_file)
    assert code == 2 and "is a file" in one_error_line(err) and a_file.read_text() == "mine"

    out = tmp_path / "run"
    original, calls = RunDirectory.append, [0]

    def interrupt(self, name, records):
        if name == "generated":
            calls[0] += 1
            if calls[0] == 2:
                raise KeyboardInterrupt
        return original(self, name, records)

    monkeypatch.setattr(RunDirectory, "append", interrupt)
    assert run(config, out) == 130
    monkeypatch.undo()
    code, _, err = cli(capsys, "--report-only", out)
    assert code == 2 and "not finished" in one_error_line(err)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"]["generate_seconds"] > 0  # the interrupted invocation's time is kept
    interrupted = manifest["timings"]["generate_seconds"]
    assert run(config, out) == 0
    resumed = json.loads((out / "manifest.json").read_text())
    assert resumed["timings"]["generate_seconds"] == pytest.approx(
        interrupted + resumed["last_run_timings"]["generate_seconds"], abs=2e-3)
    # a finished run re-run keeps the cumulative time (it used to show 0.0)
    assert run(config, out) == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["timings"]["generate_seconds"] >= resumed["timings"]["generate_seconds"]


def test_a_journal_line_of_the_wrong_shape(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    journal = out / "journal" / "generated.jsonl"
    whole = journal.read_text()
    for line in ('[1, 2, 3]', '{"unit": "x"}', '"just a string"'):
        journal.write_text(whole + line + "\n")
        code, _, err = cli(capsys, "--config", config, "--out", out)
        message = one_error_line(err)
        assert code == 2 and "generated.jsonl line 5" in message and "delete that line" in message, line


def test_disk_full_while_generating_and_scoring(tmp_path, capsys, world, monkeypatch):
    config, reference = world
    out = tmp_path / "run"
    real_mkstemp, calls = bench.rundir.store.tempfile.mkstemp, [0]

    class FullDisk:  # the store's writer: the 4th file it creates finds the disk full
        @staticmethod
        def mkstemp(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(bench.rundir.store, "tempfile", FullDisk)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    line = one_error_line(err)
    assert code == 2 and "disk full at" in line and "nothing lost" in line and "re-run" in line
    monkeypatch.undo()

    import metrics.score_cache

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(metrics.score_cache.ScoreCache, "put", full)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    assert code == 2 and "disk full" in one_error_line(err)
    monkeypatch.undo()
    assert run(config, out) == 0
    assert_same_run(out, reference)
    assert not list(out.rglob("*.tmp"))


def test_a_broken_jsonl_prompt_file_names_its_line(tmp_path, capsys, world):
    config, _ = world
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a cat"}\n\n{"prompt": "a dog"}\n{"prompt": "a cow",\n')
    code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run", "--prompts", prompts)
    assert code == 2 and "p.jsonl line 4: not valid JSON" in one_error_line(err)
    prompts.write_text('{"prompt": "a cat"}\n{"text": "a dog"}\n')
    code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run", "--prompts", prompts)
    assert code == 2 and "p.jsonl line 2: every entry needs a 'prompt' key" in one_error_line(err)
    assert not (tmp_path / "run").exists()


# -- bad input: flags, config files, prompt files (moved here from test_cli_errors.py) ----------------------

@pytest.mark.parametrize("args,expected", [
    (["--samplers", "vanila"], "unknown sampler variant 'vanila'. Did you mean 'vanilla'?"),
    (["--steps", "0"], "steps must be an integer >= 1"),
    (["--limit", "0"], "limit must be a positive integer"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["--metrics", "hpsv3"], "unknown metric 'hpsv3'"),
    (["--model", "meisonic"], "unknown model 'meisonic'"),
    (["--prompts", "/nonexistent/prompts.txt"], "neither a known prompt set"),
    (["--seeds", "0,x"], "--seeds"),
    (["--device", "tpu"], "device must be cpu, cuda"),
    (["--device", "cuda:x"], "device"),
])
def test_bad_flags(tmp_path, capsys, world, args, expected):
    config, _ = world
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--config", config, "--out", out, *args)
    assert code == 2 and expected in one_error_line(err)
    assert err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("body,expected", [
    ('guidance = nan\n', "guidance must be a finite number"),
    ('steps = "many"\n', "steps must be an integer"),
    ('colour = "red"\n', "unknown key 'colour'"),
    ('samplers = ["vanilla", "bad"]\n[variants.bad]\nconfidence = { name = "gumbel", start = -1.0 }\n',
     "variants.bad: confidence 'gumbel': temperatures must be >= 0"),
    ('samplers = ["vanilla", "bad"]\n[variants.bad]\nreveal_schedule = "cosin"\n', "Did you mean 'cosine'?"),
    ('samplers = ["vanilla", "bad"]\n[variants.bad]\nguidance = { name = "linear", slope = 2.0 }\n',
     "unknown parameter 'slope'"),
    ('this is not toml = = =\n', "not valid TOML"),
    # nothing to compare image by image: the report used to crash after generation and scoring
    ('metrics = []\n', "metrics: no per-image metric (got none)"),
    ('metrics = [{ name = "fid", reference_per_prompt = 2 }]\n', "no per-image metric (got only set metrics: fid)"),
])
def test_bad_config_files(tmp_path, capsys, body, expected):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--config", config, "--out", out, "--limit", "2")
    assert code == 2 and expected in one_error_line(err)
    assert not out.exists()


def test_missing_and_empty_prompt_files(tmp_path, capsys, world):
    config, _ = world
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run", "--prompts", empty)
    assert code == 2 and "holds no prompts" in one_error_line(err)
    code, _, err = cli(capsys, "--config", tmp_path / "missing.toml")
    assert code == 2 and "no such file" in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_unwritable_output_directory(tmp_path, capsys, world):
    config, _ = world
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = cli(capsys, "--config", config, "--out", blocker / "run")
    assert code == 2 and "pass a writable --out" in one_error_line(err)


def test_run_directory_of_another_config_is_refused(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    before = sorted(p.name for p in (out / "journal").iterdir())
    code, _, err = cli(capsys, "--config", config, "--out", out, "--steps", "4")
    line = one_error_line(err)
    assert code == 2 and "different configuration (changed: steps)" in line and "--fresh" in line
    assert sorted(p.name for p in (out / "journal").iterdir()) == before
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "holiday.jpg").write_bytes(b"x")
    code, _, err = cli(capsys, "--config", config, "--out", stranger, "--fresh")
    assert code == 2 and "refusing to delete" in one_error_line(err)
    assert [p.name for p in stranger.iterdir()] == ["holiday.jpg"]


def test_report_only_and_merge_need_a_run_directory(tmp_path, capsys):
    for flag in ("--report-only", "--merge"):
        code, _, err = cli(capsys, flag, tmp_path)
        assert code == 2 and "not an mgt-bench run directory" in one_error_line(err)


# -- scores follow the weights; images do not follow the batch ----------------------------------------------

def test_weight_hashes_follow_content_not_size_and_mtime(tmp_path, monkeypatch):
    from bench.models.weights import fingerprint
    from metrics.pickscore import PickScore
    from metrics.weights import file_sha256

    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    checkpoint = tmp_path / "hps.pt"
    checkpoint.write_bytes(rng.bytes(1 << 20))
    first = file_sha256(checkpoint)
    times = checkpoint.stat()
    checkpoint.write_bytes(rng.bytes(1 << 20))  # `cp -p other hps.pt`: same size, same mtime
    os.utime(checkpoint, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert file_sha256(checkpoint) != first
    folders = []
    for seed in (1, 2):  # two local PickScore folders of the same shapes (weights >= 1 MiB)
        folder = tmp_path / f"pick{seed}"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(np.random.default_rng(seed).bytes((1 << 20) + 8))
        folders.append(folder)
    ids = {PickScore(model=str(f), processor=str(f)).weights_id() for f in folders}
    assert len(ids) == 2
    assert fingerprint(folders[0], ["*.safetensors"]) != fingerprint(folders[1], ["*.safetensors"])


def rgba_file(path: Path) -> Path:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 56, 4), dtype=np.uint8)
    pixels[..., 3] = np.where(rng.random((40, 56)) < 0.3, 0, pixels[..., 3])  # fully transparent patches too
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def palette_file(path: Path) -> Path:
    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.save(path, transparency=2)
    return path


def test_transparency_rule_of_each_scorer(tmp_path):
    """CLIP score: exactly open_clip's transform of the file; PickScore: exactly the CLIP processor's;
    HPSv2 (its reference crashes): transparency composited onto white, checked by hand."""
    import open_clip
    from transformers import CLIPImageProcessor

    from metrics.clip_score import CLIPScore
    from metrics.hpsv2 import HPSv2
    from metrics.pickscore import PickScore

    files = [rgba_file(tmp_path / "a.png"), palette_file(tmp_path / "p.png")]
    clip = CLIPScore(model="ViT-B-32", pretrained="openai")
    clip._model, clip._preprocess = object(), open_clip.image_transform(64, is_train=False)  # no weights needed
    processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    for path in files:
        with Image.open(path) as image:
            expected = clip._preprocess(image)
            expected_pick = processor(images=image, return_tensors="pt")["pixel_values"]
        assert torch.equal(clip.preprocess(clip.read_image(path)[None])[0], expected), path.name
        ours = Image.fromarray((PickScore.read_image(path) * 255).round().byte().permute(1, 2, 0).numpy())
        assert torch.equal(processor(images=ours, return_tensors="pt")["pixel_values"], expected_pick), path.name
    half_red = tmp_path / "half.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 128)).save(half_red)
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    # white under 128/255 of red: R = 255, G = B = 255 · (1 − 128/255) = 127
    assert (HPSv2.read_image(half_red) * 255).round()[:, 0, 0].tolist() == [255.0, 127.0, 127.0]
    assert torch.equal(HPSv2.read_image(tmp_path / "clear.png"), torch.ones(3, 4, 4))


@pytest.mark.parametrize("kind", ["meissonic-512", "amused"])
def test_decoded_image_bytes_do_not_depend_on_the_batch(kind):
    from bench.generate import to_png
    from bench.models.amused import AmusedModel
    from bench.models.meissonic import MeissonicModel
    from model_fixtures import tiny_checkpoint

    model = MeissonicModel(path=str(tiny_checkpoint(kind)), device="cpu", dtype="float32", height=128) \
        if kind.startswith("meissonic") else AmusedModel(path=str(tiny_checkpoint(kind)), device="cpu")
    rows, cols = model.token_grid()
    tokens = torch.randint(0, model.codebook_size, (6, rows * cols), generator=torch.Generator().manual_seed(0))
    together = model.decode(tokens)
    for row in range(6):
        assert to_png(model.decode(tokens[row:row + 1])[0]) == to_png(together[row]), f"{kind}: image {row}"


# -- operability ------------------------------------------------------------------------------------------

def test_plain_progress_lines_off_a_terminal_and_files_that_follow_the_umask(tmp_path, capsys, world, monkeypatch):
    config, _ = world
    monkeypatch.setenv("MGT_BENCH_PROGRESS_SECONDS", "0")
    old = os.umask(0o022)
    try:
        code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run")
    finally:
        os.umask(old)
    assert code == 0
    root = tmp_path / "run"  # group-shared run directories stay readable: never mkstemp's 0600
    files = [root / "manifest.json", root / "samples.csv", root / "scores.csv", root / "set_metrics.csv", root / MARKER,
             root / "journal" / "generated.jsonl", next((root / "images").rglob("*.png")),
             next((root / "tokens").rglob("*.npy"))]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(0o644) for p in files}
    assert "mgt-bench: generate: 4/4 images (100%)" in err and "images/s" in err
    assert "mgt-bench: generate: 2/4 images (50%)" in err and "ETA" in err
    assert "mgt-bench: score world-loglik: 4/4 images" in err
    assert "computing set metrics" in err and "set metric fid: vanilla (4 images)" in err
    assert "rendering the report" in err


# -- what already held: kill -9 at every stage, a torn journal, a truncated table ----------------------------

def test_kill_9_at_every_stage_then_resume_equals_uninterrupted(tmp_path, capsys, world, monkeypatch):
    """(Moved here from test_resume.py, which killed generation only.)"""
    config, reference = world
    out = tmp_path / "run"
    fork_and_kill(config, out, "generate", nth=2)  # after batch 2's PNGs were written, before they count
    assert len((out / "journal" / "generated.jsonl").read_text().splitlines()) == 2
    assert len(list((out / "images").rglob("*.png"))) == 4 and not (out / "samples.csv").exists()
    for stage in ("score", "set_metrics", "report"):
        fork_and_kill(config, out, stage)
    capsys.readouterr()
    code, printed, _ = cli(capsys, "--config", config, "--out", out)
    assert code == 0 and "0 images generated, 4 reused" in printed
    assert_same_run(out, reference)
    assert not list(out.rglob("*.tmp"))
    # the report of a finished run re-renders from its tables alone, without any model
    import bench.runner

    monkeypatch.setattr(bench.runner, "render", REAL_RENDER)
    assert main(["--report-only", str(out)]) == 0 and (out / "report.html").exists()


def test_torn_journal_line_then_resume(tmp_path, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    journal = out / "journal" / "generated.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])  # a kill in the middle of a write
    assert run(config, out) == 0  # the unit is regenerated; its new line is not glued to the torn one
    assert_same_run(out, reference)
    lines = journal.read_text().splitlines()
    assert len(RunDirectory(out).finished_units()) == 4 and len(lines) == 5 and lines[2] == lines[2][:25]


def test_truncated_samples_csv(tmp_path, capsys, world):
    config, reference = world
    out = finished_copy(reference, tmp_path / "run")
    samples = out / "samples.csv"
    samples.write_text("\n".join(samples.read_text().splitlines()[:3]) + "\n")
    code, _, err = cli(capsys, "--report-only", out)
    assert code == 2 and "samples.csv does not match the sha256" in one_error_line(err)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["tables"]  # a run made before the tables' checksums: their rows are counted instead
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli(capsys, "--report-only", out)
    assert code == 2 and "samples.csv has 2 rows but the run has 4 units" in one_error_line(err)
    assert run(config, out) == 0  # the tables are rebuilt from the journals
    assert_same_run(out, reference)
    assert image_bytes(out) == image_bytes(reference)
