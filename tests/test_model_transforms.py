"""Model-side choices (issue 13): ToMe-MGT, torchao quantization, feature caching, PAG.

On the tiny random Meissonic (1024 layout, 1024 x 64 px: a 32 x 2 grid of image tokens inside the
network) and aMUSEd checkpoints, on the CPU: neutral settings equal the plain model bit for bit, the
model is restored after a variant, images do not depend on the batch, the merge follows the
bipartite-matching formula on a hand-computed case, and networkless backends refuse at config time.
"""
from __future__ import annotations

import pytest
import torch

from model_fixtures import laion_clip, tiny_checkpoint

from mgt_common.errors import ConfigError
from samplers.components import build_component
from samplers.engine import SamplerEngine
from samplers.model_transforms import apply_model_transforms
from samplers.protocol import MaskedTokenModel
from samplers.variant import build_variant

import bench.models  # noqa: F401  (registers the model_transform implementations)
from bench.models.transforms.tome import bipartite_soft_matching_2d, merged_dual_block_forward

STEPS = 4


@pytest.fixture(scope="module")
def meissonic():
    from bench.models.meissonic import MeissonicModel

    return MeissonicModel(path=str(tiny_checkpoint("meissonic-1024")), text_encoder=str(laion_clip()), device="cpu",
                          dtype="float32", height=1024, width=64)


@pytest.fixture(scope="module")
def amused():
    from bench.models.amused import AmusedModel

    return AmusedModel(path=str(tiny_checkpoint("amused")), device="cpu", dtype="float32")


def generate(model, spec: dict, seeds=(0, 1), prompts=("a red cube", "a cat in the snow")) -> torch.Tensor:
    variant = build_variant("v", {"v": {"base": "vanilla", **spec}})
    for component in variant.components():
        check = getattr(component, "check_model", None)
        if check is not None:
            check(model)
    with apply_model_transforms(model, variant.model_transforms):
        generation = SamplerEngine(model).generate(variant, model.encode(list(prompts), None), list(seeds),
                                                   model.token_grid(), STEPS, 3.0)
    return generation.tokens


def probe_logits(model, spec: list[dict]) -> torch.Tensor:
    rows, cols = model.token_grid()
    tokens = torch.randint(0, model.codebook_size, (2, rows * cols), generator=torch.Generator().manual_seed(0))
    tokens[:, ::3] = model.mask_token_id
    transforms = [build_component("model_transform", s) for s in spec]
    with apply_model_transforms(model, transforms):
        cond, uncond = model.logits(tokens, model.encode(["a red cube", "a cat"], None), 1, STEPS)
    return torch.cat([cond, uncond])


NEUTRAL = [{"name": "tome", "ratio": 0.0}, {"name": "feature-cache", "interval": 1}, {"name": "quantize", "scheme": "none"}]
ACTIVE = [{"name": "tome", "ratio": 0.5}, {"name": "quantize", "scheme": "int8-dynamic"}]


@pytest.mark.parametrize("backend", ["meissonic", "amused"])
def test_neutral_settings_equal_the_plain_model_and_active_ones_change_it(backend, request):
    model = request.getfixturevalue(backend)
    plain = generate(model, {})
    neutral = {"model_transforms": NEUTRAL, "guidance": {"name": "pag", "pag_scale": 0.0, "layers": [0]}}
    assert torch.equal(generate(model, neutral), plain)
    base = probe_logits(model, [])
    for spec in NEUTRAL:
        assert torch.equal(probe_logits(model, [spec]), base), spec
    for spec in ACTIVE:  # the non-neutral settings do reach the network ...
        assert not torch.equal(probe_logits(model, [spec]), base), spec
    assert torch.equal(probe_logits(model, []), base)  # ... and leave it as it was


