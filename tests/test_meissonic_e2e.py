"""End to end: a shipped real-model config, pointed at tiny random checkpoints, through ``run_bench.py``.

This is what a user with the weights on disk does (issue 4, "Done means"): take the shipped
``meissonic-1024`` / ``amused-256`` config, set the model path, run. Only sizes change here (tiny
models, 4 steps, 2 prompts, a tiny random CLIP scorer registered by a ``--plugin`` file).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from model_fixtures import laion_clip, tiny_checkpoint, write_tiny_clip_plugin

from bench.config import CONFIG_DIR, load_config, tomllib  # tomllib, or tomli before Python 3.11
from mgt_common.errors import MissingWeightsError

REPO = Path(__file__).resolve().parents[1]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, data: dict) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, values in data.items():
        if isinstance(values, dict):
            lines += [f"[{table}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def shrunk(shipped: str, tmp_path: Path, model: dict, height: int, width: int) -> tuple[Path, Path]:
    """The shipped config with tiny sizes, a local prompt file and the tiny CLIP scorer."""
    plugin = write_tiny_clip_plugin(tmp_path / "scorer")
    data = tomllib.loads((CONFIG_DIR / f"{shipped}.toml").read_text())
    (tmp_path / "prompts.txt").write_text("a red cube on a wooden table\na photo of a cat in the snow\n")
    data.update(
        out=str(tmp_path / "run"), steps=4, seeds=[0], height=height, width=width, device="cpu", dtype="float32",
        batch_size=2, bootstrap=100, prompts=str(tmp_path / "prompts.txt"), samplers=["vanilla", "random-order"],
        metrics=[{"name": "clip_score", "model": "tiny-clip", "pretrained": str(tmp_path / "scorer" / "tiny-clip.pt")}],
    )
    data["model"].update(model)
    data["model"] = {k: v for k, v in data["model"].items() if v is not None}  # None: drop the shipped key
    return write_config(tmp_path / f"{shipped}.toml", data), plugin


def check_run(run: Path, backend: str, size: tuple[int, int]) -> None:
    samples = pd.read_csv(run / "samples.csv")
    assert sorted(samples["variant"].unique()) == ["random-order", "vanilla"] and len(samples) == 4
    assert (samples["forward_passes"] == 4).all()
    for rel in samples["image_path"]:
        with Image.open(run / rel) as image:
            assert image.size == size  # (width, height)
    scores = pd.read_csv(run / "scores.csv")
    assert len(scores[scores["metric"] == "clip_score"]) == 4 and scores["value"].notna().all()
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["backend"] == backend and manifest["model"]["dtype"] == "fp32"
    assert manifest["model"]["weights"]["source"] == "local" and manifest["model"]["weights"]["fingerprint"]


def test_meissonic_1024_config_runs_through_run_bench(tmp_path):
    config, plugin = shrunk("meissonic-1024", tmp_path, {"path": str(tiny_checkpoint("meissonic-1024")),
                                                        "text_encoder": str(laion_clip())}, height=1024, width=64)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "run_bench.py", "--config", str(config), "--plugin", str(plugin)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run(tmp_path / "run", "meissonic", (64, 1024))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["negative_prompt"].startswith("worst quality, low quality")  # the model's default


def test_amused_config_runs_in_process(tmp_path):
    from bench.cli import main

    config, plugin = shrunk("amused-256", tmp_path, {"path": str(tiny_checkpoint("amused")), "variant": None},
                            height=64, width=64)
    assert main(["--config", str(config), "--plugin", str(plugin)]) == 0
    check_run(tmp_path / "run", "amused", (64, 64))


@pytest.mark.parametrize("name, repo", [("meissonic-1024", "MeissonFlow/Meissonic"),
                                        ("meissonic-512", "Collov-Labs/Monetico"), ("amused-256", "amused/amused-256")])
def test_shipped_configs_name_their_weights_and_fail_fast_without_them(name, repo, monkeypatch, tmp_path):
    from bench.models.registry import MODELS  # the real backends are built-in entries

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    config = load_config(name)
    assert config.model_args["path"] == repo
    with pytest.raises(MissingWeightsError, match=f"hf download {repo}"):
        MODELS.get(config.model_name)(**{**config.model_args, "device": "cpu", "dtype": config.dtype})
