"""The trained synthetic world: shipped weights, MaskGIT training, batch independence, attribute metrics."""
from __future__ import annotations

import json
import math

import pytest
import torch

from bench.config import load_config
from bench.models.meissonic_transformer import SingleTransformerBlock, TransformerBlock
from bench.models.registry import MODELS
from bench.models.synthetic import SyntheticModel, TrainedWorldModel
from bench.models.synthetic import train as training
from bench.models.synthetic.grammar import SceneGrammar
from bench.models.synthetic.network import NetworkConfig, WordTokenizer, WorldNetwork
from bench.models.synthetic.trained import WEIGHTS_PATH, WEIGHTS_SHA256, sha256
from metrics.base import METRICS, ScoreBatch
from samplers.engine import SamplerEngine
from samplers.variant import build_variant


@pytest.fixture(scope="module")
def model():
    return TrainedWorldModel()


def test_shipped_weights_match_their_checksum_and_the_documented_command():
    assert sha256(WEIGHTS_PATH) == WEIGHTS_SHA256
    assert WEIGHTS_PATH.stat().st_size < 5 * 2**20
    from safetensors import safe_open

    with safe_open(str(WEIGHTS_PATH), framework="pt") as handle:
        metadata = handle.metadata()
    defaults = {k: v for k, v in vars(training.parser().parse_args([])).items() if k != "out"}
    assert json.loads(metadata["training"]) == defaults  # the weights come from the default command
    assert NetworkConfig.from_json(json.loads(metadata["config"])) == NetworkConfig()
    curve = json.loads(metadata["loss_curve"])
    assert curve[-1]["step"] == defaults["steps"] and curve[-1]["loss"] < curve[0]["loss"]


def test_damaged_shipped_weights_are_refused(monkeypatch):
    from mgt_common.errors import ConfigError
    from bench.models.synthetic import trained

    monkeypatch.setattr(trained, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="damaged"):
        TrainedWorldModel()
    with pytest.raises(ConfigError, match="unknown parameter 'grid'"):
        TrainedWorldModel(grid=8)


def test_names_the_network_is_meissonic_blocks_and_synthetic_is_the_exact_alias(model):
    assert isinstance(MODELS.get("synthetic")(), SyntheticModel)
    assert MODELS.get("synthetic") is MODELS.get("synthetic-exact")
    assert isinstance(MODELS.get("synthetic-trained")(), TrainedWorldModel)
    blocks = [type(m) for m in model.transformer.modules()]
    assert TransformerBlock in blocks and SingleTransformerBlock in blocks  # model-side choices patch these
    config = load_config("default")
    assert config.model_name == "synthetic-trained"


def test_an_image_does_not_depend_on_its_batch(model):
    prompts = [p for _, p, _ in model.grammar.prompt_set(5, seed=1)]
    seeds = [3, 4, 5, 6, 7]
    engine = SamplerEngine(model)
    variant = build_variant("vanilla")
    together = engine.generate(variant, model.encode(prompts), seeds, model.token_grid(), 4, 3.0)
    for row in (0, 4):
        alone = engine.generate(variant, model.encode([prompts[row]]), [seeds[row]], model.token_grid(), 4, 3.0)
        assert torch.equal(alone.tokens[0], together.tokens[row])
    assert together.forward_passes.tolist() == [4] * 5


def test_the_trained_network_draws_the_prompted_scene_more_often_than_chance(model):
    """A weak but real check of training: vanilla samples get more attributes right than chance."""
    prompts = [p for _, p, _ in model.grammar.prompt_set(9, seed=0)]
    engine = SamplerEngine(model)
    gen = engine.generate(build_variant("vanilla"), model.encode(prompts), list(range(9)), model.token_grid(), 8, 3.0)
    batch = ScoreBatch(images=model.decode(gen.tokens), prompts=prompts, world=model.world)
    share = METRICS.get("world-attributes")().score(batch)
    # a random scene gets a named shape right 1/4 of the time, a colour 1/8, a position 1/5, a size 1/2
    assert share.mean() > 0.3  # chance: about 0.24 for a full prompt


