"""Schedules as pure functions: values at chosen steps, computed by hand (not by the same code).

Mask ratios at N = 16, T = 4 (progress r = 0.25, 0.5, 0.75); each expected count is floor(16·γ(r))
worked out on paper, then clipped to [1, masked − 1] with masked = 16 (no clip bites here).
"""
from __future__ import annotations

import math

import pytest
import torch

from samplers import schedules
from samplers.components import build_component
from samplers.engine import StepContext

N, T = 16, 4

# γ values: cosine cos(π/8)=.924, cos(π/4)=.707, cos(3π/8)=.383; square 1−r²; cubic 1−r³; root 1−√r;
# arccos(r)/(π/2): .839, 2/3, .460; exponential 1−16^(r−1): 1−1/8, 1−1/4, 1−1/2;
# logarithmic −log2(r)/4: 1/2, 1/4, .104; sigmoid(−3, 3, 1): .851, .5, .149.
EXPECTED_COUNTS = {
    "cosine": [14, 11, 6],
    "linear": [12, 8, 4],
    "square": [15, 12, 7],
    "cubic": [15, 14, 9],
    "root": [8, 4, 2],
    "arccos": [13, 10, 7],
    "exponential": [14, 12, 8],
    "logarithmic": [8, 4, 1],
    "sigmoid": [13, 8, 2],
}


class _Gen:
    """Enough of a Generation for StepContext."""

    def __init__(self, unknown):
        self.total_steps, self.guidance_scale, self.generators = T, 1.0, []
        self.tokens = torch.where(unknown, 99, 0)
        self.component_state, self.grid = {}, (4, 4)
        self.model = type("M", (), {"mask_token_id": 99})()

    device = torch.device("cpu")
    seq_len = N


def ctx_at(step, masked=N):
    unknown = torch.zeros(1, N, dtype=torch.bool)
    unknown[0, :masked] = True
    return StepContext(_Gen(unknown), step, unknown)


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_reveal_schedule_counts_by_hand(name):
    schedule = build_component("reveal_schedule", name)
    counts = [int(schedule.mask_len(ctx_at(step))) for step in range(T - 1)]
    assert counts == EXPECTED_COUNTS[name]


def test_power_schedule_any_exponent_and_named_aliases():
    assert [int(build_component("reveal_schedule", {"name": "power", "exponent": 2.0}).mask_len(ctx_at(s)))
            for s in range(3)] == EXPECTED_COUNTS["square"]
    # exponent 1/2: 1 − √r is the convex "root"
    assert [int(build_component("reveal_schedule", {"name": "power", "exponent": 0.5}).mask_len(ctx_at(s)))
            for s in range(3)] == EXPECTED_COUNTS["root"]
    # root of degree 3: 1 − r^(1/3) = 1 − .630, 1 − .794, 1 − .909 → 5, 3, 1
    assert [int(build_component("reveal_schedule", {"name": "root", "degree": 3.0}).mask_len(ctx_at(s)))
            for s in range(3)] == [5, 3, 1]


def test_clipping_rules_match_the_vanilla_step():
    # With only 3 masked, cosine's 14 is clipped to masked − 1 = 2; near the end a 0 is clipped up to 1.
    assert int(build_component("reveal_schedule", "cosine").mask_len(ctx_at(0, masked=3))) == 2
    assert int(build_component("reveal_schedule", "logarithmic").mask_len(ctx_at(2, masked=2))) == 1
    assert schedules.scheduled_mask_len(torch.tensor(0.0), 16, 5) == 1
    assert schedules.scheduled_mask_len(torch.tensor(0.9), 16, 5) == 4


def test_cosine_is_evaluated_in_float32_like_diffusers():
    r = schedules.progress(2, 4)
    assert r.dtype == torch.float32 and float(r) == 0.75


