"""Masked Z-sampling (arXiv 2411.10781 §3; reference §2.3): re-mask count, forward passes, batches."""
from __future__ import annotations

import pytest
import torch

from mgt_common.errors import ConfigError
from samplers.engine import SamplerEngine
from samplers.variant import build_variant
from samplers.zigzag import most_confident
from catalogue_fakes import MASK, FixedLogits, generate


def test_most_confident_by_hand():
    score = torch.tensor([[0.9, 0.2, 0.8, 0.95, 0.5]])
    candidates = torch.tensor([[True, True, True, False, True]])  # position 3 is masked: never chosen
    assert most_confident(score, candidates, torch.tensor([2]))[0].tolist() == [True, False, True, False, False]
    assert not most_confident(score, candidates, torch.tensor([0])).any()


def test_remask_count_and_forward_passes_by_hand():
    """N = 16, T = 4, cosine: floor(16·cos(π(i+1)/8)) = 14, 11, 6 stay masked after steps 0, 1, 2.

    Step 0: 16 → 14, revealed 2 → re-mask n = 1 → re-denoise from 15 masked → 14.
    Step 1: 14 → 11, revealed 3 → n = 2 → re-denoise from 13 masked → 11.
    Step 2: 11 → 6, revealed 5 → n = 4 → re-denoise from 10 masked → 6.
    Step 3: plain last step. Forward passes 3·(4 − 1) + 1 = 10.
    """
    model = FixedLogits(4, 16, 8, seed=2)
    generation = generate(model, "zigzag", seeds=[0, 1, 2])
    assert model.forward_passes == 10
    assert generation.forward_passes.tolist() == [10, 10, 10]
    assert build_variant("zigzag").forward_passes(4) == 10
    masked_in = [int((tokens[0] == MASK).sum()) for tokens, _, _ in model.calls]
    #           denoise, inversion, re-denoise per step; then the last step
    assert masked_in == [16, 14, 15, 14, 11, 13, 11, 6, 10, 6]
    steps = [step for _, step, _ in model.calls]
    assert steps == [0, 1, 0, 1, 2, 1, 2, 3, 2, 3]  # the inversion sees the next step's timestep
    # the trajectory has one entry per step (after the re-denoise): the schedule's counts
    assert [row[0] for row in generation.trajectory] == [14, 11, 6, 0]


def test_inversion_remasks_the_most_confident_committed_tokens_under_w_inv():
    model = FixedLogits(4, 16, 8, seed=4)
    generate(model, "zigzag", seeds=[7])
    x_prime, step, with_uncond = model.calls[4]  # step 1's inversion input
    assert with_uncond  # w_inv = 0: the unconditional logits are needed
    x_second = model.calls[5][0]
    reopened = (x_prime != MASK) & (x_second == MASK)
    assert int(reopened.sum()) == 2  # 14 → 11 revealed 3, n = 3 − 1
    # w_inv = 0 → q = softmax(uncond logits at step 2); the re-opened are the 2 committed with largest max q
    peak = model.uncond[step].softmax(-1).max(-1).values
    committed = (x_prime[0] != MASK)
    top2 = sorted(peak[committed].topk(2).values.tolist())
    assert sorted(peak[reopened[0]].tolist()) == pytest.approx(top2)


def test_inversion_guidance_one_uses_the_conditional_only():
    model = FixedLogits(4, 16, 8, seed=4)
    generate(model, "zz1", seeds=[7], tables={"zz1": {"loop": {"name": "zigzag", "inversion_guidance": 1.0}}})
    assert [with_uncond for _, _, with_uncond in model.calls][1::3][:3] == [False, False, False]


@pytest.mark.parametrize("variant", ["zigzag", "zigzag+noise-reg", "zigzag+differential"])
def test_batch_of_three_equals_three_batches_of_one(variant):
    model = FixedLogits(5, 16, 8, seed=5)
    together = generate(model, variant, seeds=[3, 4, 5])
    for row, seed in enumerate([3, 4, 5]):
        assert torch.equal(generate(model, variant, seeds=[seed]).tokens[0], together.tokens[row])


def test_zigzag_with_remdm_is_refused():
    with pytest.raises(ConfigError, match="zigzag"):
        build_variant("zz-remdm", {"zz-remdm": {"base": "zigzag", "remask": "remdm"}})


def test_zigzag_costs_what_it_declares_with_every_processor():
    model = FixedLogits(6, 16, 8, seed=1)
    variant = build_variant("zz-all", {"zz-all": {
        "base": "zigzag", "logits_processors": ["noise-regularization"], "probability_correctors": ["differential"],
        "guidance": "cosine", "confidence": "halton", "token_sampler": {"name": "top-p", "p": 0.8}}})
    generation = SamplerEngine(model).generate(variant, {}, [0, 1], (4, 4), 6, 3.0)
    assert generation.forward_passes.tolist() == [16, 16] == [variant.forward_passes(6)] * 2
    assert not bool((generation.tokens == MASK).any())


def test_differential_still_corrects_the_re_denoise_when_the_inversion_runs_processors():
    """Zig-zag calls the corrector at steps 0, 1 (inversion), 0, 1, 2 (inversion), 1: the last call, the
    re-denoise of step 1, must still find step 0's distribution although step 2 was recorded since."""
    from samplers.components import build_component
    from catalogue_fakes import make_ctx
    corrector = build_component("probability_corrector", "differential")
    unknown = torch.ones(1, 6, dtype=torch.bool)
    generation = make_ctx(0, 5, unknown).generation
    probs = torch.rand(6, 1, 6, 4, generator=torch.Generator().manual_seed(0)).softmax(-1)
    out = None
    for call, step in enumerate([0, 1, 0, 1, 2, 1]):
        out = corrector(probs[call], make_ctx(step, 5, unknown, generation=generation))
    assert not torch.equal(out, probs[5])
