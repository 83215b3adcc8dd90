"""The `fast` step mode: one fused pass, distribution-equivalent to the exact mode.

Laws are checked with chi-square tests against exact probabilities (each test also rejects a wrong law,
so it has power); the exact synthetic world's ancestral-sampling test runs in fast mode; the fused
statistics equal their definitions; the counter-based random numbers are the specified hash, the same in
any block or batch arrangement. What runs in the pass is each component's fused form: a variant is
refused at config time when a component has none, and a plugin brings its own in its own file.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import samplers.fast_step as fast_step
from catalogue_fakes import FixedLogits, generate
from mgt_common.errors import ConfigError
from samplers import counter_random as cr
from samplers.confidence import Margin, NegativeEntropy
from samplers.fused_step import DrawKernel, fused_block
from samplers.noise_regularization import GaussianNoise
from samplers.token_samplers import Argmax, Float64Race, TopKRace, TopPRace
from samplers.variant import build_variant

ROWS, VOCAB = 20000, 8


def draw(logits: torch.Tensor, seed: int = 0, uncond=None, weight=1.0, inv_temp=1.0, sigma=0.0, kernel=DrawKernel()):
    """fused_block on ``ROWS`` positions that all share the logits vector(s)."""
    cond = logits.expand(1, ROWS, -1)
    uncond = None if uncond is None else uncond.expand(1, ROWS, -1)
    keys = cr.step_keys([torch.Generator().manual_seed(seed)], 4, "cpu")
    scalars = [torch.tensor(v, dtype=torch.float32) for v in (weight, inv_temp, sigma)]
    return fused_block(cond, uncond, *scalars, keys, torch.tensor(0, dtype=torch.int32), draw=kernel,
                       processor=GaussianNoise() if sigma != 0.0 else None)


def chi_square_p(tokens: torch.Tensor, probs: torch.Tensor) -> float:
    observed = np.bincount(tokens.reshape(-1).numpy(), minlength=len(probs)).astype(float)
    expected = probs.double().numpy() * tokens.numel()
    keep = expected > 0
    assert observed[~keep].sum() == 0, "a token outside the support was drawn"
    return stats.chisquare(observed[keep], expected[keep]).pvalue


LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0, 1.5])


def test_mix32_is_the_published_hash():
    """int32 wrap-around arithmetic = the 32-bit unsigned hash computed with Python integers."""
    def reference(x):
        x &= 0xFFFFFFFF
        x ^= x >> 16
        x = (x * 0x21F0AAAD) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x735A2D97) & 0xFFFFFFFF
        return x ^ (x >> 15)

    values = [0, 1, 2, 12345, 2**31 - 1, -1, -2**31, 987654321, -123456789]
    ours = cr.mix32(torch.tensor(values, dtype=torch.int32))
    assert [v & 0xFFFFFFFF for v in ours.tolist()] == [reference(v) for v in values]


def test_uniforms_and_normals_have_their_laws():
    bits = cr.hashed_bits(torch.arange(200000, dtype=torch.int32), torch.tensor(7, dtype=torch.int32),
                          torch.tensor(-99, dtype=torch.int32))
    u = cr.open_uniform(bits)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert stats.kstest(u.double().numpy(), "uniform").pvalue > 1e-3
    z = cr.normal_from_bits(bits, cr.second_stream(bits))
    assert stats.kstest(z.double().numpy(), "norm").pvalue > 1e-3
    u64 = cr.open_uniform64(bits, cr.second_stream(bits))
    assert stats.kstest(u64.numpy(), "uniform").pvalue > 1e-3
    # neighbouring entries are uncorrelated (a weak hash shows up here first)
    assert abs(np.corrcoef(u[:-1].numpy(), u[1:].numpy())[0, 1]) < 0.01


@pytest.mark.parametrize("kernel,inv_temp,law", [
    (DrawKernel(), 1.0, lambda l: torch.softmax(l, 0)),
    (DrawKernel(), 1.25, lambda l: torch.softmax(l * 1.25, 0)),
    (Float64Race(), 1.0, lambda l: torch.softmax(l, 0)),
    (TopKRace(3), 1.0, lambda l: torch.softmax(torch.where(l >= l.topk(3).values[-1], l, -torch.inf), 0)),
    (TopPRace(0.8), 1.0, None),
])
def test_fused_draws_follow_the_target_law(kernel, inv_temp, law):
    tokens, _, _ = draw(LOGITS, inv_temp=inv_temp, kernel=kernel)
    if law is None:  # the nucleus of softmax(ℓ), as token_samplers.nucleus keeps it
        from samplers.token_samplers import nucleus

        kept = nucleus(torch.softmax(LOGITS.double(), 0), 0.8)
        target = kept / kept.sum()
    else:
        target = law(LOGITS.double())
    assert chi_square_p(tokens, target) > 1e-4
    # the same test rejects a wrong law (here: a temperature off by 20 %)
    assert chi_square_p(tokens, torch.softmax(LOGITS.double() * inv_temp * 1.2, 0)) < 1e-6


def test_cfg_and_noise_regularisation_in_the_fused_pass():
    cond, uncond = LOGITS, torch.linspace(1.0, -1.0, VOCAB)
    tokens, _, _ = draw(cond, uncond=uncond, weight=3.0)
    assert chi_square_p(tokens, torch.softmax(uncond.double() + 3.0 * (cond.double() - uncond.double()), 0)) > 1e-4
    # with noise σ·n on the logits the law is E_n[softmax(ℓ + σ n)] (Monte Carlo with torch's normal)
    tokens, _, _ = draw(cond, sigma=1.5)
    noise = torch.randn(400000, VOCAB, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target = torch.softmax(cond.double() + 1.5 * noise, -1).mean(0)
    assert chi_square_p(tokens, target) > 1e-4
    assert chi_square_p(tokens, torch.softmax(cond.double(), 0)) < 1e-6


def test_fused_statistics_equal_their_definitions():
    generator = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 50, 64, generator=generator) * 3, torch.randn(2, 50, 64, generator=generator) * 3
    keys = cr.step_keys([torch.Generator().manual_seed(s) for s in (0, 1)], 4, "cpu")
    scalars = [torch.tensor(v) for v in (4.0, 1.0, 0.0)]
    guided = (uncond + 4.0 * (cond - uncond)).double()
    probs = guided.softmax(-1)
    for statistic in (Margin(), NegativeEntropy()):
        tokens, log_p, extra = fused_block(cond, uncond, *scalars, keys, torch.tensor(0, dtype=torch.int32),
                                           statistic=statistic)
        expected_log_p = probs.gather(-1, tokens[..., None])[..., 0].log().clamp(min=np.log(1e-20))
        torch.testing.assert_close(log_p.double(), expected_log_p, atol=1e-4, rtol=1e-5)
        top = probs.topk(2, -1).values
        expected = top[..., 0] - top[..., 1] if isinstance(statistic, Margin) else torch.xlogy(probs, probs).sum(-1)
        torch.testing.assert_close(extra.double(), expected, atol=1e-5, rtol=1e-4)
    _, log_p, plain = fused_block(cond, uncond, *scalars, keys, torch.tensor(0, dtype=torch.int32))
    assert torch.equal(plain, log_p)  # the default statistic is log p(token) itself
    greedy, _, _ = fused_block(cond, uncond, *scalars, keys, torch.tensor(0, dtype=torch.int32), draw=Argmax())
    assert torch.equal(greedy, guided.argmax(-1))


def test_blocks_and_batches_do_not_change_a_token(monkeypatch):
    model = FixedLogits(6, 64, 128, seed=2)
    tables = {"fast": {"base": "top-p", "mode": "fast"}}
    whole = generate(model, "fast", seeds=[3, 4, 5], tables=tables).tokens
    monkeypatch.setattr(fast_step, "_CPU_BLOCK", 128 * 5)  # 5 positions per block, a ragged last one
    assert torch.equal(generate(model, "fast", seeds=[3, 4, 5], tables=tables).tokens, whole)
    assert torch.equal(generate(model, "fast", seeds=[4], tables=tables).tokens[0], whole[1])


def test_fast_mode_is_declared_and_keyed():
    exact, fast = build_variant("vanilla"), build_variant("f", {"f": {"base": "vanilla", "mode": "fast"}})
    assert "mode" not in exact.resolved() and fast.resolved()["mode"] == "fast"
    assert exact.fingerprint() != fast.fingerprint()
    with pytest.raises(ConfigError, match="mode must be one of exact, fast"):
        build_variant("f", {"f": {"base": "vanilla", "mode": "quick"}})


@pytest.mark.parametrize("table, refused", [
    # reads the step's probabilities, which the pass never builds: it used to build, then fail at its first step
    ({"reveal_schedule": "confidence-threshold"}, "reveal_schedule 'confidence-threshold' has no fused form"),
    ({"base": "fast-dllm"}, "reveal_schedule 'confidence-threshold' has no fused form"),
    ({"base": "eb-adaptive"}, "reveal_schedule 'entropy-bounded' has no fused form"),
    ({"base": "differential"}, "probability_corrector 'differential' has no fused form: the pass builds no probability"),
    ({"base": "apg"}, "guidance 'apg' has no fused form"),
    ({"base": "pag"}, "guidance 'pag' has no fused form"),
    ({"base": "remdm-cap"}, "remask 'remdm' has no fused form"),
    ({"base": "p2-remask"}, "remask 'p2' has no fused form"),
    ({"base": "p2"}, "token_sampler 'gumbel-max-scored' has no fused form"),
    ({"logits_processors": ["noise-regularization", {"name": "noise-regularization", "scale": 1.0}]},
     "the fused pass has one logits-processor slot"),
])
def test_fast_mode_is_refused_at_config_time_naming_the_component(table, refused):
    with pytest.raises(ConfigError, match=rf'variants\.f: mode "fast" cannot run this composition: {refused}.*'
                                          r'use mode = "exact"'):
        build_variant("f", {"f": {**table, "mode": "fast"}})


def test_threshold_reveal_runs_in_exact_mode():
    """The refusal is fast mode's alone: the same composition runs exactly."""
    model = FixedLogits(6, 64, 128, seed=5)
    generation = generate(model, "t", seeds=[0], tables={"t": {"reveal_schedule": "confidence-threshold"}})
    assert not bool((generation.tokens == model.mask_token_id).any())


