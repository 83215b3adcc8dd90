"""The harness side of reward-guided search: a metric named by the loop reaches it as a reward, and its
cost (forward passes and scorer calls per image) lands in samples.csv and the report's cost table."""
from __future__ import annotations

import pandas as pd

from bench.cli import main
from helpers import write_tiny_config

SEARCH = """
[variants.best-of-3]
loop = { name = "best-of-n", n = 3, reward = "world-loglik" }
"""


def test_best_of_n_in_a_run_records_passes_and_scorer_calls(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "c.toml", limit=2, steps=4, batch_size=4,
                               samplers=("vanilla", "best-of-3"), extra=SEARCH)
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out), "--metrics", "world-loglik"]) == 0
    samples = pd.read_csv(out / "samples.csv", dtype={"prompt_id": str})
    best = samples[samples.variant == "best-of-3"]
    assert set(best.scorer_calls) == {3} and set(best.forward_passes) == {12}
    assert set(samples[samples.variant == "vanilla"].scorer_calls) == {0}
    scores = pd.read_csv(out / "scores.csv", dtype={"prompt_id": str})
    loglik = scores[scores.metric == "world-loglik"].pivot_table(index=["prompt_id", "seed"], columns="variant",
                                                                 values="value")
    # candidate 0 is the vanilla image, so the best of three never scores below it
    assert bool((loglik["best-of-3"] >= loglik["vanilla"] - 1e-12).all())
    assert "scorer calls / image" in (out / "report.md").read_text()


def test_a_set_metric_as_reward_exits_2_before_generating(tmp_path, capsys):
    bad = SEARCH.replace('"world-loglik"', '"fid"')
    config = write_tiny_config(tmp_path / "c.toml", limit=2, steps=4, samplers=("vanilla", "best-of-3"), extra=bad)
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out)]) == 2
    assert "per-image metric" in capsys.readouterr().err
    assert not (out / "images").exists()