def test_feature_cache_reuses_residuals_between_refreshes(meissonic):
    rows, cols = meissonic.token_grid()
    tokens = torch.full((1, rows * cols), meissonic.mask_token_id)
    cond = meissonic.encode(["a cat"], None)
    other = tokens.clone()
    other[:, :40] = 3
    cache = build_component("model_transform", {"name": "feature-cache", "interval": 2, "blocks": "all"})
    with apply_model_transforms(meissonic, [cache]):
        first = meissonic.logits(tokens, cond, 0, STEPS)[0]  # refresh: the plain network
        reused = meissonic.logits(other, cond, 1, STEPS)[0]  # every block returns x + Δ(step 0)
        refreshed = meissonic.logits(other, cond, 2, STEPS)[0]
    plain_first = meissonic.logits(tokens, cond, 0, STEPS)[0]
    plain_other = meissonic.logits(other, cond, 2, STEPS)[0]
    assert torch.equal(first, plain_first) and torch.equal(refreshed, plain_other)
    assert not torch.allclose(reused, plain_other)


def test_batch_independence_under_transforms(meissonic):
    spec = {"model_transforms": [{"name": "tome", "ratio": 0.25}, {"name": "feature-cache", "interval": 2},
                                 {"name": "quantize", "scheme": "int8-weight-only"}],
            "guidance": {"name": "pag", "pag_scale": 2.0, "layers": [0]}}
    together = generate(meissonic, spec, seeds=(0, 1, 2), prompts=("a red cube", "a cat", "a dog on a hill"))
    alone = generate(meissonic, spec, seeds=(1,), prompts=("a cat",))
    assert torch.equal(together[1:2], alone)


def test_bipartite_matching_merges_the_most_similar_source_by_mean():
    # a 2x2 grid, one window, dst = top-left (no random draw); sources 1, 2, 3 with cosine 0.6, 0, ~0.995 to dst
    x = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.1]]])
    merge, unmerge = bipartite_soft_matching_2d(x, 2, 2, r=1, stride=2, generator=None)
    merged = merge(x)
    dst = (x[0, 0] + x[0, 3]) / 2
    assert torch.allclose(merged, torch.stack([x[0, 1], x[0, 2], dst])[None])
    assert torch.allclose(unmerge(merged), torch.stack([dst, x[0, 1], x[0, 2], dst])[None])
    same, back = bipartite_soft_matching_2d(x, 2, 2, r=0)
    assert same(x) is x and back(x) is x


def test_merged_block_forward_with_identity_maps_equals_the_block(meissonic):
    torch.manual_seed(0)
    network = meissonic.transformer
    block = network.transformer_blocks[0]
    dim = network.inner_dim
    hidden, text, temb = torch.randn(2, 64, dim), torch.randn(2, 77, dim), torch.randn(2, dim)
    ids = torch.cat([torch.zeros(77, 3), meissonic._img_ids])
    rotary = network.pos_embed(ids)
    expected = block(hidden, text, temb, rotary)
    got = merged_dual_block_forward(block, hidden, text, temb, rotary, lambda t: t, lambda t: t)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_pag_adds_one_counted_pass_per_step_and_follows_its_formula(meissonic, amused):
    variant = build_variant("p", {"p": {"guidance": {"name": "pag", "pag_scale": 2.0, "layers": [0]}}})
    assert variant.forward_passes(STEPS) == 2 * STEPS
    generation = SamplerEngine(amused).generate(variant, amused.encode(["a cat"], None), [0], amused.token_grid(),
                                                STEPS, 3.0)
    assert generation.forward_passes.tolist() == [2 * STEPS]
    # aMUSEd's perturbed self-attention is the identity map: to_out(to_v(x))
    attn = amused.transformer.transformer_layers[0].attn1
    x = torch.randn(2, 16, attn.to_v.in_features)
    with amused.perturbed_attention([0]):
        assert torch.allclose(attn(x), attn.to_out[0](attn.to_v(x)))
    assert not torch.allclose(attn(x), attn.to_out[0](attn.to_v(x)))
    # Meissonic's joint attention: the perturbed pass changes the logits, and only inside the context
    rows, cols = meissonic.token_grid()
    tokens = torch.full((1, rows * cols), meissonic.mask_token_id)
    cond = meissonic.encode(["a cat"], None)
    plain = meissonic.logits(tokens, cond, 0, STEPS, with_uncond=False)[0]
    with meissonic.perturbed_attention([0]):
        perturbed = meissonic.logits(tokens, cond, 0, STEPS, with_uncond=False)[0]
    assert not torch.allclose(plain, perturbed)
    assert torch.equal(meissonic.logits(tokens, cond, 0, STEPS, with_uncond=False)[0], plain)


