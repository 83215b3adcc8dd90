"""What model-side choices cost, measured as they run (docs/rundir.md, "Cost columns"; docs/catalogue.md,
"Model-side choices").

A quantized variant's peak memory is its own (the original weights leave the device and come back bit for
bit, at the same addresses); quantization runs torchao's packed layout where one exists and says
"simulated" where it does not; the feature cache is FORA/ToCa's form (current gates on cached ungated
outputs) and the residual form stays as residual-cache; batches run round robin over the variants
without changing a token, and the cost table reads seconds against the baseline in the same rounds.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from model_fixtures import laion_clip, tiny_checkpoint

import bench.models  # noqa: F401  (registers the model transforms)
from bench.generate import generate_units, interleaved
from bench.memory import tensor_bytes
from bench.models.transforms.offload import ALIGNMENT, ParkedNetwork
from bench.plan import Unit
from bench.prompts import Prompt
from bench.rundir.store import RunDirectory
from mgt_common.errors import ConfigError
from samplers.components import build_component
from samplers.model_transforms import apply_model_transforms
from samplers.variant import build_variant

STEPS = 4


@pytest.fixture(scope="module")
def meissonic():
    from bench.models.meissonic import MeissonicModel

    return MeissonicModel(path=str(tiny_checkpoint("meissonic-1024")), text_encoder=str(laion_clip()), device="cpu",
                          dtype="float32", height=1024, width=64)


def wide_meissonic(width: int = 512):
    """The tiny Meissonic's layout (1 MM + 2 single blocks, 64 × 4 tokens) at a width whose weights (~76 MB
    in float32) stand well above the resident set's noise, with a random CLIP and the tiny VQ."""
    from transformers import CLIPTextModelWithProjection

    from bench.models.meissonic import MeissonicModel
    from bench.models.meissonic_transformer import MeissonicTransformer2DModel
    from bench.models.tiny import TINY_CODEBOOK, TINY_VOCAB, _clip_text_config, _tiny_vq, clip_tokenizer

    torch.manual_seed(0)
    transformer = MeissonicTransformer2DModel(
        num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=width // 16,
        joint_attention_dim=24, pooled_projection_dim=width, axes_dims_rope=(4, 6, 6), downsample=True, upsample=True,
        codebook_size=TINY_CODEBOOK, vocab_size=TINY_VOCAB)
    encoder = CLIPTextModelWithProjection(_clip_text_config(width=24, projection=width))
    return MeissonicModel.from_components(transformer.eval(), _tiny_vq().eval(), encoder.eval(), clip_tokenizer(),
                                          height=1024, width=64, device="cpu")


def units_for(names, prompts=2, seeds=(0,)):
    return [Unit(key=f"{v}-{p}-{s}", variant=v, prompt=Prompt(id=f"p{p}", text=f"a red cube number {p}"), seed=s,
                 order=p * len(seeds) + s) for v in names for p in range(prompts) for s in seeds]


def run_units(model, names, root, batch_size=2, prompts=2, variants=None):
    variants = variants or {n: build_variant(n) for n in names}
    store = RunDirectory(root)
    generate_units(model, units_for(names, prompts), variants, store, grid=model.token_grid(), steps=STEPS,
                   guidance=3.0, batch_size=batch_size, device="cpu", negative_prompt=None)
    return pd.DataFrame(list(store.read_journal("generated"))), store


# -- memory -------------------------------------------------------------------------------------------

def test_a_quantized_variants_peak_memory_is_its_own(tmp_path):
    """The plain network's weights leave memory while the quantized copy runs: the quantized variant's peak and
    resident memory lie below the plain model's (before, both networks were alive: plain + int8 copy)."""
    pytest.importorskip("torchao")
    model = wide_meissonic(768)
    plain_mib = tensor_bytes(model.transformer) / 2**20
    records, _ = run_units(model, ["vanilla", "quant-int8"], tmp_path / "run")
    by = records.groupby("variant")
    # int8 keeps about a third of the bytes (a quarter of the linear layers'; measured 123 of 192 MiB leave the
    # resident set); torchao's CPU kernel dequantizes one layer at a time, which costs working memory (the
    # peak measured 47 MiB lower). Both networks alive, as before, put the peak 65 MiB *above* the plain one.
    assert by["resident_mib"].max()["quant-int8"] < by["resident_mib"].min()["vanilla"] - 0.5 * plain_mib
    assert by["peak_mib"].max()["quant-int8"] < by["peak_mib"].min()["vanilla"] - 0.1 * plain_mib
    weights = by["weight_mib"].first()
    assert weights["vanilla"] == pytest.approx(plain_mib, rel=1e-6)
    assert weights["quant-int8"] < 0.4 * weights["vanilla"]
    assert tensor_bytes(model.transformer) / 2**20 == plain_mib  # and the plain network is back


