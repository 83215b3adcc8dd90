"""An image never depends on its batch: batch 1 and batch 8 give identical tokens, for every built-in variant."""
from __future__ import annotations

import pytest
import torch

from bench.config import load_config
from bench.models.synthetic import SyntheticModel
from bench.runner import Benchmark
from samplers.engine import SamplerEngine
from samplers.variant import VARIANT_PRESETS, build_variant
from helpers import write_tiny_config


@pytest.fixture(scope="module")
def model():
    return SyntheticModel(grid=8)


def world_reward(model, prompts):
    """The exact log-likelihood as the reward of search loops (best-of-N, SMC); other loops ignore it."""
    return lambda tokens, rows: model.world.log_likelihood(tokens, [prompts[r] for r in rows])


@pytest.mark.parametrize("variant", sorted(VARIANT_PRESETS.names()))
def test_batch_of_eight_equals_eight_batches_of_one(model, variant):
    if any(hasattr(c, "check_model") for c in build_variant(variant).components()):
        pytest.skip("a model-side choice: needs a network backend (batch independence: tests/test_model_transforms.py)")
    prompts = [p for _, p, _ in model.grammar.prompt_set(8, seed=3)]
    seeds = [11, 12, 13, 14, 15, 16, 17, 18]
    conditioning = model.encode(prompts)
    engine = SamplerEngine(model)
    together = engine.generate(build_variant(variant), conditioning, seeds, model.token_grid(), 6, 3.0,
                               reward=world_reward(model, prompts))
    for row in range(8):
        alone = engine.generate(build_variant(variant), model.encode([prompts[row]]), [seeds[row]],
                                model.token_grid(), 6, 3.0, reward=world_reward(model, [prompts[row]]))
        assert torch.equal(alone.tokens[0], together.tokens[row]), f"{variant}: row {row} depends on its batch"
        assert alone.forward_passes[0] == together.forward_passes[row]


def test_run_directory_is_identical_whatever_the_batch_size(tmp_path):
    images = {}
    for batch_size in (1, 5):
        config = load_config(str(write_tiny_config(tmp_path / f"c{batch_size}.toml", batch_size=batch_size)))
        result = Benchmark(config, out=tmp_path / f"b{batch_size}").run(report=False)
        images[batch_size] = {p.name: p.read_bytes() for p in (result.run_dir / "images").rglob("*.png")}
        assert config.generation_hash() == load_config(str(tmp_path / "c1.toml")).generation_hash()
    assert images[1] == images[5] and len(images[1]) == 16