@pytest.mark.parametrize("spec, message", [
    ({"name": "tome", "ratio": 0.9}, "ratio must be in"),
    ({"name": "tome", "blocks": "middle"}, "blocks must be one of"),
    ({"name": "feature-cache", "interval": 0}, "interval must be >= 1"),
    ({"name": "quantize", "scheme": "int3"}, "scheme must be one of"),
])
def test_bad_parameters_fail_with_the_parameter_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_component("model_transform", spec)


def test_backends_refuse_what_they_cannot_carry(meissonic, amused):
    with pytest.raises(ConfigError, match="float8-dynamic.*does not run on cpu"):
        build_component("model_transform", {"name": "quantize", "scheme": "float8-dynamic"}).check_model(meissonic)
    with pytest.raises(ConfigError, match="'single' is not a block group of this amused"):
        build_component("model_transform", {"name": "tome", "blocks": "single"}).check_model(amused)
    with pytest.raises(ConfigError, match="out of range"):
        build_component("guidance", {"name": "pag", "layers": [5]}).check_model(meissonic)


def test_synthetic_world_refuses_model_side_choices_before_writing(tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "run"
    for variant in ("tome", "pag"):
        # the exact world (the default run's synthetic-trained has a network and carries them)
        code = main(["--model", "synthetic-exact", "--samplers", f"vanilla,{variant}", "--limit", "2", "--steps", "2",
                     "--out", str(out)])
        assert code == 2 and not out.exists()
        err = capsys.readouterr().err
        assert f"variants.{variant}" in err and "synthetic" in err and "Traceback" not in err


def test_efficient_inference_config_runs_on_tiny_meissonic(tmp_path, capsys):
    """The shipped config, shrunk (tiny checkpoint, 4 steps, 2 prompts, CPU, one variant of each kind)."""
    import json

    import pandas as pd

    from bench.cli import main
    from bench.config import CONFIG_DIR, tomllib
    from test_meissonic_e2e import shrunk, write_config

    config, plugin = shrunk("efficient-inference", tmp_path, {"path": str(tiny_checkpoint("meissonic-1024")),
                                                             "text_encoder": str(laion_clip())}, height=1024, width=64)
    data = tomllib.loads(config.read_text())
    shipped = tomllib.loads((CONFIG_DIR / "efficient-inference.toml").read_text())["samplers"]
    assert {"tome", "quant-int4", "quant-w4a8", "quant-fp8", "cache-2", "pag"} <= set(shipped)
    data["samplers"] = ["vanilla", "tome-0.5", "quant-w8a8", "cache-2", "pag"]  # one of each kind: CI time
    data["variants"] = {"pag": {"guidance": {"name": "pag", "pag_scale": 3.0, "layers": [0]}}}  # the tiny net has 1 MM block
    write_config(config, data)
    assert main(["--config", str(config), "--plugin", str(plugin)]) == 0
    printed = capsys.readouterr().out
    assert "MiB / image" in printed and "win rate" in printed and "tome-0.5" in printed
    run = tmp_path / "run"
    samples = pd.read_csv(run / "samples.csv")
    assert set(samples["variant"]) == set(data["samplers"])
    assert (samples["peak_mib"] > 0).all() and (samples["flops"] > 0).all()
    passes = samples.groupby("variant")["forward_passes"].first()
    assert passes["pag"] == 8 and passes["tome-0.5"] == 4 and passes["quant-w8a8"] == 4
    assert samples.groupby("variant")["unit_key"].apply(frozenset).nunique() == len(data["samplers"])  # in the key
    assert "MiB / image" in (run / "report.md").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["variants"]["tome-0.5"]["model_side"][0].startswith("tome: ")


class _PerturbableLogits(MaskedTokenModel):
    """Fixed logits: ℓ_u, ℓ_c, and ℓ̂_c while `perturbed_attention` is active (for PAG's formula)."""

    mask_token_id, codebook_size, name = 4, 4, "fake"

    def __init__(self):
        self.perturbed = False
        self.uncond = torch.tensor([[[0.0, 0.0, 0.0, 0.0]]])
        self.cond = torch.tensor([[[1.0, 0.5, 0.0, 0.0]]])
        self.cond_perturbed = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])

    def token_grid(self, *_):
        return 1, 1

    def encode(self, prompts, negative_prompt=None):
        return {"x": torch.zeros(len(prompts), 1)}

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        cond = (self.cond_perturbed if self.perturbed else self.cond).clone()
        return cond, (self.uncond.clone() if with_uncond else None)

    def perturbed_attention(self, layers):
        import contextlib

        @contextlib.contextmanager
        def scope():
            self.perturbed = True
            try:
                yield
            finally:
                self.perturbed = False

        return scope()


