"""CLIP score: 100 · max(cos, 0) per image with a configurable OpenCLIP model (a tiny one here), offline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from metrics.base import METRICS, ScoreBatch  # noqa: E402
from metrics.clip_score import CLIPScore  # noqa: E402
from mgt_common.errors import ConfigError, MissingWeightsError  # noqa: E402

TINY = "TinyCLIP-clipscore-test"
PROMPTS = ["a red cube", "a photo of a dog", "an oil painting of the sea", "text", "a bicycle", "green"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinyclip")
    (root / f"{TINY}.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(root)
    torch.manual_seed(1)
    model = open_clip.create_model(TINY, pretrained=None)
    checkpoint = root / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "cache"))


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, 80, 96), dtype=np.uint8)).float() / 255


def independent_cosines(checkpoint, batch: torch.Tensor, prompts) -> torch.Tensor:
    """cos(image, text) with the model's own OpenCLIP transform on each PIL image, one at a time."""
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=str(checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer(TINY)
    out = []
    with torch.no_grad():
        for image, prompt in zip(batch, prompts):
            pil = Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())
            i = model.encode_image(preprocess(pil)[None])
            t = model.encode_text(tokenizer([prompt]))
            out.append(torch.nn.functional.cosine_similarity(i, t)[0])
    return torch.stack(out).double()


def test_score_is_100_times_clamped_cosine(tiny):
    batch = images(6)
    scores = CLIPScore(model=TINY, pretrained=str(tiny), batch_size=4).score(ScoreBatch(images=batch, prompts=PROMPTS))
    cos = independent_cosines(tiny, batch, PROMPTS)
    assert scores.dtype == torch.float64 and scores.shape == (6,)
    torch.testing.assert_close(scores, 100 * cos.clamp(min=0), atol=1e-4, rtol=0)
    assert (cos < 0).any() and (cos > 0).any()  # both branches of max(·, 0) were exercised
    assert (scores[cos < 0] == 0).all()


def test_batch_size_does_not_change_scores(tiny):
    batch = images(5, seed=3)
    a = CLIPScore(model=TINY, pretrained=str(tiny), batch_size=1).score(ScoreBatch(images=batch, prompts=PROMPTS[:5]))
    b = CLIPScore(model=TINY, pretrained=str(tiny), batch_size=8).score(ScoreBatch(images=batch, prompts=PROMPTS[:5]))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_long_captions_are_truncated_and_counted(tiny):
    scorer = CLIPScore(model=TINY, pretrained=str(tiny))
    long = "a very long caption " * 30
    scores = scorer.score(ScoreBatch(images=images(3), prompts=[long, long + "!", "short"]))
    assert torch.isfinite(scores).all()
    assert len(scorer.truncated_prompts) == 2 and "2 distinct" in scorer.notes()[0]
    assert scorer.count_truncated([long, "short"]) == 1


def test_manifest_and_cache_identity(tiny):
    default = METRICS.get("clip_score")()
    info = default.describe()
    assert info["model"] == "ViT-L-14" and info["pretrained"] == "openai" and info["higher_is_better"]
    assert default.cache_id != CLIPScore(model="ViT-B-32", pretrained="openai").cache_id
    assert CLIPScore(model=TINY, pretrained=str(tiny)).weights_id().startswith("sha256:")


def test_missing_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match="ViT-L-14/openai.*pretrained"):
        CLIPScore().load()
    with pytest.raises(ConfigError, match="pretrained tag"):
        CLIPScore(model=TINY, pretrained="no-such-tag").load()