def test_parked_weights_come_back_bit_for_bit_at_the_same_addresses():
    """Kernels pick their code path by operand alignment, so the restored weights must sit where they sat
    (modulo 4096): an unaligned view of a shared storage, a tied weight and a buffer all come back."""
    storage = torch.arange(1000, dtype=torch.float32)
    network = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    network[0].weight = torch.nn.Parameter(storage[3:67].view(8, 8))  # an address ≡ 12 mod 64
    network[1].weight = network[0].weight  # tied
    network.register_buffer("table", storage[100:110])
    before = {n: (t.detach().clone(), t.data_ptr() % ALIGNMENT) for n, t in network.state_dict(keep_vars=True).items()}
    parked = ParkedNetwork(network)
    parked.park()
    assert network[0].weight.numel() == 0 and network.table.numel() == 0
    parked.unpark()
    after = network.state_dict(keep_vars=True)
    for name, (value, address) in before.items():
        assert torch.equal(after[name], value) and after[name].data_ptr() % ALIGNMENT == address, name
    assert network[1].weight is network[0].weight
    assert network.table.untyped_storage().data_ptr() == network[0].weight.untyped_storage().data_ptr()


# -- quantization layouts ---------------------------------------------------------------------------------

def test_w4a8_without_a_packed_kernel_is_labelled_simulated_and_int8_is_packed(meissonic):
    pytest.importorskip("torchao")
    from bench.models.transforms.quantize import choose_layout

    w4a8 = choose_layout("w4a8-dynamic", "cpu", torch.float32)
    if w4a8.packing == "unpacked_to_int8":
        assert "simulated" in w4a8.simulated
    else:  # torchao's or KleidiAI's packed CPU kernels are built in here
        assert w4a8.simulated is None and w4a8.packing.startswith("opaque")
    assert choose_layout("int8-dynamic", "cpu", torch.float32).simulated is None
    quantize = build_component("model_transform", {"name": "quantize", "scheme": "w4a8-dynamic", "group_size": 32})
    assert quantize.cost_note(meissonic) == w4a8.simulated
    with pytest.raises(ConfigError, match="int4-weight-only"):  # torchao 0.18 has no CPU int4 layout
        build_component("model_transform", {"name": "quantize", "scheme": "int4-weight-only"}).check_model(meissonic)


def test_weight_bytes_are_measured_from_the_stored_tensors():
    """int8 stores a byte a weight (+ a float scale per row); the simulated W4A8 a byte per int4 value too."""
    pytest.importorskip("torchao")
    from bench.models.transforms.quantize import choose_layout, quantize_network

    def stored(scheme):
        network = torch.nn.Sequential(torch.nn.Linear(256, 256, bias=False)).eval()
        if scheme:
            quantize_network(network, scheme, 128, choose_layout(scheme, "cpu", torch.float32).packing)
        return tensor_bytes(network)

    plain = stored(None)
    assert plain == 256 * 256 * 4
    assert 256 * 256 <= stored("int8-dynamic") <= 256 * 256 + 256 * 8  # int8 values, one scale per output row
    if choose_layout("w4a8-dynamic", "cpu", torch.float32).simulated:
        assert stored("w4a8-dynamic") >= 256 * 256  # not 256·256/2: the layout holds one int4 value per byte


def test_cost_table_marks_a_simulated_variant(tmp_path):
    from bench.report import render_report
    from bench.report.rundir import load_run
    from bench.report.tables import compute_tables
    from run_fixture import make_run_dir

    run_dir = make_run_dir(tmp_path / "run", n_prompts=4, seeds=(0,))
    samples = pd.read_csv(run_dir / "samples.csv", dtype={"prompt_id": str}, keep_default_na=False)  # "000" stays
    samples["cost_note"] = samples["variant"].map({"weak": "simulated W4A8: not representative"}).fillna("")
    samples.to_csv(run_dir / "samples.csv", index=False)
    cost = compute_tables(load_run(run_dir)).cost.set_index("variant")
    assert not cost.loc["weak", "representative"] and cost.loc["strong", "representative"]
    render_report(run_dir)
    text = (run_dir / "report.md").read_text()
    assert "‡ weak: simulated W4A8" in text


