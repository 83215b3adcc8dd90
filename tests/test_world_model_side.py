"""Model-side design choices (token merging, quantization) and PAG run on the synthetic world's trained network."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.config import load_config
from bench.runner import Benchmark
from bench.rundir.store import RunDirectory

CONFIG = """
name = "trained-model-side"
limit = 2
seeds = [0]
steps = 4
guidance = 3.0
samplers = ["vanilla", "tome", "quant-int8", "pag"]
metrics = ["world-loglik", "world-attributes"]
batch_size = 2
bootstrap = 100

[model]
name = "synthetic-trained"

[prompts]
source = "synthetic-world"
n = 6
"""


def test_token_merging_and_quantization_run_on_the_trained_world(tmp_path):
    (tmp_path / "c.toml").write_text(CONFIG)
    Benchmark(load_config(str(tmp_path / "c.toml")), out=tmp_path / "run").run(report=False)
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert sorted(samples["variant"]) == ["pag", "pag", "quant-int8", "quant-int8", "tome", "tome", "vanilla", "vanilla"]
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert scores["value"].notna().all() and len(scores) == 16
    # merging a quarter of the image tokens changes the network's predictions, hence the images
    store = RunDirectory(tmp_path / "run")
    tokens = {(v, p): np.load(store.tokens_path(k)) for v, p, k in samples[["variant", "prompt_id", "unit_key"]].values}
    assert any((tokens["tome", p] != tokens["vanilla", p]).any() for p in samples["prompt_id"].unique())
    # PAG adds one perturbed forward a step: 4 steps → 8 passes
    assert set(samples.loc[samples["variant"] == "pag", "forward_passes"]) == {8}
