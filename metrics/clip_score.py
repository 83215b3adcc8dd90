"""CLIP score per image: 100 · max(cos(image, text), 0) (Hessel et al., "CLIPScore", arXiv 2104.08718,
with w = 100 as torchmetrics' ``CLIPScore`` defines it).

torchmetrics' own ``CLIPScore`` returns only the running mean (paired comparisons need one number per
image) and fails with transformers 5 (shared/reference/ecosystem-notes.md), so we compute the same
definition per image with OpenCLIP. Default model: ``ViT-L-14`` with the ``openai`` weights — OpenAI's
CLIP ViT-L/14, the model torchmetrics' ``CLIPScore`` uses by default (``openai/clip-vit-large-patch14``)
and the most widely reported CLIP-score backbone in text-to-image papers. Any OpenCLIP model and
pretrained tag (or a local checkpoint file as ``pretrained``) can be configured; the manifest records it.

Preprocessing is the model's own OpenCLIP validation transform (resize the shorter side, centre crop,
normalise) applied to the image as saved (the float image is turned back into its exact bytes first).
Captions over the context length (77 tokens) are truncated and counted for the report.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from mgt_common.errors import ConfigError, MissingWeightsError

from ._openclip import autocast, check_model_name, count_truncated, pil_to_float, resolve_precision, to_uint8
from .base import PerImageMetric, ScoreBatch, register_metric
from .weights import downloads_allowed, file_sha256

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "openai"


@register_metric("clip_score")
class CLIPScore(PerImageMetric):
    """CLIP score 100·max(cos, 0) per image (OpenCLIP; default ViT-L-14 / openai, torchmetrics' default model).

    Params: ``model`` (OpenCLIP config name), ``pretrained`` (a pretrained tag or a local checkpoint
    file), ``precision`` ("auto", "fp32", "amp", "bf16"), ``device``, ``batch_size``.
    """

    higher_is_better = True
    unit = "100·cos"  # 100 · max(cosine, 0)
    version = "clip-score-1"

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, precision: str = "auto", **params: Any):
        super().__init__(**params)
        self.model_name = model
        self.pretrained = str(pretrained)
        self.precision = resolve_precision(precision, self.device)
        self.params.update(model=model, precision=self.precision)
        self._model = None
        self._preprocess = None
        self._tokenizer = None
        self._weights_id: str | None = None
        self.truncated_prompts: set[str] = set()

    @property
    def cache_id(self) -> str:
        blob = json.dumps({"name": "clip_score", "version": self.version, "params": self.params, "weights": self.weights_id()},
                          sort_keys=True, default=str)
        return f"clip_score-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def weights_id(self) -> str:
        if self._weights_id is None:
            local = Path(self.pretrained).expanduser()
            self._weights_id = f"sha256:{file_sha256(local)}" if local.is_file() else f"open_clip:{self.model_name}/{self.pretrained}"
        return self._weights_id

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(model=self.model_name, pretrained=self.pretrained, device=str(self.device), batch_size=self.batch_size,
                    score="100 * max(cosine(image, text), 0)")
        return info

    def check_weights(self, world=None) -> None:
        """Find the weights now (the harness calls this before generating): a file, or the tag's cached download."""
        import open_clip

        check_model_name(self.model_name)
        local = Path(self.pretrained).expanduser()
        if local.is_file():
            return
        if self.pretrained not in open_clip.list_pretrained_tags_by_model(self.model_name):
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(self.model_name)) or "(none)"
            raise ConfigError(f"clip_score: {self.pretrained!r} is neither a file nor a pretrained tag of {self.model_name} "
                              f"(tags: {tags})")
        try:
            open_clip.download_pretrained(open_clip.get_pretrained_cfg(self.model_name, self.pretrained))
        except Exception as exc:  # the hub raises many types when offline or missing: one clear message
            raise self._missing(exc) from None

    def _missing(self, exc: Exception) -> MissingWeightsError:
        import open_clip

        source = ""
        try:
            cfg = open_clip.get_pretrained_cfg(self.model_name, self.pretrained)
            source = cfg.get("hf_hub") or cfg.get("url") or ""
        except Exception:  # pragma: no cover - informational only
            pass
        how = "downloads are disabled (HF_HUB_OFFLINE / MGT_BENCH_OFFLINE)" if not downloads_allowed() else "download failed"
        repo = "/".join(source.rstrip("/").split("/")[:2])
        fetch = f"`hf download {repo}`" if source.count("/") >= 1 and not source.startswith("http") else \
            f"`python -c \"import open_clip; open_clip.create_model('{self.model_name}', pretrained='{self.pretrained}')\"`"
        return MissingWeightsError(
            f"clip_score: OpenCLIP weights {self.model_name}/{self.pretrained} ({source or 'open_clip registry'}) are not "
            f"in the local cache and {how} ({type(exc).__name__}). Fetch them once on a connected machine with {fetch}, "
            "or pass a local checkpoint file as `pretrained`.")

    def load(self) -> None:
        if self._model is not None:
            return
        import open_clip

        self.check_weights()
        local = Path(self.pretrained).expanduser()
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(self.model_name, pretrained=self.pretrained,
                                                                         device="cpu", precision="fp32")
        except Exception as exc:
            if local.is_file():
                raise ConfigError(f"clip_score: cannot load {local} into {self.model_name}: {str(exc)[:300]}") from None
            raise self._missing(exc) from None
        self._model = model.eval().requires_grad_(False).to(self.device)
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(self.model_name)

    def unload(self) -> None:
        self._model = self._preprocess = self._tokenizer = None

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        self.load()
        prompts = list(batch.prompts)
        if len(prompts) != batch.images.shape[0]:
            raise ValueError(f"clip_score: {batch.images.shape[0]} images but {len(prompts)} prompts")
        self.truncated_prompts.update(p for p in set(prompts) if count_truncated(self._tokenizer, [p]))
        out = [self._score_chunk(batch.images[s:s + self.batch_size], prompts[s:s + self.batch_size])
               for s in range(0, len(prompts), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def read_image(self, path) -> torch.Tensor:
        """A file as OpenCLIP's reference transform sees it.

        open_clip resizes and crops the image *as opened* and only then converts it to RGB, so an RGBA
        image is resized with premultiplied alpha (Pillow's rule) and its alpha dropped afterwards, and a
        palette image is resized nearest-neighbour (Pillow's rule for "P"). For such images the
        geometric steps run here, on the PIL image, and `preprocess` then finds a 224 x 224 RGB image
        on which resize and crop are identities; RGB files take the plain path (same pixels either way).
        """
        from PIL import Image

        from .score_cache import read_image

        with Image.open(path) as image:
            if image.mode == "RGB":
                return read_image(path)
            self.load()
            image.load()
            for step in self._preprocess.transforms:
                if type(step).__name__ in ("ToTensor", "MaybeToTensor", "Normalize"):
                    break
                image = step(image)
            return pil_to_float(image.convert("RGB"))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model's own OpenCLIP transform on each image, as the PIL image it was saved as."""
        from PIL import Image

        pixels = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
        return torch.stack([self._preprocess(Image.fromarray(p)) for p in pixels])

    @torch.no_grad()
    def _score_chunk(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        pixels = self.preprocess(images).to(self.device)
        text = self._tokenizer(list(prompts)).to(self.device)
        with autocast(self.precision, self.device):
            image_features = self._model.encode_image(pixels, normalize=True)
            text_features = self._model.encode_text(text, normalize=True)
        cosine = (image_features.float() * text_features.float()).sum(dim=-1)
        return (100.0 * cosine.clamp(min=0)).to(torch.float64).cpu()

    def notes(self) -> list[str]:
        if not self.truncated_prompts:
            return []
        return [f"clip_score: {len(self.truncated_prompts)} distinct caption(s) exceed 77 tokens and were truncated"]

    def count_truncated(self, prompts: Sequence[str]) -> int:
        """How many of ``prompts`` the tokenizer truncates (needs no weights)."""
        import open_clip

        return count_truncated(open_clip.get_tokenizer(self.model_name), prompts)