TOP_TWO_PLUGIN = '''
from dataclasses import dataclass

import torch

from samplers import randomness
from samplers.components import TokenSampler, register_component
from samplers.fused_step import DrawKernel, FusedTokenSampler


@dataclass(frozen=True)
class TopTwoRace(DrawKernel):
    def truncate(self, tempered):
        second = tempered.topk(2, dim=-1).values[..., -1:]
        return torch.where(tempered >= second, tempered, float("-inf"))


@register_component("token_sampler", "test-top-two")
class TopTwo(TokenSampler):
    """Draw among the two most probable tokens."""

    def sample(self, probs, ctx):
        second = probs.topk(2, dim=-1).values[..., -1:]
        return randomness.multinomial(ctx.generators, torch.where(probs >= second, probs, 0.0))

    def fused(self):
        return FusedTokenSampler(TopTwoRace())
'''


def test_a_plugin_token_sampler_brings_its_fused_form_in_its_own_file(tmp_path):
    """Nothing outside the plugin's file is edited: fast mode asks the sampler for its form."""
    from mgt_common.registry import load_plugin_file
    from samplers.components import REGISTRIES

    path = tmp_path / "top_two.py"
    path.write_text(TOP_TWO_PLUGIN)
    load_plugin_file(path)
    kernel = REGISTRIES["token_sampler"].get("test-top-two")().fused().kernel
    tokens, _, _ = draw(LOGITS, kernel=kernel)
    top_two = torch.where(LOGITS >= LOGITS.topk(2).values[-1], LOGITS, -torch.inf).double()
    assert chi_square_p(tokens, torch.softmax(top_two, 0)) > 1e-4
    assert chi_square_p(tokens, torch.softmax(LOGITS.double(), 0)) < 1e-6  # the truncation is real
    model = FixedLogits(6, 64, 128, seed=5)
    generation = generate(model, "f", seeds=[0, 1], tables={"f": {"token_sampler": "test-top-two", "mode": "fast"}})
    assert not bool((generation.tokens == model.mask_token_id).any())