def test_mask_ratios_end_points():
    one = torch.tensor([[1.0]])
    for fn in (schedules.linear_mask_ratio, schedules.arccos_mask_ratio, schedules.sigmoid_mask_ratio):
        assert abs(float(fn(one))) < 1e-6
    assert float(schedules.exponential_mask_ratio(one, 16)) == 0.0
    assert float(schedules.logarithmic_mask_ratio(one, 16)) == 0.0
    assert float(schedules.sigmoid_mask_ratio(torch.tensor([[0.0]]))) == pytest.approx(1.0)


def test_ramp_shapes_by_hand():
    # T = 5 → u = 0, .25, .5, .75, 1
    assert [schedules.ramp("linear", 2, 0, i, 5) for i in range(5)] == [2, 1.5, 1, 0.5, 0]
    assert schedules.ramp("constant", 3, 0, 4, 5) == 3
    assert schedules.ramp("cosine", 2, 0, 1, 5) == pytest.approx(1 + math.cos(math.pi / 4))  # 1.7071
    assert schedules.ramp("cosine", 2, 0, 2, 5) == pytest.approx(1.0)
    assert schedules.ramp("power", 1, 9, 2, 5, exponent=2) == pytest.approx(3.0)  # 1 + 8·0.25
    assert schedules.ramp("exponential", 2, 0.5, 2, 5) == pytest.approx(1.0)   # 2·(1/4)^(1/2)
    with pytest.raises(ValueError):
        schedules.ramp("exponential", 2, 0, 1, 5)


def test_maskgit_temperature():
    assert schedules.maskgit_temperature(4.5, 0, 5) == pytest.approx(3.6)
    assert schedules.maskgit_temperature(4.5, 4, 5) == 0.0


def test_noise_regularization_sigma_by_hand():
    # T = 5, s = 2: t = 4, 3, 2, 1, 0 → 2|cos(π t/4)| = 2, √2, 0, √2, 2
    sig = [schedules.noise_regularization_sigma("cosine", 2.0, i, 5) for i in range(5)]
    assert sig == pytest.approx([2, math.sqrt(2), 0, math.sqrt(2), 2], abs=1e-6)  # float32, as the reference
    assert [schedules.noise_regularization_sigma("linear", 2.0, i, 5) for i in range(5)] == [2, 1.5, 1, 0.5, 0]
    assert schedules.noise_regularization_sigma("constant", 0.7, 3, 5) == 0.7
    # the reference note's numbers at T = 64: 1.40 at i = T/4, 0.05 at i = T/2, 1.47 at i = 3T/4
    assert schedules.noise_regularization_sigma("cosine", 2.0, 16, 64) == pytest.approx(1.40, abs=0.01)
    assert schedules.noise_regularization_sigma("cosine", 2.0, 32, 64) == pytest.approx(0.05, abs=0.01)
    assert schedules.noise_regularization_sigma("cosine", 2.0, 48, 64) == pytest.approx(1.47, abs=0.01)


@pytest.mark.parametrize("spec, expected", [
    ({"name": "gumbel"}, [2.0, 1.5, 1.0, 0.5, 0.0]),
    ({"name": "gumbel", "start": 1.0, "schedule": "constant"}, [1.0] * 5),
    ({"name": "gumbel", "start": 2.0, "end": 0.0, "schedule": "cosine"}, [2.0, 1 + math.cos(math.pi / 4), 1.0,
                                                                          1 - math.cos(math.pi / 4), 0.0]),
    ({"name": "gumbel", "start": 2.0, "end": 0.125, "schedule": "exponential"}, [2.0, 1.0, 0.5, 0.25, 0.125]),
    ({"name": "gumbel", "start": 4.5, "schedule": "maskgit"}, [3.6, 2.7, 1.8, 0.9, 0.0]),
])
def test_gumbel_temperature_schedules(spec, expected):
    confidence = build_component("confidence", spec)

    class C:
        total_steps, device = 5, torch.device("cpu")

    values = []
    for step in range(5):
        C.step = step
        values.append(float(confidence.temperature(C)))
    assert values == pytest.approx(expected, abs=1e-6)
