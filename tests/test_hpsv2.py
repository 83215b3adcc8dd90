"""HPSv2 scorer: checkpoint format -> strict load -> reference preprocessing -> batched score, offline.

A tiny OpenCLIP config stands in for ViT-H-14 (building ViT-H-14 takes 18 s and 4 GB). The reference
below is written independently from the published facts of HPSv2's validation transform and score
(shared/reference/ecosystem-notes.md): PIL -> ToTensor -> bicubic tensor resize of the longest side to
224 -> centred zero padding -> OpenAI mean/std; score = diagonal of image_features @ text_features.T.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from metrics.base import METRICS, ScoreBatch  # noqa: E402
from metrics.hpsv2 import HPSv2, hps_preprocess  # noqa: E402
from mgt_common.errors import ConfigError, MissingWeightsError  # noqa: E402

TINY = "TinyCLIP-hps-test"
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
PROMPTS = ["a red cube on a table", "an astronaut riding a horse, oil painting", "a cat", "two dogs in the snow at night"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny OpenCLIP config registered under TINY, and an HPS-format checkpoint of random weights."""
    root = tmp_path_factory.mktemp("tinyclip")
    (root / f"{TINY}.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(root)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    checkpoint = root / "HPS_v2.1_compressed.pt"
    # The published files hold the OpenCLIP weights under 'state_dict' (fp16 in the "compressed" files)
    torch.save({"state_dict": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}}, checkpoint)
    return root, checkpoint


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def reference_preprocess(image: Image.Image, antialias: bool = True) -> torch.Tensor:
    """HPSv2's validation transform, hand-built from its description (no torchvision, no code of ours)."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)).permute(2, 0, 1)
    h, w = x.shape[1:]
    scale = 224 / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    x = F.interpolate(x[None], size=(nh, nw), mode="bicubic", align_corners=False, antialias=antialias)[0]
    out = torch.zeros(3, 224, 224)
    top, left = (224 - nh) // 2, (224 - nw) // 2
    out[:, top:top + nh, left:left + nw] = x
    return (out - MEAN) / STD


def reference_scores(checkpoint, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
    """Raw HPS cosines the way the reference computes them: model(image, text) -> diag(I @ T.T)."""
    model = open_clip.create_model(TINY, pretrained=None, output_dict=True)  # as the reference builds it
    model.load_state_dict(torch.load(checkpoint, map_location="cpu")["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(TINY)
    out = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts):  # one image per call, as hpsv2.score
            result = model(reference_preprocess(image)[None], tokenizer([prompt]))
            out.append(torch.diagonal(result["image_features"] @ result["text_features"].T)[0])
    return torch.stack(out)


def random_images(n: int, h: int, w: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def as_batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i, dtype=np.uint8)).permute(2, 0, 1) for i in images]).float() / 255


@pytest.mark.parametrize("size", [(170, 300), (300, 170), (224, 224), (512, 512)])
def test_preprocessing_matches_hand_built_reference(size):
    image = random_images(1, *size, seed=sum(size))[0]
    ours = hps_preprocess(as_batch([image]))[0]
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, reference_preprocess(image), atol=1e-5, rtol=0)
    if size[0] != size[1]:  # the padding really is zero (before normalisation) and centred
        raw = ours * STD + MEAN
        border = raw[:, :20, :] if size[0] < size[1] else raw[:, :, :20]
        assert border.abs().max() < 1e-6


def test_preprocessing_antialias_switch_matters_and_matches():
    image = random_images(1, 700, 1000, seed=3)[0]
    old = hps_preprocess(as_batch([image]), antialias=False)[0]
    torch.testing.assert_close(old, reference_preprocess(image, antialias=False), atol=1e-5, rtol=0)
    assert (old - hps_preprocess(as_batch([image]))[0]).abs().max() > 1e-2


def test_end_to_end_matches_reference_scores(tiny):
    _, checkpoint = tiny
    images = random_images(4, 160, 256, seed=1)
    scorer = HPSv2(version="v2.1", checkpoint=str(checkpoint), model=TINY, batch_size=4)
    ours = scorer.score(ScoreBatch(images=as_batch(images), prompts=PROMPTS))
    assert ours.dtype == torch.float64 and ours.shape == (4,)
    expected = 100 * reference_scores(checkpoint, images, PROMPTS).double()
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)  # 1e-6 on the raw cosine
    assert ours.std() > 0.1  # the images and prompts really are told apart


def test_batch_size_never_changes_a_score(tiny):
    _, checkpoint = tiny
    images = as_batch(random_images(7, 96, 128, seed=2))
    prompts = [PROMPTS[i % 4] for i in range(7)]
    scores = [HPSv2(checkpoint=str(checkpoint), model=TINY, batch_size=bs).score(ScoreBatch(images=images, prompts=prompts))
              for bs in (1, 3, 8)]
    for other in scores[1:]:
        torch.testing.assert_close(other, scores[0], atol=1e-4, rtol=0)
    # and an image's score does not depend on its batch neighbours
    alone = HPSv2(checkpoint=str(checkpoint), model=TINY, batch_size=8).score(ScoreBatch(images=images[2:3], prompts=prompts[2:3]))
    torch.testing.assert_close(alone, scores[0][2:3], atol=1e-4, rtol=0)


def test_strict_load_rejects_mismatched_checkpoints(tiny, tmp_path):
    _, checkpoint = tiny
    state = torch.load(checkpoint)["state_dict"]
    missing = dict(state)
    missing.pop(next(iter(missing)))
    torch.save({"state_dict": missing}, tmp_path / "missing.pt")
    torch.save({"state_dict": {**state, "extra.weight": torch.zeros(1)}}, tmp_path / "extra.pt")
    torch.save(state, tmp_path / "bare.pt")
    batch = ScoreBatch(images=torch.rand(1, 3, 64, 64), prompts=["x"])
    for name, message in (("missing.pt", "does not match"), ("extra.pt", "does not match"), ("bare.pt", "state_dict")):
        with pytest.raises(ConfigError, match=message):
            HPSv2(checkpoint=str(tmp_path / name), model=TINY).score(batch)
    # a checkpoint holding arbitrary Python objects is refused unless the user trusts it
    import argparse

    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1)}, tmp_path / "pickled.pt")
    with pytest.raises(ConfigError, match="allow_pickle"):
        HPSv2(checkpoint=str(tmp_path / "pickled.pt"), model=TINY).score(batch)
    assert HPSv2(checkpoint=str(tmp_path / "pickled.pt"), model=TINY, allow_pickle=True).score(batch).shape == (1,)


def test_missing_weights_offline_says_what_and_how(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    scorer = HPSv2(version="v2.0", model=TINY)
    with pytest.raises(MissingWeightsError) as info:
        scorer.load()
    message = str(info.value)
    assert "HPS_v2_compressed.pt" in message and "xswu/HPSv2" in message
    assert "hf download xswu/HPSv2 HPS_v2_compressed.pt" in message
    # the cache key needs no weights: a finished run can be re-scored from the cache without them
    assert scorer.cache_id.startswith("hpsv2-v2.0-")


def test_cache_identity(tiny, tmp_path):
    _, checkpoint = tiny
    copy = tmp_path / "elsewhere.pt"
    shutil.copy(checkpoint, copy)
    a = HPSv2(checkpoint=str(checkpoint), model=TINY)
    assert a.cache_id == HPSv2(checkpoint=str(copy), model=TINY, batch_size=99).cache_id  # path and batch size: no
    assert a.cache_id != HPSv2(checkpoint=str(checkpoint), model=TINY, antialias=False).cache_id
    assert HPSv2(version="v2.0").cache_id != HPSv2(version="v2.1").cache_id
    assert METRICS.get("hpsv2.1")().cache_id == HPSv2(version="v2.1").cache_id
    assert METRICS.get("hpsv2.0")().hps_version == "v2.0"
    assert HPSv2.higher_is_better
    with pytest.raises(ConfigError, match="v2.0, v2.1"):
        HPSv2(version="v3")
    torch.save({"state_dict": {"x": torch.ones(1)}}, copy)
    assert HPSv2(checkpoint=str(copy), model=TINY).cache_id != a.cache_id  # other weights, other key


def test_truncated_prompts_are_counted(tiny):
    _, checkpoint = tiny
    scorer = HPSv2(checkpoint=str(checkpoint), model=TINY)
    long_prompt = " ".join(["word"] * 100)
    scorer.score(ScoreBatch(images=torch.rand(2, 3, 64, 64), prompts=[long_prompt, "short"]))
    assert len(scorer.truncated_prompts) == 1 and "truncated" in scorer.notes()[0]
