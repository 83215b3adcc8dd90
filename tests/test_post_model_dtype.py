"""``post_model_dtype = "model"`` keeps the official half-precision arithmetic after the transformer.

The official scripts (`inference_fp16.py`, the Monetico one: bfloat16 despite the names) run the
transformer in the model dtype and then CFG, the softmax and the Gumbel noise of
`AmusedScheduler.step` in that dtype too. What the tests here compare with is that loop rebuilt, not
the official pipeline itself (viiika/Meissonic is not a package): our backend's raw forward (its inputs
checked against the reference pipeline's in test_meissonic_backend.py), the pipelines' CFG line in the
model dtype, and diffusers' own `AmusedScheduler.step` on the (B, V, h, w) model output. Our default
float32 post-model path is expected to differ from it; "model" must not, in bfloat16.

In float16 it cannot, on purpose: diffusers' Gumbel noise clamps u at 1e-20, which is 0 in float16, so
a uniform draw of exactly 0 (about 2.4e-4 of float16 draws on the CPU) gives the noise −inf; at a
committed position (confidence log(65504) ≈ 11.09 there) that confidence becomes −inf and the
scheduler re-masks a committed token. We never re-mask committed tokens in the vanilla step.
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
    """Fixed half-precision logits (bf16 unless `dtype`) from a model that asks for the model-dtype post-model path."""

    def __init__(self, *args, post_model_dtype=None, dtype=torch.bfloat16, **kwargs):
        super().__init__(*args, **kwargs)
        self.cond, self.uncond = self.cond.to(dtype), self.uncond.to(dtype)
        self.post_model_dtype = dtype if post_model_dtype is None else post_model_dtype


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


def test_float16_gumbel_noise_of_the_scheduler_is_minus_inf_where_u_is_zero():
    from diffusers.schedulers.scheduling_amused import gumbel_noise

    assert float(torch.tensor(1e-20, dtype=torch.float16)) == 0.0  # the clamp's bound underflows: a no-op
    probe = torch.zeros(200_000, dtype=torch.float16)
    zeros = int((probe.uniform_(0, 1, generator=torch.Generator().manual_seed(0)) == 0).sum())
    assert 20 < zeros < 80  # about 2.4e-4 of the draws (48 expected)
    noise = gumbel_noise(torch.zeros(200_000, dtype=torch.float16), generator=torch.Generator().manual_seed(0))
    assert int(torch.isneginf(noise).sum()) == zeros
    assert not bool(torch.isneginf(gumbel_noise(torch.zeros(200_000, dtype=torch.bfloat16),
                                                generator=torch.Generator().manual_seed(0))).any())  # bf16: clamped


def test_float16_model_dtype_is_the_scheduler_except_its_committed_remasks(monkeypatch):
    """In float16 the scheduler re-masks a committed token wherever its Gumbel noise is −inf. With that one
    behaviour taken out (the same noise, a committed position's confidence +inf) the engine's float16
    model-dtype path is the scheduler, token for token; with it, some of these images differ."""
    import diffusers.schedulers.scheduling_amused as amused_scheduler

    def committed_kept(mask_len, probs, temperature=1.0, generator=None):
        # mask_by_random_topk's rule on the scheduler's own noise, but committed positions (whose confidence
        # input the scheduler sets to the dtype's max) are never below the cut-off
        confidence = torch.log(probs.clamp(1e-20)) + temperature * amused_scheduler.gumbel_noise(probs, generator)
        confidence = torch.where(probs == torch.finfo(probs.dtype).max, torch.inf, confidence)
        cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len.long())
        return confidence < cut_off

    steps, positions, differs = 8, 4096, 0
    for seed in range(4):
        def logits():
            return HalfLogits(steps, positions, 8, seed=seed, dtype=torch.float16)

        ours = generate(logits(), "vanilla", seeds=[seed], steps=steps, guidance=GUIDANCE).tokens
        plain = scheduler_in_model_dtype(logits(), steps, seed)
        with monkeypatch.context() as patch:
            patch.setattr(amused_scheduler, "mask_by_random_topk", committed_kept)
            assert torch.equal(ours, scheduler_in_model_dtype(logits(), steps, seed))
        differs += int(not torch.equal(ours, plain))
    assert differs > 0


def pipeline_loop_on_our_logits(model: MeissonicModel, prompt: str, seed: int) -> torch.Tensor:
    """The official half-precision loop rebuilt: our raw bf16 forward, the pipeline's CFG line in bf16, and
    diffusers' `AmusedScheduler.step` (the official Meissonic scheduler's step)."""
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


def test_tiny_checkpoint_in_model_dtype_is_the_bf16_pipeline_loop(models):
    exact, _ = models
    for seed, prompt in ((0, "a lighthouse at dusk"), (5, "a bowl of fruit, oil painting")):
        generation = SamplerEngine(exact).generate(
            build_variant("vanilla"), exact.encode([prompt], exact.default_negative_prompt), [seed],
            exact.token_grid(), STEPS, GUIDANCE)
        assert torch.equal(generation.tokens, pipeline_loop_on_our_logits(exact, prompt, seed))


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


def test_shipped_amused_config_keeps_the_pipelines_float16_arithmetic():
    """The aMUSEd pipeline runs float16 (the model card); the config says so and keeps its post-model dtype."""
    from bench.config import load_config

    config = load_config("amused-256")
    assert config.dtype == "float16" and config.model_args["post_model_dtype"] == "model"