def test_pag_combines_logits_as_the_paper_on_fixed_inputs():
    # w = 1.2: CFG alone gives [1.2, 0.6, 0, 0]; with s = 2 the PAG term 2·(ℓ_c − ℓ̂_c) = [0, 1, 0, 0]
    # makes token 1 the argmax: ℓ = [1.2, 1.6, 0, 0].
    model = _PerturbableLogits()
    for scale, expected in ((0.0, 0), (2.0, 1)):
        variant = build_variant("p", {"p": {"guidance": {"name": "pag", "pag_scale": scale, "layers": [0]},
                                            "token_sampler": "greedy"}})
        generation = SamplerEngine(model).generate(variant, model.encode(["x"]), [0], (1, 1), 1, 1.2)
        assert generation.tokens.tolist() == [[expected]]
        assert generation.forward_passes.tolist() == [1 if scale == 0 else 2]


def test_trained_world_feature_cache_is_batch_independent_with_pag():
    """The world's Meissonic-structured network runs a batch as fixed-size chunks: the feature cache must
    reuse each chunk's own rows (entries keyed by call within a step), and PAG's hook must be there.
    Five images = ten CFG rows = two chunks of eight; the previous cache mixed the chunks' entries."""
    from bench.models.registry import MODELS

    model = MODELS.get("synthetic-trained")()
    prompts = [p for _, p, _ in model.grammar.prompt_set(5, seed=3)]
    spec = {"model_transforms": [{"name": "feature-cache", "interval": 2, "blocks": "all"}],
            "guidance": {"name": "pag", "pag_scale": 2.0, "layers": [0]}}
    together = generate(model, spec, seeds=range(5), prompts=prompts)
    alone = generate(model, spec, seeds=(3,), prompts=prompts[3:4])
    assert torch.equal(together[3:4], alone)


def test_compiled_transformer_refuses_model_side_choices():
    """compile = true with a model-side choice fails at config time (exit 2) instead of running a graph
    traced before the transform rewrote the blocks."""
    from types import SimpleNamespace

    import pytest

    from bench.preflight import check_model_side
    from mgt_common.errors import ConfigError
    from samplers.variant import build_variant

    model = SimpleNamespace(compiled=SimpleNamespace(enabled=True))
    with pytest.raises(ConfigError, match="compiled transformer"):
        check_model_side({"tome": build_variant("tome")}, model)
    check_model_side({"vanilla": build_variant("vanilla")}, model)  # sampler-only variants stay allowed
