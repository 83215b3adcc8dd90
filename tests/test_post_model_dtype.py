"""``post_model_dtype = "model"`` reproduces the official half-precision Meissonic pipeline token for token (issue 12).

The official scripts (`inference_fp16.py`, the Monetico one: bfloat16 despite the names) run the
transformer in the model dtype and then CFG, the softmax and the Gumbel noise of
`AmusedScheduler.step` in that dtype too. The reference here is exactly that: the backend's raw
forward (already checked against the pipeline's inputs in test_meissonic_backend.py), the pipeline's CFG
line on the bf16 logits, and diffusers' scheduler step on the (B, V, h, w) model output. Our default
float32 post-model path is expected to differ from it; "model" must not.
"""
from __future__ import annotations

import pytest
import torch
from diffusers import AmusedScheduler

from catalogue_fakes import MASK, FixedLogits, generate
from model_fixtures import tiny_checkpoint

from bench.models.meissonic import MeissonicModel
from mgt_common.errors import ConfigError
from samplers.engine import SamplerEngine
from samplers.variant import build_variant

STEPS, GUIDANCE = 4, 9.0


class HalfLogits(FixedLogits):
    """Fixed bf16 logits from a model that asks for the model-dtype post-model path."""

    def __init__(self, *args, post_model_dtype=torch.bfloat16, **kwargs):
        super().__init__(*args, **kwargs)
        self.cond, self.uncond = self.cond.bfloat16(), self.uncond.bfloat16()
        self.post_model_dtype = post_model_dtype


def scheduler_in_model_dtype(model: HalfLogits, steps: int, seed: int) -> torch.Tensor:
    """The official loop on bf16 logits: the pipeline's CFG line, then AmusedScheduler.step, all in bf16."""
    scheduler = AmusedScheduler(mask_token_id=MASK)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((1, model.cond.shape[1]), MASK, dtype=torch.long)
    for i, t in enumerate(scheduler.timesteps):
        cond, uncond = model.cond[i][None], model.uncond[i][None]
        tokens = scheduler.step(uncond + GUIDANCE * (cond - uncond), t, tokens, generator=generator).prev_sample
    return tokens


@pytest.mark.parametrize("steps,seq_len,vocab", [(4, 64, 256), (6, 144, 256)])
def test_engine_in_model_dtype_is_the_bf16_scheduler(steps, seq_len, vocab):
    exact, default = 0, 0
    for seed in range(4):
        expected = scheduler_in_model_dtype(HalfLogits(steps, seq_len, vocab, seed=seed), steps, seed)
        model = HalfLogits(steps, seq_len, vocab, seed=seed)
        exact += int(torch.equal(generate(model, "vanilla", seeds=[seed], steps=steps, guidance=GUIDANCE).tokens, expected))
        model = HalfLogits(steps, seq_len, vocab, seed=seed, post_model_dtype=torch.float32)
        default += int(torch.equal(generate(model, "vanilla", seeds=[seed], steps=steps, guidance=GUIDANCE).tokens, expected))
    assert exact == 4
    assert default < 4  # the float32 post-model path (the default) does not follow it: the check has teeth


def official_half_precision(model: MeissonicModel, prompt: str, seed: int) -> torch.Tensor:
    rows, cols = model.token_grid()
    scheduler = AmusedScheduler(mask_token_id=model.mask_token_id)
    scheduler.set_timesteps(STEPS)
    generator = torch.Generator().manual_seed(seed)
    conditioning = model.encode([prompt], model.default_negative_prompt)
    tokens = torch.full((1, rows, cols), model.mask_token_id, dtype=torch.long)
    for i, t in enumerate(scheduler.timesteps):
        cond, uncond = model.raw_logits(tokens.reshape(1, -1), conditioning, i, STEPS)
        assert cond.dtype == torch.bfloat16
        output = uncond + GUIDANCE * (cond - uncond)  # the pipeline's CFG, in the model dtype
        output = output.transpose(1, 2).reshape(1, -1, rows, cols)  # the transformer's (B, V, h, w)
        tokens = scheduler.step(output, t, tokens, generator=generator).prev_sample
    return tokens.reshape(1, -1)


@pytest.fixture(scope="module")
def models():
    common = dict(path=str(tiny_checkpoint("meissonic-512")), device="cpu", dtype="bfloat16", height=64)
    return MeissonicModel(post_model_dtype="model", **common), MeissonicModel(**common)


def test_tiny_checkpoint_in_model_dtype_is_the_official_bf16_pipeline(models):
    exact, _ = models
    for seed, prompt in ((0, "a lighthouse at dusk"), (5, "a bowl of fruit, oil painting")):
        generation = SamplerEngine(exact).generate(
            build_variant("vanilla"), exact.encode([prompt], exact.default_negative_prompt), [seed],
            exact.token_grid(), STEPS, GUIDANCE)
        assert torch.equal(generation.tokens, official_half_precision(exact, prompt, seed))


def test_the_setting_is_part_of_the_model_identity(models):
    exact, default = models
    assert exact.identity()["post_model_dtype"] == "model"
    assert "post_model_dtype" not in default.identity()  # defaults keep the unit keys they had
    tokens = torch.full((1, 16), exact.mask_token_id)
    assert exact.logits(tokens, exact.encode(["x"]), 0, 4)[0].dtype == torch.bfloat16
    assert default.logits(tokens, default.encode(["x"]), 0, 4)[0].dtype == torch.float32


def test_bad_post_model_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="post_model_dtype must be one of float32, model"):
        MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), device="cpu", post_model_dtype="bf16")


def test_shipped_meissonic_configs_follow_inference_fp16_in_bfloat16():
    """The official half-precision scripts load bfloat16 despite their names; configs that follow them say so."""
    from bench.config import load_config

    for name in ("meissonic-1024", "meissonic-512", "paper-meissonic-1024"):
        assert load_config(name).dtype == "bfloat16", name
