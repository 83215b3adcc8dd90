"""The vanilla composition is diffusers.AmusedScheduler.step, token for token (DESIGN.md; issue: harness).

Same logits, same torch.Generator → same tokens after every step, for cosine and linear schedules,
several step counts, sequence lengths and seeds, with and without classifier-free guidance.
"""
from __future__ import annotations

import pytest
import torch
from diffusers import AmusedScheduler

from catalogue_fakes import MASK, FixedLogits
from samplers.engine import SamplerEngine
from samplers.variant import build_variant


def reference_trajectory(model: FixedLogits, steps: int, seed: int, schedule: str, guidance: float):
    scheduler = AmusedScheduler(mask_token_id=MASK, masking_schedule=schedule)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((1, model.cond.shape[1]), MASK, dtype=torch.long)
    states = []
    for index, timestep in enumerate(scheduler.timesteps):
        logits = model.cond[index][None]
        if guidance > 1:  # the reference pipeline's CFG on logits, only for w > 1
            logits = model.uncond[index][None] + guidance * (model.cond[index][None] - model.uncond[index][None])
        tokens = scheduler.step(logits, timestep, tokens, generator=generator).prev_sample
        states.append(tokens.clone())
    return states


@pytest.mark.parametrize("schedule,variant", [("cosine", "vanilla"), ("linear", "linear-reveal")])
@pytest.mark.parametrize("steps,seq_len,vocab", [(1, 16, 32), (2, 16, 32), (8, 64, 128), (16, 256, 64)])
@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_vanilla_matches_amused_scheduler_every_step(schedule, variant, steps, seq_len, vocab, guidance):
    for seed in range(3):
        model = FixedLogits(steps, seq_len, vocab, seed=seed + 10)
        expected = reference_trajectory(model, steps, seed, schedule, guidance)
        model.calls.clear()
        generation = SamplerEngine(model).generate(build_variant(variant), {}, [seed], (1, seq_len), steps, guidance)
        # the engine's input at step i+1 is the reference's output of step i
        for step, state in enumerate(expected[:-1]):
            assert torch.equal(model.calls[step + 1][0], state), f"step {step} differs (seed {seed})"
        assert torch.equal(generation.tokens, expected[-1])
        assert generation.forward_passes.tolist() == [steps]


def test_reveal_counts_follow_the_cosine_schedule():
    """floor(N cos(π (i+1) / 2T)) stay masked, clipped to [1, masked - 1]: the published schedule by hand."""
    import math

    steps, seq_len = 8, 64
    model = FixedLogits(steps, seq_len, 32)
    generation = SamplerEngine(model).generate(build_variant("vanilla"), {}, [0], (8, 8), steps, 1.0)
    expected, masked = [], seq_len
    for i in range(steps - 1):
        masked = max(1, min(masked - 1, math.floor(seq_len * math.cos(math.pi * (i + 1) / (2 * steps)))))
        expected.append(masked)
    assert [row[0] for row in generation.trajectory] == expected + [0]
