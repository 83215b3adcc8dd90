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
from bench.models.synthetic.grammar import SceneGrammar, shape_mask
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
    defaults = {k: v for k, v in vars(training.parser().parse_args([])).items() if k not in training.UNRECORDED}
    assert json.loads(metadata["training"]) == defaults  # the weights come from the default command
    assert NetworkConfig.from_json(json.loads(metadata["config"])) == NetworkConfig()
    curve = json.loads(metadata["loss_curve"])
    assert curve[-1]["step"] == defaults["steps"] and curve[-1]["loss"] < curve[0]["loss"]


def test_weights_of_the_first_network_layout_still_load(tmp_path):
    """A file written before the text layers and image positions existed (its config has neither key)
    builds that layout: users' own weights trained with the earlier script keep working."""
    old = {k: v for k, v in NetworkConfig().to_json().items() if k not in ("text_layers", "image_positions")}
    config = NetworkConfig.from_json(old)
    assert config.text_layers == 0 and config.image_positions is False
    network = WorldNetwork(config)
    assert not any("position" in k and "text_encoder" not in k for k in network.state_dict())
    path = tmp_path / "old.safetensors"
    training.save_weights(network, path, {"config": json.dumps(old), "training": json.dumps({"epsilon": 0.05})})
    model = TrainedWorldModel(weights=str(path))
    assert model.network.config == config and len(model.network.text_encoder.layers) == 0


def test_the_text_encoder_tells_which_colour_is_the_background():
    """With word + position embeddings only, the pooled vector is a bag of words: swapping the shape's
    and the background's colours leaves it unchanged. The text layers make it depend on word order."""
    prompts = ["a red circle on a blue background", "a blue circle on a red background"]
    for layers, differ in ((0, False), (2, True)):
        torch.manual_seed(0)
        config = NetworkConfig(text_layers=layers)
        encoder = WorldNetwork(config).text_encoder.eval()
        pooled, _ = encoder(WordTokenizer(config.vocab, config.text_length)(prompts))
        assert (not torch.allclose(pooled[0], pooled[1], atol=1e-5)) is differ, layers


def test_the_text_encoder_is_the_same_in_training_and_in_generation():
    """No train/eval difference (no dropout, no inference fast path): generation sees the training states.
    Hidden states of the words do not depend on the padding after them (it is masked out)."""
    config = NetworkConfig()
    torch.manual_seed(1)
    encoder = WorldNetwork(config).text_encoder
    ids = WordTokenizer(config.vocab, config.text_length)(["a large red circle at the center", "something red", ""])
    train_out = encoder.train()(ids)
    eval_out = encoder.eval()(ids)
    assert all(torch.equal(a, b) for a, b in zip(train_out, eval_out))
    longer = WordTokenizer(config.vocab, config.text_length + 4)(["something red"])
    wide = NetworkConfig(text_length=config.text_length + 4)
    torch.manual_seed(1)
    other = WorldNetwork(wide).text_encoder.eval()
    with torch.no_grad():
        other.position_embedding[: config.text_length] = encoder.position_embedding
    other.load_state_dict({k: v for k, v in encoder.state_dict().items() if k != "position_embedding"}, strict=False)
    _, hidden_long = other(longer)
    # the three present tokens of "something red" (<bos>, something, red) see the same words either way
    assert torch.allclose(hidden_long[0, :3], eval_out[1][1, :3], atol=1e-6)


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


def test_the_trained_network_draws_the_prompted_scene(model):
    """Text binding of the shipped network: vanilla samples show their prompt's scene most of the time.

    Chance is far below: a random scene shows a full prompt's scene with probability 1/2240, and gets a
    named shape right 1/4 of the time, a colour 1/8, a position 1/5, a size 1/2. The first network
    (700 steps, no text layers, no image positions) scored 0.13 alignment and 0.42 attributes here."""
    prompts = [p for _, p, _ in model.grammar.prompt_set(9, seed=0)]
    engine = SamplerEngine(model)
    gen = engine.generate(build_variant("vanilla"), model.encode(prompts), list(range(9)), model.token_grid(), 8, 3.0)
    batch = ScoreBatch(images=model.decode(gen.tokens), prompts=prompts, world=model.world)
    assert METRICS.get("world-alignment")().score(batch).mean() > 0.6
    assert METRICS.get("world-attributes")().score(batch).mean() > 0.7


@pytest.mark.parametrize("position", ["top left", "bottom right", "center"])
def test_the_first_step_puts_the_shape_where_the_prompt_says(model, position):
    """Everything masked: the network predicts the named shape colour inside the named shape's cells and
    the background elsewhere. The first network's prediction was the same at every position (it could
    not tell where "top left" is): 0.06 red inside and outside alike."""
    grammar = model.grammar
    prompt = f"a large red circle at the {position} on a blue background"
    inside = torch.from_numpy(shape_mask("circle", position, "large", grammar.grid).reshape(-1))
    tokens = torch.full((1, model.world.seq_len), model.mask_token_id)
    cond, _ = model.logits(tokens, model.encode([prompt]), 0, 16)
    red = cond.softmax(-1)[0, :, [grammar.flat_token("red"), grammar.flat_token("red") + 1]].sum(-1)
    assert red[inside].mean() > 0.5 and red[~inside].mean() < 0.1


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


def test_training_batches_follow_the_world_and_training_is_reproducible(tmp_path):
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
    # a second run that also writes a checkpoint after step 1: writing one must not change the run
    with_checkpoints = training.parser().parse_args(
        ["--steps", "2", "--batch-size", "2", "--log-every", "1", "--checkpoints", str(tmp_path),
         "--checkpoint-every", "1"])
    second, _ = training.train(with_checkpoints)
    assert len(curve) == 2
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step000001.safetensors"]  # not the final step
    checkpoint = TrainedWorldModel(weights=str(tmp_path / "step000001.safetensors"))
    assert json.loads(checkpoint.metadata["loss_curve"])[-1]["step"] == 1
    assert json.loads(checkpoint.metadata["training"]) == {
        k: v for k, v in vars(args).items() if k not in training.UNRECORDED}


def test_training_refuses_bad_arguments_before_training(tmp_path, capsys):
    """Exit 2 with one line naming the fix, nothing written (a checkpoint folder that is a file would
    otherwise fail after the first thousand steps)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "w.safetensors"
    for argv in (["--checkpoint-every", "0"], ["--steps", "0"], ["--checkpoints", str(blocker)],
                 ["--out", str(blocker / "w.safetensors")]):
        assert training.main([*argv, "--out", str(out)] if "--out" not in argv else argv) == 2
        assert "error:" in capsys.readouterr().err
    assert not out.exists()


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
