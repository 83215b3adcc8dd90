"""Differential sampling (arXiv 2411.10781 §3; reference §2.2) on a 4-token example worked by hand."""
from __future__ import annotations

import math

import pytest
import torch

from samplers.components import build_component
from samplers.differential import corrected_distribution, kl_per_position
from samplers.engine import SamplerEngine
from samplers.variant import build_variant
from catalogue_fakes import FixedLogits, generate, make_ctx

# 4 positions, codebook of 3. previous → current:
PREV = torch.tensor([[[0.2, 0.3, 0.5], [0.4, 0.4, 0.2], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2]]])
CUR = torch.tensor([[[0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]])
# KL by hand: 0;  .5 ln 1.25 + .3 ln .75 = .02527;  .1 ln .125 + .8 ln 8 = 1.4557;  .6 ln 3 + .2 ln(1/3) = .4394
KL = [0.0, 0.5 * math.log(1.25) + 0.3 * math.log(0.75), 0.1 * math.log(0.125) + 0.8 * math.log(8),
      0.6 * math.log(3) + 0.2 * math.log(1 / 3)]


def test_kl_per_position_by_hand():
    assert kl_per_position(CUR, PREV)[0].tolist() == pytest.approx(KL, abs=1e-6)
    assert KL[1] == pytest.approx(0.02527, abs=1e-5) and KL[3] == pytest.approx(0.4394, abs=1e-4)


def test_corrected_distribution_by_hand():
    out = corrected_distribution(CUR, PREV, 1e-6)[0]
    # position 1: max(p − p_prev, 1e-6) = (0.1, 1e-6, 1e-6) → / 0.100002
    assert out[1].tolist() == pytest.approx([0.1 / 0.100002, 1e-6 / 0.100002, 1e-6 / 0.100002], rel=1e-4)
    # position 0 did not change: every entry is the floor → uniform
    assert out[0].tolist() == pytest.approx([1 / 3] * 3, rel=1e-5)
    # position 3: (0.4, 1e-6, 1e-6)
    assert out[3, 0].item() == pytest.approx(0.4 / 0.400002, rel=1e-5)


def _run_two_steps(spec, unknown):
    corrector = build_component("probability_corrector", spec)
    generation = make_ctx(0, 5, unknown).generation
    first = corrector(PREV.clone(), make_ctx(0, 5, unknown, generation=generation))
    second = corrector(CUR.clone(), make_ctx(1, 5, unknown, generation=generation))
    return first, second


@pytest.mark.parametrize("scope, unknown, chosen", [
    # all 4 positions ranked, floor(0.5·4) = 2 smallest KL: positions 0 and 1
    ("all", [True, True, True, True], {0, 1}),
    ("all", [False, True, True, True], {0, 1}),
    # only masked positions ranked: candidates {1, 2, 3}, floor(0.5·3) = 1 → position 1
    ("masked", [False, True, True, True], {1}),
    # candidates {0, 2, 3}, one chosen: position 0 (KL 0)
    ("masked", [True, False, True, True], {0}),
])
def test_the_kl_selected_token_set(scope, unknown, chosen):
    unknown = torch.tensor([unknown])
    first, second = _run_two_steps({"name": "differential", "fraction": 0.5, "scope": scope}, unknown)
    assert torch.equal(first, PREV)  # no previous step: pass-through
    corrected = corrected_distribution(CUR, PREV, 1e-6)
    for j in range(4):
        expected = corrected[0, j] if j in chosen else CUR[0, j]
        assert torch.allclose(second[0, j], expected), f"position {j}"


def test_default_fraction_is_three_quarters_of_the_masked():
    unknown = torch.ones(1, 4, dtype=torch.bool)
    _, second = _run_two_steps("differential", unknown)  # floor(0.75·4) = 3 → all but position 2
    changed = [not torch.allclose(second[0, j], CUR[0, j]) for j in range(4)]
    assert changed == [True, True, False, True]


def test_last_step_passes_through_unless_asked():
    unknown = torch.ones(1, 4, dtype=torch.bool)
    for last_step, expect_change in ((False, False), (True, True)):
        corrector = build_component("probability_corrector", {"name": "differential", "last_step": last_step})
        generation = make_ctx(0, 2, unknown).generation
        corrector(PREV.clone(), make_ctx(0, 2, unknown, generation=generation))
        out = corrector(CUR.clone(), make_ctx(1, 2, unknown, generation=generation))
        assert (not torch.equal(out, CUR)) == expect_change


def test_previous_is_the_corrected_or_the_model_distribution():
    unknown = torch.ones(1, 4, dtype=torch.bool)
    for previous, stored in (("corrected", None), ("model", CUR)):
        corrector = build_component("probability_corrector", {"name": "differential", "previous": previous})
        generation = make_ctx(0, 5, unknown).generation
        corrector(PREV.clone(), make_ctx(0, 5, unknown, generation=generation))
        out = corrector(CUR.clone(), make_ctx(1, 5, unknown, generation=generation))
        kept = generation.component_state[id(corrector)]["history"][1]
        assert torch.equal(kept, out if stored is None else stored)


def test_state_is_scoped_to_one_generation():
    """The reference keeps p_prev on the scheduler: a second image starts from the first's. Ours does not."""
    model = FixedLogits(6, 16, 8, seed=3)
    variant = build_variant("differential")
    engine = SamplerEngine(model)
    first = engine.generate(variant, {}, [5], (4, 4), 6, 3.0)
    engine.generate(variant, {}, [9], (4, 4), 6, 3.0)
    again = engine.generate(variant, {}, [5], (4, 4), 6, 3.0)
    assert torch.equal(first.tokens, again.tokens)


def test_fraction_zero_is_the_vanilla_step():
    model = FixedLogits(8, 16, 8, seed=1)
    for seed in range(3):
        vanilla = generate(model, "vanilla", [seed])
        tables = {"d0": {"probability_correctors": [{"name": "differential", "fraction": 0.0}]}}
        assert torch.equal(generate(model, "d0", [seed], tables=tables).tokens, vanilla.tokens)


def test_differential_changes_the_samples():
    model = FixedLogits(8, 16, 8, seed=1)
    assert not all(torch.equal(generate(model, "differential", [s]).tokens, generate(model, "vanilla", [s]).tokens)
                   for s in range(4))


def test_a_second_differential_is_refused():
    from mgt_common.errors import ConfigError
    with pytest.raises(ConfigError, match="appears 2 times"):
        build_variant("dd", {"dd": {"probability_correctors": ["differential", "differential"]}})
