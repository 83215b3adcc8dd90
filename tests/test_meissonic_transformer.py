"""The Meissonic transformer: published keys and shapes, config loading, and the forward conventions.

Conventions are checked against values computed by hand from the reference (shared/reference
meissonic-and-design-choices.md §1, §4.3, §5), not against our own helpers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model_fixtures import tiny_checkpoint

from bench.models.meissonic_transformer import (
    MeissonicTransformer2DModel,
    SingleTransformerBlock,
    TransformerBlock,
    embed_micro_conditions,
    rope_image_ids,
    text_position_ids,
)

DATA = Path(__file__).parent / "data"

#: transformer/config.json of MeissonFlow/Meissonic as published (reference §4.2).
PUBLISHED_CONFIG = {
    "_class_name": "Transformer2DModel",
    "_diffusers_version": "0.30.2",
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],
    "codebook_size": 8192,
    "downsample": True,
    "guidance_embeds": False,
    "in_channels": 64,
    "joint_attention_dim": 1024,
    "num_attention_heads": 8,
    "num_layers": 14,
    "num_single_layers": 28,
    "patch_size": 1,
    "pooled_projection_dim": 1024,
    "upsample": True,
    "vocab_size": 8256,
}

TINY = dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
            pooled_projection_dim=32, axes_dims_rope=(4, 6, 6), codebook_size=32, vocab_size=40)


def published_keys() -> list[tuple[str, str]]:
    lines = (DATA / "meissonic-1024-transformer-state-dict.txt").read_text().splitlines()
    return [tuple(line.split()) for line in lines if line.strip() and not line.startswith("#")]


def test_full_size_state_dict_has_exactly_the_published_keys_and_shapes(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_CONFIG))
    config = MeissonicTransformer2DModel.load_config(tmp_path)
    with torch.device("meta"):  # 1 B parameters, no memory
        model = MeissonicTransformer2DModel.from_config(config)
    got = [(key, "x".join(map(str, t.shape))) for key, t in model.state_dict().items()]
    expected = published_keys()
    assert len(expected) == 867
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:10]
    assert got == expected  # same order too: module creation order follows the checkpoint
    assert sum(t.numel() for t in model.state_dict().values()) == 1_006_946_304


def test_published_class_name_loads_our_class_with_its_weights():
    root = tiny_checkpoint("meissonic-512")
    assert json.loads((root / "transformer" / "config.json").read_text())["_class_name"] == "Transformer2DModel"
    model = MeissonicTransformer2DModel.from_pretrained(root, subfolder="transformer")
    from safetensors.torch import load_file

    saved = load_file(root / "transformer" / "diffusion_pytorch_model.safetensors")
    assert set(saved) == set(model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert model.down_block.downsample is None and model.up_block.upsample is None


def test_fp16_variant_file_loads():
    root = tiny_checkpoint("meissonic-1024-fp16")
    assert not (root / "transformer" / "diffusion_pytorch_model.safetensors").exists()
    model = MeissonicTransformer2DModel.from_pretrained(root, subfolder="transformer", variant="fp16",
                                                        torch_dtype=torch.float16)
    assert model.dtype == torch.float16
    assert model.down_block.downsample.conv.weight.shape == (32, 32, 2, 2)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="axes_dims_rope"):
        MeissonicTransformer2DModel(**{**TINY, "axes_dims_rope": (4, 4, 4)})
    with pytest.raises(ValueError, match="pooled_projection_dim"):
        MeissonicTransformer2DModel(**{**TINY, "pooled_projection_dim": 24})


def _rotary(n_text: int, n_image: int):
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = torch.cat([text_position_ids(n_text), rope_image_ids(2, n_image // 2, 512)])
    return FluxPosEmbed(10000, [4, 6, 6])(ids)


def test_blocks_compute_exactly_what_diffusers_flux_blocks_compute():
    """The dual- and single-stream blocks are Flux's (reference §4.3): same weights → same outputs."""
    from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock

    torch.manual_seed(0)
    x, c, temb = torch.randn(2, 8, 32), torch.randn(2, 5, 32), torch.randn(2, 32)
    rotary = _rotary(5, 8)
    ours, ref = TransformerBlock(32, 2, 16).eval(), FluxTransformerBlock(32, 2, 16).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        (c1, x1), (c2, x2) = ours(x, c, temb, rotary), ref(x, c, temb, rotary)
    torch.testing.assert_close(x1, x2, rtol=0, atol=1e-6)
    torch.testing.assert_close(c1, c2, rtol=0, atol=1e-6)

    ours, ref = SingleTransformerBlock(32, 2, 16).eval(), FluxSingleTransformerBlock(32, 2, 16).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        joint = ours(torch.cat([c, x], dim=1), temb, rotary)
        c2, x2 = ref(x, c, temb, rotary)
    torch.testing.assert_close(joint, torch.cat([c2, x2], dim=1), rtol=0, atol=1e-6)


def sinusoid_by_hand(value: float, dim: int = 256) -> torch.Tensor:
    """cos-first sinusoid, frequencies exp(−ln(10000)·k/(dim/2)), computed in float64."""
    half = dim // 2
    freqs = [math.exp(-math.log(10000) * k / half) for k in range(half)]
    return torch.tensor([math.cos(value * f) for f in freqs] + [math.sin(value * f) for f in freqs], dtype=torch.float64)


