"""The Meissonic backend on tiny random checkpoints saved in the published layout, loaded through the real path.

What the sampler sees must be what the reference pipeline feeds the transformer (reference §1, §4.4):
the CFG batch [negative; prompt], the integer step index T−1−i as timestep, the micro-conditions
[W, H, 0, 0, 6], CLIP's pooled embedding and penultimate hidden states, logits over the codebook.
"""
from __future__ import annotations

import time

import pytest
import torch

from model_fixtures import laion_clip, tiny_checkpoint

from bench.models.meissonic import DEFAULT_NEGATIVE_PROMPT, LAION_CLIP_H, MeissonicModel
from bench.models.meissonic_transformer import rope_image_ids
from mgt_common.errors import ConfigError, MissingWeightsError
from samplers.protocol import MaskedTokenModel, take_rows

REFERENCE_NEGATIVE = ("worst quality, low quality, low res, blurry, distortion, watermark, logo, signature, text, "
                      "jpeg artifacts, signature, sketch, duplicate, ugly, identifying mark")


@pytest.fixture(scope="module")
def m1024():
    # height 1024 (the checkpoint's only height), a narrow width keeps the VQ decode cheap
    return MeissonicModel(path=str(tiny_checkpoint("meissonic-1024")), text_encoder=str(laion_clip()), device="cpu",
                          height=1024, width=64)


@pytest.fixture(scope="module")
def m512():
    return MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), device="cpu", dtype="float32", height=128)


def test_protocol_metadata_and_reference_defaults(m1024, m512):
    assert isinstance(m1024, MaskedTokenModel)
    assert m1024.mask_token_id == 39 and m1024.codebook_size == 32  # scheduler config; logits channels
    assert m1024.token_grid() == (64, 4) and m512.token_grid() == (8, 8)
    assert (m1024.default_steps, m1024.default_guidance_scale) == (64, 9.0)
    assert (m512.default_steps, m512.default_guidance_scale) == (48, 9.0)
    assert DEFAULT_NEGATIVE_PROMPT == REFERENCE_NEGATIVE == m1024.default_negative_prompt
    info = m1024.describe()
    assert info["dtype"] == "fp32" and info["weights"]["source"] == "local" and len(info["weights"]["fingerprint"]) == 16
    assert info["text_encoder"]["path"] == str(laion_clip().resolve())  # a separate (laion-style, full CLIP) model
    assert m512.describe()["text_encoder"]["path"] == str(tiny_checkpoint("meissonic-512").resolve())  # its own
    identity = m1024.identity()  # for unit keys: content, not location
    assert identity["weights"] == {"fingerprint": info["weights"]["fingerprint"]} and "device" not in identity
    assert identity["dtype"] == "fp32" and identity["height"] == 1024


def reference_text_features(model, texts):
    """What the reference pipeline computes: tokenizer(max_length 77) → text_embeds, hidden_states[-2]."""
    tok = model.prompts.tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model.prompts.text_encoder(tok.input_ids, output_hidden_states=True)
    return out.text_embeds, out.hidden_states[-2]


def test_logits_run_one_forward_with_the_reference_inputs(m1024):
    prompts = ["a red cube", "a cat in the snow"]
    cond = m1024.encode(prompts, REFERENCE_NEGATIVE)
    seen = {}

    def capture(module, args, kwargs):
        seen.update(kwargs, tokens=args[0], calls=seen.get("calls", 0) + 1)

    def keep(module, args, kwargs, out):
        seen["out"] = out.sample

    handles = [m1024.transformer.register_forward_pre_hook(capture, with_kwargs=True),
               m1024.transformer.register_forward_hook(keep, with_kwargs=True)]
    try:
        tokens = torch.randint(0, 40, (2, 256))
        c, u = m1024.logits(tokens, cond, step=5, total_steps=64)
    finally:
        for h in handles:
            h.remove()
    assert seen["calls"] == 1  # one batched forward for [uncond; cond]
    pooled, hidden = reference_text_features(m1024, [REFERENCE_NEGATIVE, REFERENCE_NEGATIVE, *prompts])
    torch.testing.assert_close(seen["pooled_projections"], pooled)  # [uncond; cond]
    torch.testing.assert_close(seen["encoder_hidden_states"], hidden)
    assert torch.equal(seen["tokens"], torch.cat([tokens, tokens]).view(4, 64, 4))
    assert seen["timestep"].tolist() == [64 - 1 - 5] and seen["timestep"].dtype == torch.long
    assert seen["micro_conds"].tolist() == [[64.0, 1024.0, 0.0, 0.0, 6.0]] * 4  # width first
    assert torch.equal(seen["img_ids"], rope_image_ids(64, 4, 1024)) and seen["img_ids"].shape == (64, 3)
    assert seen["txt_ids"].shape == (77, 3) and not seen["txt_ids"].any()
    out = seen["out"].reshape(4, 32, 256).transpose(1, 2)
    assert c.dtype == u.dtype == torch.float32 and c.shape == (2, 256, 32)
    torch.testing.assert_close(u, out[:2])
    torch.testing.assert_close(c, out[2:])