# -- feature caching: FORA / ToCa and the residual form --------------------------------------------------

class _Stepper:
    """The part of a backend the caches read: the current step and whether attention is perturbed."""

    current_step = 0
    attention_perturbed = False


@pytest.mark.parametrize("kind", ["single", "dual"])
def test_fora_reuses_ungated_outputs_under_the_current_gates(meissonic, kind):
    """At a reuse step FORA's block is x_t + gate_t ⊙ f(x_refresh) (DiT-ToCa's form), computed here by hand
    from the block's own modules; at the refresh step it is the block, bit for bit; the residual form
    instead returns x_t + (block(x_refresh) − x_refresh), the refresh step's gates included."""
    from bench.models.transforms.feature_cache import RefreshSchedule, _fora_dual_forward, _fora_single_forward

    network = meissonic.transformer
    torch.manual_seed(0)
    w = network.inner_dim
    image, text = torch.randn(2, 64, w), torch.randn(2, 77, w)
    temb0, temb1 = torch.randn(2, w), torch.randn(2, w)
    rope = network.pos_embed(torch.zeros(77 + 64, 3))
    stepper = _Stepper()
    if kind == "single":
        block = network.single_transformer_blocks[0]
        x0, x1 = torch.cat([text, image], 1), torch.cat([text, image], 1) + 0.1
        fora = _fora_single_forward(block, 0, RefreshSchedule(stepper, 2))
        with torch.no_grad():
            assert torch.equal(fora(x0, temb0, rope), block(x0, temb0, rope))  # the refresh step
            stepper.current_step = 1
            reused = fora(x1, temb1, rope)
            normed, _ = block.norm(x0, emb=temb0)
            cached = block.proj_out(torch.cat([block.attn(hidden_states=normed, image_rotary_emb=rope),
                                               block.act_mlp(block.proj_mlp(normed))], dim=2))
            gate = block.norm.linear(block.norm.silu(temb1)).chunk(3, dim=1)[2]
            assert torch.equal(reused, x1 + gate[:, None] * cached)
            residual = x1 + (block(x0, temb0, rope) - x0)
    else:
        block = network.transformer_blocks[0]
        fora = _fora_dual_forward(block, 0, RefreshSchedule(stepper, 2))
        with torch.no_grad():
            refresh = fora(image, text, temb0, rope)
            plain = block(image, text, temb0, rope)
            assert all(torch.equal(a, b) for a, b in zip(refresh, plain))
            stepper.current_step = 1
            text_out, reused = fora(image + 0.1, text + 0.1, temb1, rope)
            # the refresh step's ungated outputs, by hand from the block's modules
            x, gate_msa, shift_mlp, scale_mlp, _ = block.norm1(image, emb=temb0)
            c, c_gate_msa, c_shift_mlp, c_scale_mlp, _ = block.norm1_context(text, emb=temb0)
            attn, text_attn = block.attn(hidden_states=x, encoder_hidden_states=c, image_rotary_emb=rope)
            ff = block.ff(block.norm2(image + gate_msa[:, None] * attn) * (1 + scale_mlp[:, None]) + shift_mlp[:, None])
            ff_context = block.ff_context(block.norm2_context(text + c_gate_msa[:, None] * text_attn)
                                          * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None])
            # … under the reuse step's gates
            gates = block.norm1.linear(block.norm1.silu(temb1)).chunk(6, dim=1)
            c_gates = block.norm1_context.linear(block.norm1_context.silu(temb1)).chunk(6, dim=1)
            expected = (image + 0.1) + gates[2][:, None] * attn
            expected = expected + gates[5][:, None] * ff
            expected_text = (text + 0.1) + c_gates[2][:, None] * text_attn
            expected_text = expected_text + c_gates[5][:, None] * ff_context
            assert torch.equal(reused, expected) and torch.equal(text_out, expected_text)
            residual = (image + 0.1) + (plain[1] - image)
    assert not torch.allclose(reused, residual)  # the gates moved between the steps: the two forms differ