def test_a_subclass_that_changes_the_draw_does_not_inherit_the_fused_form():
    """A form stands in for the code it was written next to: `sample` overridden below `fused` → exact only."""
    from samplers.components import register_component
    from samplers.token_samplers import MultinomialSampler

    @register_component("token_sampler", "test-multinomial-squared")
    class Squared(MultinomialSampler):
        """Draw from p² renormalised."""

        def sample(self, probs, ctx):
            return super().sample(probs * probs / (probs * probs).sum(-1, keepdim=True), ctx)

    assert Squared().fused() is not None  # inherited ...
    with pytest.raises(ConfigError, match="token_sampler 'test-multinomial-squared' has no fused form"):
        build_variant("f", {"f": {"token_sampler": "test-multinomial-squared", "mode": "fast"}})  # ... and refused


@pytest.mark.parametrize("preset", ["vanilla", "noise-reg", "zigzag", "top-k", "top-p", "gumbel-max-f64", "greedy",
                                    "margin", "entropy", "halton", "random-order", "softmax-temp-linear", "cfg-interval"])
def test_every_fusable_preset_runs_in_fast_mode(preset):
    model = FixedLogits(6, 64, 128, seed=5)
    generation = generate(model, "f", seeds=[0, 1], tables={"f": {"base": preset, "mode": "fast"}})
    assert not bool((generation.tokens == model.mask_token_id).any())
    assert generation.trajectory[-1] == [0, 0]