def test_conditional_only_forward_and_row_slicing(m1024):
    cond = m1024.encode(["a", "b", "c"])
    tokens = torch.full((3, 256), m1024.mask_token_id)
    c_only, none = m1024.logits(tokens, cond, 0, 4, with_uncond=False)
    assert none is None and c_only.shape == (3, 256, 32)
    c_only.add_(0.0)  # plain tensors (not inference-mode ones): samplers may edit logits in place
    c_full, _ = m1024.logits(tokens, cond, 0, 4)
    torch.testing.assert_close(c_only, c_full, rtol=1e-4, atol=1e-5)
    sub = take_rows(cond, [2])
    c_sub, _ = m1024.logits(tokens[2:], sub, 0, 4)
    torch.testing.assert_close(c_sub[0], c_full[2], rtol=1e-4, atol=1e-5)


def test_each_prompt_is_encoded_once(m512):
    calls = []
    handle = m512.prompts.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        first = m512.encode(["cached one", "cached two", "cached one"], "a negative")
        assert len(calls) == 3  # two prompts + the negative
        again = m512.encode(["cached two"], "a negative")
        assert len(calls) == 3
    finally:
        handle.remove()
    torch.testing.assert_close(first["pooled"][0], first["pooled"][2])
    torch.testing.assert_close(again["hidden"][0], first["hidden"][1])
    empty = m512.encode(["x"])  # no negative prompt: "" as in the reference pipeline
    pooled, _ = reference_text_features(m512, [""])
    torch.testing.assert_close(empty["negative_pooled"][0], pooled[0])


def test_decode_gives_images_in_unit_range(m1024, m512):
    images = m512.decode(torch.randint(0, 32, (2, 64)), (8, 8))
    assert images.shape == (2, 3, 128, 128) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0
    assert m1024.decode(torch.randint(0, 32, (1, 256)), (64, 4)).shape == (1, 3, 1024, 64)
    with pytest.raises(ValueError, match="codebook"):
        m512.decode(torch.full((1, 64), m512.mask_token_id), (8, 8))


def test_half_precision_loading_upcasts_the_fp16_vq_only():
    fp16 = MeissonicModel(path=str(tiny_checkpoint("meissonic-1024-fp16")), text_encoder="checkpoint", device="cpu",
                          dtype="float16", height=1024, width=32)
    assert fp16.describe()["variant"] == "fp16"  # only the .fp16 files exist
    assert fp16.transformer.dtype == torch.float16 and fp16.vqvae.dtype == torch.float32  # force_upcast
    c, u = fp16.logits(torch.full((1, 128), 39), fp16.encode(["a"]), 0, 64)
    assert c.dtype == torch.float32 and torch.isfinite(c).all() and torch.isfinite(u).all()
    assert fp16.decode(c.argmax(-1), (64, 2)).dtype == torch.float32
    bf16 = MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), device="cpu", dtype="bf16", height=64)
    assert bf16.transformer.dtype == bf16.vqvae.dtype == torch.bfloat16  # the reference upcasts fp16 only


def test_resolution_rules_of_the_reference(m1024, m512):
    with pytest.raises(ConfigError, match="height = 1024"):
        m1024.token_grid(512, 512)
    with pytest.raises(ConfigError, match="other than 1024"):
        m512.token_grid(1024, 1024)
    with pytest.raises(ConfigError, match="multiples of 32"):
        m1024.token_grid(1024, 48)
    assert m512.token_grid(256, 128) == (16, 8) and m512.micro_conditions(1).tolist() == [[128, 256, 0, 0, 6]]
    m512.token_grid(128, 128)


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="unknown parameter 'steps'.*text_encoder"):
        MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), steps=3)
    with pytest.raises(ConfigError, match="dtype"):
        MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), dtype="int8")


def test_missing_weights_fail_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache, whatever this machine holds
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        MeissonicModel(path="MeissonFlow/Meissonic", device="cpu")
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert "MeissonFlow/Meissonic" in message and "hf download MeissonFlow/Meissonic" in message
    assert "HF_HUB_OFFLINE" in message and "local directory" in message and str(tmp_path) in message
    # the default text encoder of the 1024 family is laion's CLIP-H: missing here, and said so
    with pytest.raises(MissingWeightsError, match=LAION_CLIP_H.replace("/", "/")):
        MeissonicModel(path=str(tiny_checkpoint("meissonic-1024")), device="cpu", height=1024, width=32)
