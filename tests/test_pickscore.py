"""PickScore through transformers: a tiny random CLIPModel and a CLIP processor built offline stand in for
yuvalkirstain/PickScore_v1 and the laion CLIP-H processor."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")

from metrics.base import METRICS, ScoreBatch  # noqa: E402
from metrics.pickscore import PickScore  # noqa: E402
from mgt_common.errors import MissingWeightsError  # noqa: E402

PROMPTS = ["a cat on a sofa", "a dog", "an oil painting of a lighthouse at dusk", "blue"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    root = tmp_path_factory.mktemp("pick")
    # CLIP's BPE vocabulary from open_clip's bundled file (transformers 5: vocab=/merges=, HF special-token names)
    simple = open_clip.get_tokenizer("ViT-B-32")
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in simple.encoder.items()}
    merges = [pair for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}),
                              tokenizer=tokenizer)
    processor.save_pretrained(root / "processor")
    torch.manual_seed(0)
    config = CLIPConfig(text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=77),
                        vision_config=dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=37,
                                           num_hidden_layers=1, num_attention_heads=2),
                        projection_dim=16, logit_scale_init_value=3.0)
    CLIPModel(config).save_pretrained(root / "model")
    return root


@pytest.fixture(scope="module")
def scorer(tiny):
    """One loaded scorer for the module (loading the BPE tokenizer takes a second or two)."""
    loaded = PickScore(model=str(tiny / "model"), processor=str(tiny / "processor"), batch_size=3)
    loaded.load()
    return loaded


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, 72, 90), dtype=np.uint8)).float() / 255


def model_card_scores(root, batch, prompts):
    """The model card's recipe, one image at a time: processor(padding=True) -> CLIPModel forward -> logits."""
    from transformers import AutoProcessor, CLIPModel

    processor = AutoProcessor.from_pretrained(root / "processor")
    model = CLIPModel.from_pretrained(root / "model").eval()
    out = []
    with torch.no_grad():
        for image, prompt in zip(batch, prompts):
            pil = Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())
            inputs = processor(images=pil, text=[prompt], padding=True, truncation=True, max_length=77, return_tensors="pt")
            out.append(model(**inputs).logits_per_image[0, 0])  # = logit_scale.exp() · cos
    return torch.stack(out).double()


def test_score_is_scaled_cosine_as_the_model_card(tiny, scorer):
    batch = images(4)
    scores = scorer.score(ScoreBatch(images=batch, prompts=PROMPTS))
    assert scores.dtype == torch.float64 and scores.shape == (4,)
    torch.testing.assert_close(scores, model_card_scores(tiny, batch, PROMPTS), atol=1e-4, rtol=0)
    assert scores.std() > 1e-3


def test_batch_size_does_not_change_scores(scorer):
    batch = images(4, seed=5)
    scorer.batch_size = 1
    a = scorer.score(ScoreBatch(images=batch, prompts=PROMPTS))
    scorer.batch_size = 4
    b = scorer.score(ScoreBatch(images=batch, prompts=PROMPTS))
    scorer.batch_size = 3
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_truncation_counted_and_identity(scorer):
    scorer.truncated_prompts.clear()
    scorer.score(ScoreBatch(images=images(2), prompts=["word " * 90, "short"]))
    assert "1 distinct" in scorer.notes()[0]
    assert scorer.cache_id != METRICS.get("pickscore")().cache_id
    assert METRICS.get("pickscore")().describe()["model"] == "yuvalkirstain/PickScore_v1"


def test_missing_weights_offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match="hf download yuvalkirstain/PickScore_v1"):
        PickScore().load()
