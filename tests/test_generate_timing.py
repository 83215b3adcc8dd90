"""Issue 10: seconds per image measure the sampler, not the first call's warm-up."""
from __future__ import annotations

import time
from types import SimpleNamespace

import torch

import bench.generate as generate
from bench.models.compiled import CompiledForward
from bench.plan import Unit
from bench.prompts import Prompt
from bench.rundir.store import RunDirectory


class _SlowFirstCallEngine:
    """Stands in for SamplerEngine: the first call of each variant is slow (lazy initialisation)."""

    calls: list[str] = []

    def __init__(self, model, meter=None):
        self.model = model

    def generate(self, variant, conditioning, seeds, grid, steps, guidance, device="cpu", reward=None):
        if variant.name not in self.calls:
            time.sleep(0.3)
        self.calls.append(variant.name)
        n = len(seeds)
        tokens = torch.tensor(seeds).view(n, 1).repeat(1, grid[0] * grid[1])
        return SimpleNamespace(tokens=tokens, forward_passes=[steps] * n, scorer_calls=[0] * n, trajectory=[[0] * n],
                               rows=torch.tensor([[steps, 0, 0]] * n), flops=torch.zeros(n, dtype=torch.float64))


class _Model:
    """The part of a `Backend` that generation touches when the engine is a stand-in."""

    compiled = CompiledForward()  # eager: no batch shape to compile ahead
    transformer = None  # no network: no weight bytes

    def encode(self, texts, negative_prompt=None):
        return {"n": len(texts)}

    def decode(self, tokens, grid):
        return torch.zeros(tokens.shape[0], 3, 4, 4)


def test_warm_up_is_not_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "SamplerEngine", _SlowFirstCallEngine)
    _SlowFirstCallEngine.calls = []
    variants = {name: SimpleNamespace(name=name, model_transforms=[], loop=None) for name in ("vanilla", "other")}
    units = [Unit(key=f"{v}{p}{s}", variant=v, prompt=Prompt(id=f"p{p}", text=f"text {p}"), seed=s, order=0)
             for v in variants for p in range(3) for s in (0, 1)]
    store = RunDirectory(tmp_path / "run")
    figures = generate.generate_units(_Model(), units, variants, store, grid=(2, 2), steps=4, guidance=1.0,
                                      batch_size=4, device="cpu", negative_prompt=None)
    records = [r for r in store.read_journal("generated")]
    assert len(records) == len(units)
    # without the warm-up, each variant's first batch carried 0.3 s / 4 images = 0.075 s per image
    assert max(r["seconds"] for r in records) < 0.05
    assert figures["warmup_seconds"] >= 0.6 and figures["wall_seconds"] >= figures["seconds"] + 0.6 - 0.01
    # one untimed warm-up call per variant, then its batches: 2 variants × (1 + 2 batches)
    assert _SlowFirstCallEngine.calls.count("vanilla") == 3 and _SlowFirstCallEngine.calls.count("other") == 3
