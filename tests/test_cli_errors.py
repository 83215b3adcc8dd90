"""Bad input: one clear line naming the key and the fix, exit code 2, nothing written, no traceback."""
from __future__ import annotations


import pytest

from bench.cli import main
from helpers import write_tiny_config


def run_main(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


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
])
def test_bad_flags(tmp_path, capsys, args, expected):
    out = tmp_path / "run"
    code, err = run_main(capsys, "--config", str(write_tiny_config(tmp_path / "c.toml")), "--out", str(out), *args)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
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
])
def test_bad_config_files(tmp_path, capsys, body, expected):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    out = tmp_path / "run"
    code, err = run_main(capsys, "--config", str(config), "--out", str(out), "--limit", "2")
    assert code == 2, err
    assert expected in err
    assert "Traceback" not in err
    assert not out.exists()


def test_missing_and_empty_prompt_files(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "c.toml")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, err = run_main(capsys, "--config", str(config), "--out", str(tmp_path / "run"), "--prompts", str(empty))
    assert code == 2 and "holds no prompts" in err
    code, err = run_main(capsys, "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "no such file" in err
    assert not (tmp_path / "run").exists()


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_tiny_config(tmp_path / "c.toml")
    code, err = run_main(capsys, "--config", str(config), "--out", str(blocker / "run"))
    assert code == 2 and "pass a writable --out" in err


def test_run_directory_of_another_config_is_refused(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "c.toml", limit=2, steps=3)
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out)]) == 0
    before = sorted(p.name for p in (out / "journal").iterdir())
    capsys.readouterr()
    code, err = run_main(capsys, "--config", str(config), "--out", str(out), "--steps", "4")
    assert code == 2
    assert "different configuration (changed: steps)" in err and "--fresh" in err
    assert sorted(p.name for p in (out / "journal").iterdir()) == before
    # --fresh starts over; a folder that is not a run directory is never deleted
    assert main(["--config", str(config), "--out", str(out), "--steps", "4", "--fresh"]) == 0
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "holiday.jpg").write_bytes(b"x")
    code, err = run_main(capsys, "--config", str(config), "--out", str(stranger), "--fresh")
    assert code == 2 and "refusing to delete" in err
    assert (stranger / "holiday.jpg").exists()


def test_report_only_needs_a_run_directory(tmp_path, capsys):
    code, err = run_main(capsys, "--report-only", str(tmp_path))
    assert code == 2 and "not an mgt-bench run directory" in err
