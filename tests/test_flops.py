"""Transformer FLOPs and row evaluations per image (bench/flops.py, samplers/cost.py).

On the tiny random Meissonic: torch's FlopCounterMode, with the formulas bench/flops.py registers,
counts exactly a hand count of the network's matmuls, convolutions and attention; counting leaves every
token as it was; rows by kind and FLOPs follow CFG, conditional-only steps, PAG's perturbed pass and a
self-critic's critic pass; token merging and feature caching show their saving in FLOPs on the tiny
Meissonic and on the trained world.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from model_fixtures import laion_clip, tiny_checkpoint

import bench.models  # noqa: F401  (registers the model transforms)
from bench.flops import FlopMeter, count_flops
from samplers.engine import SamplerEngine
from samplers.model_transforms import apply_model_transforms
from samplers.variant import build_variant

STEPS = 4


@pytest.fixture(scope="module")
def meissonic():
    from bench.models.meissonic import MeissonicModel

    return MeissonicModel(path=str(tiny_checkpoint("meissonic-1024")), text_encoder=str(laion_clip()), device="cpu",
                          dtype="float32", height=1024, width=64)


def test_cpu_attention_kernel_is_counted_with_torchs_sdpa_formula():
    """torch 2.14 counts 0 for the CPU SDPA kernel on its own; registered, it is 4·B·H·S_q·S_k·D."""
    q, k, v = (torch.randn(2, 3, 10, 16) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v)
        F.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(10, 10))
    assert counter.get_total_flops() == 2 * 4 * 2 * 3 * 10 * 10 * 16


def test_int8_matmul_is_counted_as_a_matmul():
    a, b = torch.randint(-8, 8, (32, 64), dtype=torch.int8), torch.randint(-8, 8, (64, 16), dtype=torch.int8)
    with FlopCounterMode(display=False) as counter:
        torch._int_mm(a, b)
    assert counter.get_total_flops() == 2 * 32 * 64 * 16


def hand_count(config, rows: int, grid: tuple[int, int], text: int = 77) -> int:
    """FLOPs of one call of `MeissonicTransformer2DModel` on `rows` rows, from its config alone: 2·m·k·n per
    matmul (linear, 1×1 and strided convolution, as torch counts them) and 4·H·S²·D per attention."""
    w, heads, head_dim = (config.num_attention_heads * config.attention_head_dim, config.num_attention_heads,
                          config.attention_head_dim)
    full = grid[0] * grid[1]
    image = full // 4 if config.downsample else full
    seq = text + image

    def linear(tokens, fan_in, fan_out):
        return 2 * tokens * fan_in * fan_out

    attention = 4 * heads * seq * seq * head_dim
    per_row = (linear(1, 5 * 256 + config.pooled_projection_dim, w) + linear(1, w, w)  # cond_embed (micro-conds)
               + 2 * linear(1, w, w)  # text_embedder of time_text_embed
               + linear(text, config.joint_attention_dim, w)  # context_embedder
               + linear(full, w, w)  # token embedding's 1×1 conv
               + 2 * linear(image, 4 * w, w) * (1 if config.downsample else 0)  # 2×2 down conv, 2×2 up conv (transposed)
               + 2 * linear(image, w, w)  # project_to_hidden, project_from_hidden
               + linear(full, w, w) + linear(full, w, config.codebook_size))  # MLM head's two 1×1 convs
    dual = (2 * linear(1, w, 6 * w)  # adaLN-Zero of both streams
            + 4 * linear(image, w, w) + 4 * linear(text, w, w)  # q, k, v, out of each stream
            + attention + 2 * linear(image, w, 4 * w) + 2 * linear(text, w, 4 * w))  # MLPs (w → 4w → w)
    single = linear(1, w, 3 * w) + linear(seq, w, 4 * w) + 3 * linear(seq, w, w) + attention + linear(seq, 5 * w, w)
    per_row += config.num_layers * dual + config.num_single_layers * single
    shared = linear(1, 256, w) + linear(1, w, w)  # the timestep embedding: one [1]-shaped timestep per call
    return rows * per_row + shared


def test_flop_count_of_the_tiny_meissonic_equals_a_hand_count(meissonic):
    rows, cols = meissonic.token_grid()
    tokens = torch.full((3, rows * cols), meissonic.mask_token_id)
    conditioning = meissonic.encode(["a red cube", "a cat", "a dog"], None)
    for with_uncond, network_rows in ((True, 6), (False, 3)):
        flops, ran = count_flops(lambda: meissonic.logits(tokens, conditioning, 0, STEPS, with_uncond),
                                 meissonic.transformer)
        assert ran == network_rows
        assert flops == hand_count(meissonic.transformer.config, network_rows, (rows, cols))


def generate(model, name_or_spec, meter=None, seeds=(0, 1), guidance=3.0):
    spec = name_or_spec if isinstance(name_or_spec, dict) else {"base": name_or_spec}
    variant = build_variant("v", {"v": spec})
    for component in variant.components():
        if hasattr(component, "check_model"):
            component.check_model(model)
    with apply_model_transforms(model, variant.model_transforms):
        return SamplerEngine(model, meter).generate(variant, model.encode(["a red cube", "a cat in the snow"][:len(seeds)],
                                                                          None), list(seeds), model.token_grid(), STEPS,
                                                    guidance)


@pytest.mark.parametrize("name", ["vanilla", "pag", "self-critic", "tome", "cache-2"])
def test_counting_flops_changes_no_token(meissonic, name):
    spec = {"base": name}
    if name == "pag":
        spec["guidance"] = {"name": "pag", "pag_scale": 3.0, "layers": [0]}  # the tiny net has one MM block
    plain = generate(meissonic, spec)
    meter = FlopMeter(meissonic)
    meter.use("v", counting=True)
    counted = generate(meissonic, spec, meter)
    assert torch.equal(counted.tokens, plain.tokens)
    assert torch.isnan(plain.flops).all() and (counted.flops > 0).all()  # no meter: not measured
    meter.use("v", counting=False)  # a later batch looks every call up: the same figures, no counting
    looked_up = generate(meissonic, spec, meter)
    assert torch.equal(looked_up.tokens, plain.tokens) and torch.equal(looked_up.flops, counted.flops)
    assert meter.live_counts == 0


def test_rows_and_flops_follow_what_each_call_computes(meissonic):
    """vanilla at w > 1: 2 rows a step; at w = 1 one; PAG adds a perturbed row a step; the self-critic a
    conditional row on every step but the last; FLOPs per image = rows × FLOPs per row."""
    rows, cols = meissonic.token_grid()
    per_row = hand_count(meissonic.transformer.config, 4, (rows, cols)) / 4  # the tests' batch: 2 images × 2 halves

    def run(spec, guidance=3.0):
        meter = FlopMeter(meissonic)
        meter.use("v", counting=True)
        return generate(meissonic, spec, meter, guidance=guidance)

    cfg = run({"base": "vanilla"})
    assert cfg.rows.tolist() == [[STEPS, STEPS, 0]] * 2
    assert cfg.flops.tolist() == pytest.approx([2 * STEPS * per_row] * 2, rel=1e-12)
    conditional = run({"base": "vanilla"}, guidance=1.0)
    assert conditional.rows.tolist() == [[STEPS, 0, 0]] * 2
    pag = run({"base": "pag", "guidance": {"name": "pag", "pag_scale": 3.0, "layers": [0]}})
    assert pag.rows.tolist() == [[STEPS, STEPS, STEPS]] * 2 and pag.forward_passes.tolist() == [2 * STEPS] * 2
    critic = run({"base": "self-critic"})
    assert critic.rows.tolist() == [[2 * STEPS - 1, STEPS, 0]] * 2
    # the critic's row costs a row of its own call (B rows: its shared timestep embedding over 2, not 4 rows)
    assert float(critic.flops[0]) == pytest.approx(float(cfg.flops[0]) * (2 * STEPS - 1 + STEPS) / (2 * STEPS),
                                                   rel=1e-3)


def test_token_merging_and_feature_caching_cost_fewer_flops_and_pag_more(meissonic):
    def flops(spec):
        meter = FlopMeter(meissonic)
        meter.use("v", counting=True)
        return float(generate(meissonic, spec, meter).flops[0])

    plain = flops({"base": "vanilla"})
    assert flops({"base": "tome", "model_transforms": [{"name": "tome", "ratio": 0.5, "blocks": "all"}]}) < plain
    for cache in ("feature-cache", "residual-cache"):
        cached = flops({"base": "vanilla", "model_transforms": [{"name": cache, "interval": 2, "blocks": "all"}]})
        assert cached < plain  # steps 1 and 3 of 4 skip the blocks' attention and MLPs
    assert flops({"base": "pag", "guidance": {"name": "pag", "pag_scale": 3.0, "layers": [0]}}) == pytest.approx(
        1.5 * plain, rel=1e-3)  # one perturbed row on top of two


def test_quantized_linears_count_the_same_flops(meissonic):
    """Every scheme that runs here reaches a counted kernel: dequantize + mm, int8 _int_mm, simulated W4A8."""
    pytest.importorskip("torchao")
    plain = None
    for scheme in ("none", "int8-weight-only", "int8-dynamic", "w4a8-dynamic", "float8-weight-only"):
        meter = FlopMeter(meissonic)
        meter.use("v", counting=True)
        value = float(generate(meissonic, {"base": "vanilla", "model_transforms": [
            {"name": "quantize", "scheme": scheme, "group_size": 32}]}, meter).flops[0])
        plain = value if plain is None else plain
        assert value == pytest.approx(plain, rel=1e-12), scheme


def test_a_call_the_warm_up_did_not_see_is_counted_as_it_runs(meissonic):
    meter = FlopMeter(meissonic)
    meter.use("v", counting=True)
    generate(meissonic, {"base": "vanilla"}, meter)
    meter.use("v", counting=False)
    longer = build_variant("v", {"v": {"base": "vanilla"}})
    generation = SamplerEngine(meissonic, meter).generate(longer, meissonic.encode(["a red cube"], None), [0],
                                                          meissonic.token_grid(), STEPS + 2, 3.0)
    assert meter.live_counts == 2 and not math.isnan(float(generation.flops[0]))


def test_world_runs_record_flops_and_rows_and_model_side_choices_show_in_flops(tmp_path):
    """The trained world through the harness: samples.csv has FLOPs and rows for every variant; token
    merging and both caches cost fewer FLOPs than vanilla, PAG more, quantization the same."""
    import pandas as pd

    from bench.config import load_config
    from bench.runner import Benchmark

    (tmp_path / "c.toml").write_text("""
name = "flops"
limit = 2
seeds = [0]
steps = 4
guidance = 3.0
samplers = ["vanilla", "tome", "cache-2", "residual-cache-2", "pag", "quant-int8"]
metrics = ["world-loglik"]
batch_size = 2
bootstrap = 100

[model]
name = "synthetic-trained"

[prompts]
source = "synthetic-world"
n = 2
""")
    Benchmark(load_config(str(tmp_path / "c.toml")), out=tmp_path / "run").run(report=False)
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert samples["flops"].notna().all() and (samples["flops"] > 0).all()
    flops = samples.groupby("variant")["flops"].mean()
    assert flops["tome"] < flops["vanilla"] and flops["cache-2"] < flops["vanilla"]
    assert flops["residual-cache-2"] < flops["vanilla"] and flops["quant-int8"] == flops["vanilla"]
    assert flops["pag"] == pytest.approx(1.5 * flops["vanilla"], rel=1e-9)
    rows = samples.groupby("variant")[["rows_conditional", "rows_unconditional", "rows_perturbed"]].first()
    assert rows.loc["vanilla"].tolist() == [4, 4, 0] and rows.loc["pag"].tolist() == [4, 4, 4]