def test_cosine_mask_counts_and_masked_loss():
    g = torch.Generator().manual_seed(0)
    mask = training.cosine_mask(4000, 10, g)
    counts = mask.sum(dim=1)
    assert counts.min() >= 1 and counts.max() <= 10
    # E[⌈10·cos(πr/2)⌉] = Σ_k P(10·cos(πr/2) > k-1) = Σ_{k=1..10} (2/π)·acos((k-1)/10)
    expected = sum(2 / math.pi * math.acos((k - 1) / 10) for k in range(1, 11))
    assert abs(counts.float().mean().item() - expected) < 0.1
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 5.0  # unmasked position: must not count
    targets = torch.tensor([[1, 0, 3]])
    masked = torch.tensor([[False, True, True]])
    assert math.isclose(training.masked_cross_entropy(logits, targets, masked).item(), math.log(4), rel_tol=1e-6)


def test_training_batches_follow_the_world_and_training_is_reproducible():
    config = NetworkConfig()
    batches = training.Batches(config, epsilon=0.05, cfg_dropout=0.25, seed=5)
    inputs, targets, mask, ids = batches(400)
    assert torch.equal(inputs == config.codebook_size, mask) and torch.equal(inputs[~mask], targets[~mask])
    empty = WordTokenizer(config.vocab, config.text_length)([""])[0]
    dropped = (ids == empty).all(dim=1)
    assert 0.15 < dropped.float().mean() < 0.35
    # every kept prompt describes the scene its tokens were drawn from
    grammar = SceneGrammar()
    words = {i: w for i, w in enumerate(config.vocab)}
    prototypes = torch.from_numpy(grammar.prototypes())
    for row in range(0, 400, 37):
        if dropped[row]:
            continue
        text = " ".join(words[int(i)] for i in ids[row] if int(i) > 1)
        nearest = int(((prototypes == targets[row]).sum(dim=1)).argmax())
        assert grammar.scene_mask(text)[nearest], text
    args = training.parser().parse_args(["--steps", "2", "--batch-size", "2", "--log-every", "1"])
    first, curve = training.train(args)
    second, _ = training.train(args)
    assert len(curve) == 2
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_attribute_errors_on_hand_made_images():
    world = SyntheticModel().world
    grammar = world.grammar
    full = "a small red circle at the top left on a blue background"
    scene = int(torch.from_numpy(grammar.scene_mask(full)).nonzero()[0])
    clean = world.prototypes[scene : scene + 1].repeat(3, 1)
    prompts = [full, "a red square", "a large circle"]
    errors = world.attribute_errors(clean, prompts)
    assert errors["shape"].tolist()[:2] == pytest.approx([0.0, 1.0], abs=1e-9)
    assert errors["colour"][0].item() == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(errors["position"][1].item()) and math.isnan(errors["colour"][2].item())
    assert errors["size"][2].item() == pytest.approx(1.0, abs=1e-9)
    batch = ScoreBatch(images=world.render(clean), prompts=prompts, world=world)
    share = METRICS.get("world-attributes")().score(batch)
    # full prompt: 5/5 right; "a red square": colour right, shape wrong; "a large circle": shape right, size wrong
    assert share.tolist() == pytest.approx([1.0, 0.5, 0.5], abs=1e-9)
    shape_errors = METRICS.get("world-error-shape")().score(batch)
    assert shape_errors.tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-9)
    # an attribute the prompt leaves open cannot be wrong: 0, not NaN (the score cache stores no NaN)
    assert METRICS.get("world-error-position")().score(batch).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert METRICS.get("world-error-size")().score(batch).tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-9)
    assert METRICS.get("world-error-shape").higher_is_better is False
