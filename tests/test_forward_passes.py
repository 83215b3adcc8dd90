"""Declared and counted transformer calls agree.

`SamplerVariant.forward_passes` is what a variant declares before it runs (shards are balanced by it, the
report shows it as "declared"); `Generation.forward_passes` is what the engine counts per image, and the
stand-in model records every call it gets. For every built-in variant with a fixed reveal schedule, and
for compositions that stack extra passes (PAG's perturbed forward, the self-critic's, zig-zag's
inversion, a search loop's candidates), the three are the same number.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from catalogue_fakes import FixedLogits
from samplers.engine import SamplerEngine
from samplers.variant import VARIANT_PRESETS, build_variant, resolve_spec

STEPS, SEQ_LEN, VOCAB = 6, 16, 8
#: reveal counts that follow the model's certainty and may finish before step T (declared: at most)
ADAPTIVE = {"eb-adaptive", "eb-adaptive-entropy", "threshold-parallel", "fast-dllm"}


class CountingModel(FixedLogits):
    """The catalogue's fixed-logits model, with PAG's attention hook (a no-op: only calls matter here)."""

    def perturbed_attention(self, layers):
        return contextlib.nullcontext()


def token_sum_reward(tokens, rows):
    return tokens.double().sum(dim=-1)


def run(variant, seeds):
    model = CountingModel(STEPS, SEQ_LEN, VOCAB, seed=4)
    generation = SamplerEngine(model).generate(variant, {}, seeds, (4, 4), STEPS, 3.0, reward=token_sum_reward)
    return model, generation


def step_presets() -> list[str]:
    """Every built-in variant but the model-side ones (they need a network; their extra passes are none)."""
    return [name for name in sorted(VARIANT_PRESETS.names()) if not resolve_spec(name).get("model_transforms")]


COMBINATIONS = {
    "zigzag+self-critic": {"base": "zigzag", "remask": "self-critic"},
    "zigzag+pag": {"base": "zigzag", "guidance": {"name": "pag", "pag_scale": 2.0, "layers": [0]}},
    "pag+self-critic": {"base": "pag", "remask": "self-critic"},
    "pag without its pass": {"base": "pag", "guidance": {"name": "pag", "pag_scale": 0.0}},
    "best-of-2 zigzag+self-critic": {"loop": {"name": "best-of-n", "n": 2, "inner": "zigzag"}, "remask": "self-critic"},
    "smc-3+pag": {"loop": {"name": "smc", "particles": 3}, "guidance": "pag"},
}


@pytest.mark.parametrize("name", step_presets() + sorted(COMBINATIONS))
def test_declared_forward_passes_are_the_counted_ones(name):
    variant = build_variant(name, COMBINATIONS)
    declared = variant.forward_passes(STEPS)
    model, alone = run(variant, [0])
    seen = sum(tokens.shape[0] for tokens, _, _ in model.calls)  # rows of every call: one image's passes
    _, batch = run(variant, [0, 1, 2])
    if name in ADAPTIVE:
        assert int(alone.forward_passes[0]) == seen <= declared
        assert max(batch.forward_passes.tolist()) <= declared
    else:
        assert int(alone.forward_passes[0]) == seen == declared
        assert batch.forward_passes.tolist() == [declared] * 3


def test_the_extra_passes_by_hand():
    """T = 6: the self-critic re-scores after every step but the last (5), PAG perturbs every step (6),
    zig-zag runs 2 steps and an inversion for each of the first 5 steps, then one (3·5 + 1 = 16)."""
    assert build_variant("self-critic").forward_passes(STEPS) == 6 + 5
    assert build_variant("pag").forward_passes(STEPS) == 6 + 6
    assert build_variant("zigzag").forward_passes(STEPS) == 16
    assert build_variant("zigzag+pag", COMBINATIONS).forward_passes(STEPS) == 16 + 11  # PAG in all 11 steps
    assert build_variant("zigzag+self-critic", COMBINATIONS).forward_passes(STEPS) == 16 + 10
    assert build_variant("best-of-4").forward_passes(STEPS) == 4 * 6


def test_every_counted_pass_goes_through_one_counter(monkeypatch):
    """`Generation.count_forward_pass` is the only place the per-image count grows."""
    from samplers import engine

    calls = []
    original = engine.Generation.count_forward_pass
    monkeypatch.setattr(engine.Generation, "count_forward_pass",
                        lambda self, images, **kinds: (calls.append(int(images.sum())), original(self, images, **kinds))[1])
    for name in ("self-critic", "zigzag+pag"):
        _, generation = run(build_variant(name, COMBINATIONS), [0, 1])
        assert sum(calls) == int(generation.forward_passes.sum())
        calls.clear()
    fast = build_variant("f", {"f": {"base": "noise-reg", "mode": "fast"}})
    _, generation = run(fast, [0, 1])
    assert sum(calls) == int(generation.forward_passes.sum()) == 2 * STEPS
    assert torch.equal(generation.forward_passes, torch.tensor([STEPS, STEPS]))
