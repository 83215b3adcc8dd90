"""The content-hash score cache: re-scoring costs nothing, new metrics score only themselves, writes are atomic."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from metrics.base import PerImageMetric, ScoreBatch
from metrics.hpsv2 import HPSv2
from metrics.score_cache import ScoreCache, image_sha256, read_image, score_with_cache


class Counting(PerImageMetric):
    """Mean pixel value plus prompt length; counts loads, calls and images."""

    name = "counting"

    def __init__(self, fail_after: int | None = None, **params):
        super().__init__(**params)
        self.loads = self.calls = self.images = 0
        self.fail_after = fail_after

    def load(self):
        self.loads += 1

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.images += len(batch.prompts)
        return batch.images.double().mean(dim=(1, 2, 3)) + torch.tensor([len(p) for p in batch.prompts], dtype=torch.float64)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        size = (32, 32) if i < 4 else (16, 24)  # two sizes: batches must group them
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


PROMPTS = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]


def test_image_hash_is_sha256_of_file_bytes(images):
    assert image_sha256(images[0]) == hashlib.sha256(images[0].read_bytes()).hexdigest()
    assert image_sha256(images[0].read_bytes()) == image_sha256(images[0])


def test_rescoring_a_finished_run_costs_nothing(images, tmp_path):
    metric = Counting(batch_size=3)
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        first = score_with_cache(metric, cache, images, PROMPTS)
    assert metric.images == 6 and metric.loads == 1
    expected = torch.tensor([read_image(p).double().mean().item() + len(t) for p, t in zip(images, PROMPTS)], dtype=torch.float64)
    torch.testing.assert_close(first, expected)
    again = Counting(batch_size=3)
    with ScoreCache(tmp_path / "scores.sqlite") as cache:  # a new process: a new connection to the same file
        second = score_with_cache(again, cache, images, PROMPTS)
    assert again.loads == 0 and again.calls == 0
    assert torch.equal(first, second)


def test_adding_a_metric_scores_only_what_is_new(images, tmp_path):
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        score_with_cache(Counting(), cache, images[:4], PROMPTS[:4])
        more = Counting()
        score_with_cache(more, cache, images, PROMPTS)  # two new images
        assert more.images == 2
        other = Counting(offset=1)  # other params -> other cache_id -> scored afresh
        score_with_cache(other, cache, images, PROMPTS)
        assert other.images == 6
        assert len(cache.scorers()) == 2


def test_prompt_is_part_of_the_key_and_duplicates_score_once(images, tmp_path):
    metric = Counting()
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        scores = score_with_cache(metric, cache, [images[0]] * 3, ["x", "yy", "x"])
    assert metric.images == 2
    assert scores[0] == scores[2] and scores[1] == scores[0] + 1


def test_interrupted_scoring_keeps_finished_batches(images, tmp_path):
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        with pytest.raises(KeyboardInterrupt):
            score_with_cache(Counting(batch_size=2, fail_after=1), cache, images[:4], PROMPTS[:4])
        assert len(cache) == 2  # the first batch was committed, nothing half-written
        resumed = Counting(batch_size=2)
        score_with_cache(resumed, cache, images[:4], PROMPTS[:4])
        assert resumed.images == 2


def test_cached_hps_scores_need_no_weights(images, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scorer = HPSv2(version="v2.0", model="ViT-H-14")  # the 2 GB checkpoint is not on this machine
    keys = {(image_sha256(p), hashlib.sha256(t.encode()).hexdigest()): float(i) for i, (p, t) in enumerate(zip(images, PROMPTS))}
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        cache.put(scorer.cache_id, keys)
        scores = score_with_cache(scorer, cache, images, PROMPTS)
    assert scores.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert scorer._model is None  # never loaded


def test_no_cache_still_scores(images):
    metric = Counting(batch_size=4)
    scores = score_with_cache(metric, None, images, PROMPTS)
    assert metric.images == 6 and scores.dtype == torch.float64
    with pytest.raises(ValueError, match="prompts"):
        score_with_cache(metric, None, images, PROMPTS[:2])


class TokenSum(Counting):
    name = "token-sum"
    needs = frozenset({"tokens"})

    def score(self, batch):
        self.images += len(batch.prompts)
        return batch.tokens.double().sum(dim=1)


def test_token_metrics_key_on_the_tokens_too(images, tmp_path):
    same_png = [images[0], images[0]]
    tokens = [torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])]  # two grids that (here) share one PNG
    metric = TokenSum()
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        scores = score_with_cache(metric, cache, same_png, ["p", "p"], tokens=tokens)
        assert scores.tolist() == [6.0, 15.0] and metric.images == 2
        again = TokenSum()
        assert score_with_cache(again, cache, same_png, ["p", "p"], tokens=tokens).tolist() == [6.0, 15.0]
        assert again.images == 0