def test_fora_and_residual_cache_differ_at_a_reuse_step_and_equal_the_plain_model_at_a_refresh(meissonic):
    rows, cols = meissonic.token_grid()
    tokens = torch.randint(0, meissonic.codebook_size, (2, rows * cols), generator=torch.Generator().manual_seed(0))
    tokens[:, ::3] = meissonic.mask_token_id
    conditioning = meissonic.encode(["a red cube", "a cat"], None)

    def logits(spec):
        out = []
        with apply_model_transforms(meissonic, [build_component("model_transform", s) for s in spec]):
            for step in range(2):  # step 0 refreshes, step 1 reuses
                out.append(torch.cat(meissonic.logits(tokens, conditioning, step, STEPS)))
        return out

    plain = logits([])
    fora = logits([{"name": "feature-cache", "interval": 2, "blocks": "all"}])
    residual = logits([{"name": "residual-cache", "interval": 2, "blocks": "all"}])
    assert torch.equal(fora[0], plain[0]) and torch.equal(residual[0], plain[0])
    assert not torch.equal(fora[1], residual[1]) and not torch.equal(fora[1], plain[1])


def test_fora_on_amused_reuses_its_layers_sublayer_outputs():
    from bench.models.amused import AmusedModel

    model = AmusedModel(path=str(tiny_checkpoint("amused")), device="cpu", dtype="float32")
    rows, cols = model.token_grid()
    tokens = torch.full((1, rows * cols), model.mask_token_id)
    conditioning = model.encode(["a red cube"], None)
    with apply_model_transforms(model, [build_component("model_transform", {"name": "feature-cache", "interval": 2})]):
        first = torch.cat(model.logits(tokens, conditioning, 0, STEPS))
        tokens[:, :3] = 0  # the network's input changes; its layers' outputs are reused at step 1
        reused = torch.cat(model.logits(tokens, conditioning, 1, STEPS))
    plain_first = torch.cat(model.logits(torch.full_like(tokens, model.mask_token_id), conditioning, 0, STEPS))
    plain_second = torch.cat(model.logits(tokens, conditioning, 1, STEPS))
    assert torch.equal(first, plain_first) and not torch.equal(reused, plain_second)


def test_fora_and_token_merging_on_one_block_are_refused_before_anything_runs(meissonic):
    from bench.preflight import check_model_side

    def variant(transforms):
        return build_variant("v", {"v": {"base": "vanilla", "model_transforms": transforms}})

    clash = variant([{"name": "tome", "ratio": 0.25, "blocks": "all"}, {"name": "feature-cache", "blocks": "all"}])
    with pytest.raises(ConfigError, match="both rewrite block"):
        check_model_side({"v": clash}, meissonic)
    check_model_side({"v": variant([{"name": "tome", "ratio": 0.25}, {"name": "feature-cache"}])}, meissonic)  # mm | single
    check_model_side({"v": variant([{"name": "tome", "ratio": 0.25, "blocks": "all"},
                                    {"name": "residual-cache", "blocks": "all"}])}, meissonic)  # wraps the merged block


# -- interleaved timing -----------------------------------------------------------------------------------

def test_batches_run_round_robin_with_a_rotating_start():
    units = units_for(["a", "b", "c"], prompts=3)
    order = [(r, chunk[0].variant, [u.prompt.id for u in chunk]) for r, chunk in interleaved(units, 2)]
    assert order == [(0, "a", ["p0", "p1"]), (0, "b", ["p0", "p1"]), (0, "c", ["p0", "p1"]),
                     (1, "b", ["p2"]), (1, "c", ["p2"]), (1, "a", ["p2"])]


def test_interleaving_changes_no_token(meissonic, tmp_path):
    """cache-2 run between vanilla's batches (its cache rebuilt each time) gives the tokens it gives alone."""
    together, store = run_units(meissonic, ["vanilla", "cache-2", "tome"], tmp_path / "a", batch_size=1)
    alone, alone_store = run_units(meissonic, ["cache-2"], tmp_path / "b", batch_size=2)
    import numpy as np

    for key in alone["unit_key"]:
        assert np.array_equal(np.load(store.tokens_path(key)), np.load(alone_store.tokens_path(key)))
    rounds = together.groupby("time_slot")["variant"].apply(sorted)
    assert all(v == ["cache-2", "tome", "vanilla"] for v in rounds)  # every round holds every variant once


