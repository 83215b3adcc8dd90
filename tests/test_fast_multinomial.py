"""`randomness.multinomial` is torch.multinomial, token for token and generator state for generator state.

The CPU fast path (`exponential_race`) replays torch.multinomial's exponential race from the same
uniforms; these tests compare the two on peaked, flat, sparse, tied, unnormalised and one-hot rows,
across chunk boundaries, and check that invalid rows still raise torch's own error.
"""
from __future__ import annotations

import pytest
import torch

from samplers import randomness


def _rows(kind: str, rows: int, vocab: int, seed: int) -> torch.Tensor:
    source = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=source)
    if kind == "peaked":
        return (logits * 25).softmax(-1)
    if kind == "flat":
        return (logits * 0.01).softmax(-1)
    if kind == "mixed":
        return (logits * torch.linspace(0.05, 30, rows)[:, None]).softmax(-1)
    if kind == "sparse":
        probs = (logits * 3).softmax(-1)
        probs[:, ::2] = 0.0
        return probs
    if kind == "ties":
        return torch.full((rows, vocab), 1.0 / vocab)
    if kind == "one-hot":
        return torch.nn.functional.one_hot(torch.randint(vocab, (rows,), generator=source), vocab).float()
    if kind == "unnormalised":
        return (logits * 2).exp() * 1e-3
    raise ValueError(kind)


def _both(probs: torch.Tensor, seed: int):
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    got = randomness.multinomial([ours], probs[None])[0]
    expected = torch.multinomial(probs, 1, generator=theirs)[:, 0]
    return got, expected, ours, theirs


@pytest.mark.parametrize("kind", ["peaked", "flat", "mixed", "sparse", "ties", "one-hot", "unnormalised"])
@pytest.mark.parametrize("vocab", [2, 7, 300])
def test_equals_torch_multinomial(kind, vocab):
    assert randomness._race_matches_torch()
    for seed in range(4):
        probs = _rows(kind, 64, vocab, seed)
        got, expected, ours, theirs = _both(probs, seed)
        assert torch.equal(got, expected), (kind, vocab, seed)
        assert torch.equal(ours.get_state(), theirs.get_state())
        # the stream goes on identically: the next draws (the confidence's uniforms) agree
        assert torch.equal(torch.rand(5, generator=ours), torch.rand(5, generator=theirs))


def test_equals_torch_multinomial_across_chunks_at_codebook_size():
    probs = _rows("mixed", 300, 8192, 0)  # 256 rows of 8192 per chunk: one boundary inside
    got, expected, ours, theirs = _both(probs, 11)
    assert torch.equal(got, expected)
    assert torch.equal(ours.get_state(), theirs.get_state())


@pytest.mark.parametrize("bad", ["nan", "negative", "zero-row", "inf"])
def test_invalid_rows_raise_torchs_error(bad):
    probs = _rows("peaked", 8, 16, 0)
    if bad == "nan":
        probs[3, 2] = float("nan")
    elif bad == "negative":
        probs[1, 0] = -0.5
    elif bad == "zero-row":
        probs[5] = 0.0
    else:
        probs[0, 0] = float("inf")
    with pytest.raises(RuntimeError):
        randomness.multinomial([torch.Generator().manual_seed(0)], probs[None])
