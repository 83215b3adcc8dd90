"""Issue 7: the memory-saving forms of the token samplers and noise regularization (chunks of positions,
in-place noise) are bit-identical to the straightforward whole-tensor forms written out here: same tokens,
same noisy logits, same generator states afterwards, across chunk boundaries and both multinomial paths."""
from __future__ import annotations

import types

import pytest
import torch

from samplers import randomness, token_samplers
from samplers.noise_regularization import NoiseRegularization
from samplers.token_samplers import GumbelMaxFloat64, MultinomialSampler, TopKSampler, TopPSampler


def ctx(seeds, step=1, total=6):
    return types.SimpleNamespace(generators=[randomness.make_generator(s) for s in seeds], step=step,
                                 total_steps=total)


def tempered(probs, tau):
    return probs if tau == 1.0 else (torch.log(probs) / tau).softmax(dim=-1)


# -- the whole-tensor forms (the code before issue 7's chunking) ------------------------------------------

def ref_multinomial(sampler, probs, c):
    return randomness.multinomial(c.generators, tempered(probs, sampler.sampling_temperature(c)))


def ref_top_k(sampler, probs, c):
    probs = tempered(probs, sampler.sampling_temperature(c))
    kth = probs.topk(min(sampler.k, probs.shape[-1]), dim=-1).values[..., -1:]
    return randomness.multinomial(c.generators, torch.where(probs >= kth, probs, torch.zeros_like(probs)))


def ref_top_p(sampler, probs, c):
    probs = tempered(probs, sampler.sampling_temperature(c))
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs < sampler.p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return randomness.multinomial(c.generators, torch.where(keep, probs, torch.zeros_like(probs)))


def ref_gumbel(sampler, probs, c):
    probs = tempered(probs, sampler.sampling_temperature(c))
    out = torch.empty(probs.shape[:-1], dtype=torch.long)
    for row, generator in enumerate(c.generators):
        u = randomness.uniform([generator], tuple(probs.shape[1:]), probs.device, torch.float64)[0]
        gumbel = -torch.log(-torch.log(u.clamp(min=torch.finfo(torch.float64).tiny)))
        out[row] = (torch.log(probs[row].double()) + gumbel).argmax(dim=-1)
    return out


CASES = [
    (MultinomialSampler(temperature=0.8), ref_multinomial),
    (MultinomialSampler(temperature=1.2, temperature_end=0.6, temperature_schedule="linear"), ref_multinomial),
    (TopKSampler(k=9), ref_top_k),
    (TopKSampler(k=5, temperature=1.3), ref_top_k),
    (TopPSampler(p=0.9), ref_top_p),
    (TopPSampler(p=0.5, temperature=0.7), ref_top_p),
    (GumbelMaxFloat64(), ref_gumbel),
    (GumbelMaxFloat64(temperature=0.8), ref_gumbel),
]


@pytest.mark.parametrize("entries", [1, 300 * 7, 1 << 20])  # one position, 7 (uneven chunks), all at once
@pytest.mark.parametrize("race", [None, False])  # the exponential race, and torch.multinomial itself
@pytest.mark.parametrize("sampler,reference", CASES, ids=[f"{s.name}-{i}" for i, (s, _) in enumerate(CASES)])
def test_chunked_samplers_match_whole_tensor_form(sampler, reference, entries, race, monkeypatch):
    monkeypatch.setattr(token_samplers, "_CHUNK_ENTRIES", entries)
    monkeypatch.setattr(randomness, "_race_checked", race)
    logits = torch.randn(2, 45, 300, generator=torch.Generator().manual_seed(3)) * 3
    probs = logits.softmax(dim=-1)
    probs[1, 4, :] = probs[1, 4, :].max()  # a tied row: top-k keeps every tie, top-p sorts ties
    probs[1, 4] /= probs[1, 4].sum()
    before = probs.clone()
    ours, theirs = ctx([11, 12]), ctx([11, 12])
    assert torch.equal(sampler.sample(probs, ours), reference(sampler, probs, theirs))
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(ours.generators, theirs.generators))
    assert torch.equal(probs, before)  # the confidence reads the untempered probabilities afterwards


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_in_place_noise_matches_whole_tensor_form(dtype):
    logits = (torch.randn(2, 40, 256, generator=torch.Generator().manual_seed(5)) * 4).to(dtype)
    before = logits.clone()
    processor = NoiseRegularization()
    ours, theirs = ctx([1, 2], step=0), ctx([1, 2], step=0)
    sigma = processor.sigma(0, theirs.total_steps)
    noise = randomness.normal(theirs.generators, tuple(logits.shape[1:]), logits.device, torch.float32)
    out = processor(logits, ours)
    assert out.dtype == torch.float32 and torch.equal(out, logits.float() + sigma * noise)
    assert torch.equal(logits, before)
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(ours.generators, theirs.generators))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("w,with_uncond", [(9.0, True), (1.0, True), (9.0, False), (0.0, True)])
@pytest.mark.parametrize("entries", [1, 256 * 7, 1 << 18])  # one position a chunk, uneven chunks, all at once
def test_chunked_guided_softmax_matches_combine_then_softmax(dtype, w, with_uncond, entries, monkeypatch):
    """Issue 12, item 4: the engine's chunked CFG + softmax is bit-identical to `Guidance.combine` followed by
    the float32 softmax, at every chunk size, in every logits dtype, and leaves the model's logits alone."""
    from samplers import engine as engine_module
    from samplers.guidance import FixedGuidance

    monkeypatch.setattr(engine_module, "_GUIDED_CHUNK_ENTRIES", entries)
    source = torch.Generator().manual_seed(9)
    cond = (torch.randn(2, 45, 256, generator=source) * 4).to(dtype)
    uncond = (torch.randn(2, 45, 256, generator=source) * 4).to(dtype) if with_uncond else None
    kept = [t.clone() for t in (cond, uncond) if t is not None]
    guidance = FixedGuidance(scale_value=w)
    expected = guidance.combine(cond, uncond, types.SimpleNamespace()).float().softmax(dim=-1)
    ours = engine_module.guided_softmax_float32(cond, uncond, w)
    assert ours.dtype == torch.float32 and torch.equal(ours, expected)
    assert all(torch.equal(a, b) for a, b in zip(kept, [t for t in (cond, uncond) if t is not None]))


def test_chunked_guided_softmax_reads_strided_logits():
    """The backends hand over views (the cond and uncond halves of one forward, a transposed layout)."""
    from samplers.engine import guided_softmax_float32

    both = torch.randn(4, 30, 128, generator=torch.Generator().manual_seed(2))
    uncond, cond = both[:2], both[2:]
    strided = torch.randn(2, 128, 30, generator=torch.Generator().manual_seed(3)).transpose(1, 2)
    assert torch.equal(guided_softmax_float32(cond, uncond, 5.0), (uncond + 5.0 * (cond - uncond)).softmax(-1))
    assert torch.equal(guided_softmax_float32(strided, None, 5.0), strided.softmax(-1))
