"""The aMUSEd backend on a tiny random checkpoint: it must drive the transformer exactly as diffusers'
(deprecated) `AmusedPipeline` does, so the same scheduler steps give the same tokens."""
from __future__ import annotations

import time
import warnings

import pytest
import torch

from model_fixtures import tiny_checkpoint

from bench.models.amused import AmusedModel
from mgt_common.errors import ConfigError, MissingWeightsError
from samplers.protocol import MaskedTokenModel


@pytest.fixture(scope="module")
def amused():
    return AmusedModel(path=str(tiny_checkpoint("amused")), device="cpu")


def test_metadata_follows_the_checkpoint(amused):
    assert isinstance(amused, MaskedTokenModel)
    assert amused.mask_token_id == 39  # the scheduler config's mask_token_id = vocab_size − 1
    assert amused.codebook_size == 32
    assert (amused.height, amused.width, amused.token_grid()) == (64, 64, (4, 4))  # sample_size 4 × VQ scale 16
    assert (amused.default_steps, amused.default_guidance_scale) == (12, 10.0)  # AmusedPipeline defaults
    info = amused.describe()
    assert info["backend"] == "amused" and info["dtype"] == "fp32" and info["weights"]["source"] == "local"


@pytest.mark.parametrize("negative", [None, "blurry"])
def test_tokens_equal_the_diffusers_pipeline(amused, negative):
    """Our logits + the aMUSEd scheduler step reproduce AmusedPipeline's tokens bit for bit."""
    from diffusers import AmusedScheduler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers.pipelines.deprecated.amused.pipeline_amused import AmusedPipeline

        pipe = AmusedPipeline(vqvae=amused.vqvae, tokenizer=amused.prompts.tokenizer,
                              text_encoder=amused.prompts.text_encoder, transformer=amused.transformer,
                              scheduler=AmusedScheduler(mask_token_id=amused.mask_token_id))
    pipe.set_progress_bar_config(disable=True)
    steps, guidance, prompts = 5, 10.0, ["a cat", "a red cube on a table"]
    # the pipeline wants one negative prompt per prompt (a bare string would give one row)
    negatives = None if negative is None else [negative] * len(prompts)
    expected = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, negative_prompt=negatives,
                    generator=torch.Generator().manual_seed(3), output_type="latent").images.reshape(2, -1)

    scheduler = AmusedScheduler(mask_token_id=amused.mask_token_id)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(3)
    conditioning = amused.encode(prompts, negative)
    tokens = torch.full((2, 16), amused.mask_token_id)
    for i, t in enumerate(scheduler.timesteps):
        cond, uncond = amused.logits(tokens, conditioning, i, steps)
        tokens = scheduler.step(uncond + guidance * (cond - uncond), t, tokens, generator=generator).prev_sample
    assert torch.equal(tokens, expected)
    images = amused.decode(tokens, (4, 4))
    assert images.shape == (2, 3, 64, 64) and 0 <= images.min() and images.max() <= 1


def test_one_transformer_call_and_conditional_only(amused):
    cond = amused.encode(["a"])
    rows = []
    hook = amused.transformer.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        c, u = amused.logits(torch.full((1, 16), 39), cond, 0, 12, with_uncond=False)
        amused.logits(torch.full((1, 16), 39), cond, 0, 12)
    finally:
        hook.remove()
    assert u is None and c.shape == (1, 16, 32) and c.dtype == torch.float32
    assert rows == [1, 2]  # one call each: the conditional row alone, then the CFG batch [uncond; cond]


def test_other_resolutions_and_bad_parameters(amused):
    assert amused.token_grid(128, 96) == (8, 6)
    assert amused.micro_conditions(1).tolist() == [[96, 128, 0, 0, 6]]
    amused.token_grid(64, 64)
    with pytest.raises(ConfigError, match="multiples of 16"):
        amused.token_grid(72, 64)
    with pytest.raises(ConfigError, match="unknown parameter 'text_encoder'"):
        AmusedModel(path=str(tiny_checkpoint("amused")), text_encoder="x")


def test_missing_checkpoint_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="hf download amused/amused-512"):
        AmusedModel(path="amused/amused-512", device="cpu")
    assert time.perf_counter() - start < 2


def test_the_vanilla_sampler_on_this_backend_is_the_diffusers_pipeline(amused):
    """The whole chain: our engine's vanilla variant driving this backend = AmusedPipeline, token for token."""
    from diffusers import AmusedScheduler

    from samplers.engine import SamplerEngine
    from samplers.variant import build_variant

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers.pipelines.deprecated.amused.pipeline_amused import AmusedPipeline

        pipe = AmusedPipeline(vqvae=amused.vqvae, tokenizer=amused.prompts.tokenizer,
                              text_encoder=amused.prompts.text_encoder, transformer=amused.transformer,
                              scheduler=AmusedScheduler(mask_token_id=amused.mask_token_id))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(["a lighthouse at dusk"], num_inference_steps=6, guidance_scale=10.0,
                    generator=torch.Generator().manual_seed(7), output_type="latent").images.reshape(1, -1)
    generation = SamplerEngine(amused).generate(build_variant("vanilla"), amused.encode(["a lighthouse at dusk"]), [7],
                                                amused.token_grid(), 6, 10.0, device="cpu")
    assert torch.equal(generation.tokens, expected)