def test_exact_world_is_sampled_exactly_in_fast_mode():
    """The exact synthetic world with random order, one token per step: ancestral sampling, exact in law."""
    import test_exact_sampler as world_test

    from samplers.variant import VARIANT_PRESETS, register_variant

    if "random-order+linear+fast" not in VARIANT_PRESETS:
        register_variant("random-order+linear+fast",
                         {"base": "random-order", "reveal_schedule": "linear", "mode": "fast"})
    model = world_test.SyntheticModel(**world_test.WORLD)
    tokens = world_test.generate(model, "random-order+linear+fast", model.world.seq_len)
    assert world_test.chi_square_p(model, tokens) > 1e-3
    assert world_test.chi_square_p(model, world_test.generate(model, "random-order+linear+fast", 1)) < 1e-6


# -- the compiled fused block (what runs on CUDA) ---------------------------------------------------------

CONFIGURATIONS = [dict(draw=d, processor=p, **({"statistic": s} if s is not None else {}))
                  for d in (DrawKernel(), TopKRace(3), TopKRace(5), TopPRace(0.8), Argmax())
                  for p, s in ((None, None), (GaussianNoise(), NegativeEntropy()))]  # 10: more than dynamo's 8


def test_every_configuration_gets_its_own_compilation(monkeypatch):
    """TorchDynamo allows 8 recompilations per code object; a run with more fast configurations than that
    (here 10) must still compile each one, not fall back to the uncompiled whole-tensor block."""
    import samplers.fused_step as fused_step
    from torch._dynamo.backends.registry import register_backend

    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    register_backend(name="mgt_bench_counting", compiler_fn=counting_backend)
    monkeypatch.setenv("MGT_BENCH_COMPILE_BACKEND", "mgt_bench_counting")
    monkeypatch.setattr(fused_step, "_compiled", {})
    source = torch.Generator().manual_seed(4)
    cond, uncond = torch.randn(2, 6, 16, generator=source), torch.randn(2, 6, 16, generator=source)
    keys = cr.step_keys([torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)], 4, "cpu")
    scalars = [torch.tensor(v) for v in (3.0, 1.0, 0.5)]
    first = torch.tensor(0, dtype=torch.int32)
    for configuration in CONFIGURATIONS:
        compiled = fused_step.compiled_block(**configuration)(cond, uncond, *scalars, keys, first)
        eager = fused_block(cond, uncond, *scalars, keys, first, **configuration)
        assert all(torch.equal(a, b) for a, b in zip(compiled, eager)), configuration
    assert len(fused_step._compiled) == len(CONFIGURATIONS)
    assert len(graphs) >= len(CONFIGURATIONS)  # every configuration traced (a fallback traces nothing)
    assert fused_step.compiled_block(**CONFIGURATIONS[0]) is fused_step.compiled_block(**CONFIGURATIONS[0])


def test_inductor_compiled_block_draws_the_eager_tokens(monkeypatch):
    """The block as Inductor generates it (C++ on the CPU; Triton on CUDA follows the same graph): the
    counter hash's wrap-around int32 products and the race give the eager block's tokens exactly."""
    import samplers.fused_step as fused_step

    monkeypatch.delenv("MGT_BENCH_COMPILE_BACKEND", raising=False)
    monkeypatch.setattr(fused_step, "_compiled", {})
    source = torch.Generator().manual_seed(6)
    cond = (torch.randn(2, 40, 256, generator=source) * 3).bfloat16()
    uncond = (torch.randn(2, 40, 256, generator=source) * 3).bfloat16()
    keys = cr.step_keys([torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)], 4, "cpu")
    scalars = [torch.tensor(v) for v in (9.0, 1.0, 0.7)]
    first = torch.tensor(17, dtype=torch.int32)
    configuration = dict(draw=DrawKernel(), processor=GaussianNoise())
    compiled = fused_step.compiled_block(**configuration)(cond, uncond, *scalars, keys, first)
    eager = fused_block(cond, uncond, *scalars, keys, first, **configuration)
    assert torch.equal(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-5, atol=1e-5)