def test_time_vs_baseline_is_the_median_ratio_within_rounds(tmp_path):
    """Seconds 1, 2, 4 in rounds where the baseline took 1, 1, 2: ratios 1, 2, 2 → median 2 (the ratio of the
    medians would be 2 / 1 = 2 as well, so a drifting baseline makes the difference below)."""
    from bench.report.rundir import load_run
    from bench.report.tables import compute_tables
    from run_fixture import make_run_dir

    run_dir = make_run_dir(tmp_path / "run", n_prompts=3, seeds=(0,), variants={"vanilla": 0.0, "strong": 1.5})
    samples = pd.read_csv(run_dir / "samples.csv", dtype={"prompt_id": str}, keep_default_na=False)
    slots = {"000": "x:0", "001": "x:1", "002": "x:2"}
    samples["time_slot"] = samples["prompt_id"].map(slots)
    seconds = {("vanilla", "x:0"): 1.0, ("vanilla", "x:1"): 3.0, ("vanilla", "x:2"): 9.0,
               ("strong", "x:0"): 2.0, ("strong", "x:1"): 6.0, ("strong", "x:2"): 18.0}
    samples["seconds"] = [seconds[(v, s)] for v, s in zip(samples["variant"], samples["time_slot"])]
    samples.to_csv(run_dir / "samples.csv", index=False)
    cost = compute_tables(load_run(run_dir)).cost.set_index("variant")
    # the baseline drifted 9× across the rounds; within each round the variant took exactly twice as long
    assert cost.loc["strong", "relative_seconds"] == pytest.approx(2.0)
    assert cost.loc["strong", "relative_seconds_p10"] == pytest.approx(2.0)
    assert cost.loc["strong", "relative_seconds_rounds"] == 3
    assert cost.loc["strong", "relative_seconds_method"] == "same rounds"


def test_old_run_directories_without_cost_columns_still_report(tmp_path):
    from bench.report import render_report
    from run_fixture import make_run_dir

    run_dir = make_run_dir(tmp_path / "run", n_prompts=4, seeds=(0,))
    samples = pd.read_csv(run_dir / "samples.csv", dtype={"prompt_id": str}, keep_default_na=False)
    from bench.rundir.store import COST_COLUMNS

    samples = samples.drop(columns=COST_COLUMNS, errors="ignore")  # a run recorded before the cost columns
    samples["memory_mib"] = 100.0  # the old column: the batch's peak divided by its images
    samples.to_csv(run_dir / "samples.csv", index=False)
    render_report(run_dir)
    cost = pd.read_csv(run_dir / "tables" / "cost.csv")
    assert cost["flops_per_image"].isna().all() and (cost["pareto_axis"] == "forward_passes").all()
    assert "batch peak ÷ batch size" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "manifest.json").read_text())  # untouched


# -- benchmarks/model_side_speed.py ------------------------------------------------------------------------

def test_model_side_speed_runs_on_quantized_networks(tmp_path, capsys):
    """The benchmark aborted on any quantized network (a truthiness test on a weight tensor); on the tiny
    checkpoint it now measures every choice the CPU runs side by side and skips the others with the reason."""
    pytest.importorskip("torchao")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "model_side_speed.py"
    spec = importlib.util.spec_from_file_location("model_side_speed", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    out = tmp_path / "result.json"
    assert benchmark.main(["--path", str(tiny_checkpoint("meissonic-1024")), "--text-encoder", str(laion_clip()),
                           "--image-width", "64", "--steps", "2", "--rounds", "1", "--batch", "1", "--json", str(out),
                           "--variants", "vanilla,quant-int8,quant-w8a8,quant-w4a8,quant-int4,cache-2,pag"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"vanilla", "quant-int8", "quant-w8a8", "quant-w4a8", "cache-2", "pag"}
    assert "quant-int4" in result["skipped"] and "skipped quant-int4" in printed
    for name in ("quant-int8", "quant-w8a8", "quant-w4a8"):
        assert rows[name]["weight_mib"] < 0.5 * rows["vanilla"]["weight_mib"]
        assert rows[name]["gflops_per_image"] == pytest.approx(rows["vanilla"]["gflops_per_image"], rel=1e-12)
    assert rows["cache-2"]["gflops_per_image"] < rows["vanilla"]["gflops_per_image"]
    assert rows["pag"]["flops_vs_plain"] == pytest.approx(1.5, rel=1e-3)
    assert all(r["seconds_per_image"] > 0 and r["time_vs_plain"] > 0 for r in rows.values())
    assert "| quant-w4a8" in printed and "GFLOPs / image" in printed