def _inputs(model, batch=2, rows=4, cols=4, height=512, step_index=63):
    torch.manual_seed(1)
    return dict(
        hidden_states=torch.randint(0, 40, (batch, rows, cols)),
        encoder_hidden_states=torch.randn(batch, 77, 24).to(model.dtype),
        pooled_projections=torch.randn(batch, 32).to(model.dtype),
        timestep=torch.tensor([step_index]),
        img_ids=rope_image_ids(rows, cols, height),
        txt_ids=text_position_ids(77),
        micro_conds=torch.tensor([[height, height, 0, 0, 6]] * batch, dtype=model.dtype),
    )


@pytest.mark.parametrize("dtype, expected", [(torch.float32, 63000.0), (torch.bfloat16, 62976.0)])
def test_timestep_is_the_step_index_times_1000_after_the_dtype_cast(dtype, expected):
    """Reference §1: timestep = integer T−1−i, multiplied by 1000 inside, after casting to the model
    dtype (bf16 cannot hold 63000: it becomes 62976, as in the reference)."""
    model = MeissonicTransformer2DModel(**TINY).to(dtype).eval()
    seen = {}
    model.time_text_embed.time_proj.register_forward_hook(lambda m, args, out: seen.update(t=args[0], emb=out))
    with torch.no_grad():
        model(**_inputs(model, step_index=63))
    assert seen["t"].tolist() == [expected]
    torch.testing.assert_close(seen["emb"][0].double(), sinusoid_by_hand(expected), rtol=0, atol=5e-3)


def test_micro_conditions_are_five_256d_sinusoids_after_the_pooled_embedding():
    values = [1024.0, 1024.0, 0.0, 0.0, 6.0]  # [width, height, crop top, crop left, score]
    got = embed_micro_conditions(torch.tensor([values]))
    assert got.shape == (1, 1280)
    expected = torch.cat([sinusoid_by_hand(v) for v in values])
    torch.testing.assert_close(got[0].double(), expected, rtol=0, atol=5e-4)

    model = MeissonicTransformer2DModel(**TINY).eval()
    seen = {}
    model.cond_embed.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    inputs = _inputs(model)
    with torch.no_grad():
        model(**inputs)
    assert seen["x"].shape == (2, 32 + 1280)
    torch.testing.assert_close(seen["x"][:, :32], inputs["pooled_projections"])  # pooled first, then micro-conds
    torch.testing.assert_close(seen["x"][0, 32:].double(), torch.cat([sinusoid_by_hand(v) for v in [512, 512, 0, 0, 6]]),
                               rtol=0, atol=5e-4)


def test_rope_ids_follow_the_height_1024_special_case():
    # 1024 px: VQ grid 64x64, ids for the 32x32 grid after the 2x down-sampling
    ids = rope_image_ids(64, 64, 1024)
    assert ids.shape == (1024, 3)
    assert ids[0].tolist() == [0, 0, 0] and ids[1].tolist() == [0, 0, 1] and ids[32].tolist() == [0, 1, 0]
    assert ids[-1].tolist() == [0, 31, 31]
    # any other height: ids for twice the latent grid halved, i.e. the latent grid (512 px: 32x32)
    ids = rope_image_ids(32, 32, 512)
    assert ids.shape == (1024, 3) and ids[-1].tolist() == [0, 31, 31]
    # 768 px on the down-sampling checkpoint: 48x48 ids for 24x24 tokens, refused as in the reference
    model = MeissonicTransformer2DModel(**TINY, downsample=True, upsample=True).eval()
    with pytest.raises(ValueError, match="1024"):
        with torch.no_grad():
            model(**_inputs(model, rows=48, cols=48, height=768))


def test_rope_frequencies_by_hand():
    """Per axis (16/56/56 in the real model; 4/6/6 here): θ=1e4, angle = pos / θ^(2j/d), each pair repeated."""
    model = MeissonicTransformer2DModel(**TINY)
    cos, sin = model.pos_embed(torch.tensor([[0.0, 3.0, 5.0]]))
    expected_cos, expected_sin = [], []
    for pos, dim in zip([0.0, 3.0, 5.0], [4, 6, 6]):
        for j in range(dim // 2):
            angle = pos / 10000 ** (2 * j / dim)
            expected_cos += [math.cos(angle)] * 2
            expected_sin += [math.sin(angle)] * 2
    torch.testing.assert_close(cos[0].double(), torch.tensor(expected_cos, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(sin[0].double(), torch.tensor(expected_sin, dtype=torch.float64), rtol=0, atol=1e-6)


def test_logits_cover_the_codebook_only_and_attention_is_sdpa(monkeypatch):
    import torch.nn.functional as F

    model = MeissonicTransformer2DModel(**TINY, downsample=True, upsample=True).eval()
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(a[0].shape) or sdpa(*a, **k))
    inputs = _inputs(model, rows=16, cols=8, height=1024)  # the 1024 rule keys on the height only
    inputs["hidden_states"][:, :10] = 39  # mask id = vocab_size − 1 is a valid input
    with torch.no_grad():
        out = model(**inputs).sample
    assert out.shape == (2, 32, 16, 8)  # codebook_size channels (not vocab_size) on the VQ grid
    assert calls == [(2, 2, 77 + 8 * 4, 16)] * 2  # one dual + one single block, joint [text; image] sequence
