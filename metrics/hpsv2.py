"""HPS v2 / v2.1: Human Preference Score v2 (Wu et al., "Human Preference Score v2", arXiv 2306.09341).

What HPSv2 is (facts from the authors' code, github.com/tgxs002/HPSv2, `hpsv2/img_score.py` and its
vendored `open_clip/transform.py`, summarised in shared/reference/ecosystem-notes.md):

- the model is OpenCLIP ``ViT-H-14`` whose whole state dict is replaced by the HPS checkpoint
  (``xswu/HPSv2``: ``HPS_v2_compressed.pt`` = v2.0, ``HPS_v2.1_compressed.pt`` = v2.1; the weights sit
  under the key ``state_dict``). We build the architecture without pretrained weights and load the
  checkpoint strictly: the reference downloads 3.9 GB of LAION weights only to overwrite them.
- validation preprocessing: RGB -> ``ToTensor`` -> resize the *tensor* so that its longest side is 224
  (bicubic, torchvision ``F.resize``) -> zero padding to 224 x 224, centred (left/top get the floor of
  half the padding) -> normalise with the OpenAI CLIP mean and std.
- text: the OpenCLIP tokenizer, 77 tokens (longer prompts are cut, the last kept token becomes <end>).
- score = cosine of the L2-normalised image and text features. The reference returns the raw cosine;
  the benchmark tables print 100 x the mean, and so do we: `score()` returns 100 x cosine.

Scores are comparable only between images of the same prompt and within one HPS version.

Transparency: the reference crashes on RGBA (its ``ToTensor`` runs before any RGB conversion, so four
channels reach the normalisation). We define one rule, `read_image`: transparency is composited onto
white (what transformers' CLIP processor, hence PickScore, does), and palette images become RGB.

Resize detail: the reference calls ``torchvision.transforms.functional.resize`` with its default
``antialias``. Since torchvision 0.17 that default is True for tensors too; with the torchvision of 2023
(0.15/0.16) tensors were resized *without* antialiasing. Running the reference today gives
``antialias=True`` (our default); ``antialias=False`` reproduces numbers computed with the old
torchvision. For 1024 px images the two differ noticeably, so the choice enters the cache key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as nnf

from mgt_common.errors import ConfigError

from ._openclip import (OPENAI_MEAN, OPENAI_STD, autocast, check_model_name, count_truncated, read_composited,
                        resolve_precision)
from .base import PerImageMetric, ScoreBatch, register_metric
from .weights import file_sha256, resolve_hub_file

HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
IMAGE_SIZE = 224


def hps_preprocess(images: torch.Tensor, size: int = IMAGE_SIZE, antialias: bool = True) -> torch.Tensor:
    """HPSv2's validation transform on a batch of float images ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, size, size)``.

    Float [0, 1] images are exactly ``ToTensor`` of the saved PNG (k/255 in float32). The resize runs on
    the tensor with torchvision's bicubic kernel, as the reference's ``ResizeMaxSize`` does; the new size
    is ``round(side * size / longest)`` with Python's rounding, like the reference; values are not
    clamped after bicubic overshoot (the reference does not clamp either).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"HPSv2 expects images (B, 3, H, W); got {tuple(images.shape)}")
    images = images.to(torch.float32)
    height, width = images.shape[-2:]
    scale = size / float(max(height, width))
    new_h, new_w = height, width
    if scale != 1.0:
        new_h, new_w = round(height * scale), round(width * scale)
        images = tvf.resize(images, [new_h, new_w], interpolation=InterpolationMode.BICUBIC, antialias=antialias)
    # The reference skips padding when the longest side is already `size`; only square images reach the
    # model that way, so padding a non-square one here (instead of failing) changes no reference number.
    pad_h, pad_w = size - new_h, size - new_w
    if pad_h or pad_w:
        images = nnf.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    mean = torch.tensor(OPENAI_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def load_hps_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an HPS checkpoint file.

    Read with ``weights_only=True`` (tensors and plain containers only: a checkpoint cannot run code);
    ``allow_pickle`` opts in to full unpickling, for a trusted file that stores other objects.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        hint = "" if allow_pickle else "; if the file is trusted and stores other Python objects, set allow_pickle = true"
        raise ConfigError(f"hpsv2: cannot read checkpoint {path} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]}){hint}") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return checkpoint["state_dict"]
    keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise ConfigError(f"hpsv2: checkpoint {path} has no 'state_dict' entry (found {keys}); "
                      "HPS checkpoints store the OpenCLIP weights under 'state_dict'")


def build_hps_model(model_name: str, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> torch.nn.Module:
    """OpenCLIP ``model_name`` without pretrained weights, then the HPS weights loaded with ``strict=True``."""
    import open_clip

    check_model_name(model_name)
    model = open_clip.create_model(model_name, pretrained=None, precision="fp32", device="cpu")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise ConfigError(f"hpsv2: {source} does not match OpenCLIP {model_name!r} exactly: {' '.join(first)[:400]}") from None
    return model.eval().requires_grad_(False)


@register_metric("hpsv2")
class HPSv2(PerImageMetric):
    """HPS v2 / v2.1 preference score x 100 (Wu et al. 2023); the design-choices paper's headline scorer.

    Params: ``version`` ("v2.0" or "v2.1"), ``checkpoint`` (a local file, overriding the hub file),
    ``model`` (the OpenCLIP config, "ViT-H-14"; tests pass a tiny one), ``precision`` ("auto": fp16
    autocast on CUDA as the reference, fp32 on CPU), ``antialias`` (see the module docstring),
    ``allow_pickle`` (read a trusted checkpoint that is not tensors-only), ``device``, ``batch_size``.
    """

    higher_is_better = True
    unit = "100·cos"  # 100 × cosine similarity (see the module docstring)
    #: code version of this scorer (preprocessing and score formula); enters the cache key.
    version = "hps-1"
    fixed_version: str | None = None

    def __init__(self, version: str = "v2.1", checkpoint: str | None = None, model: str = "ViT-H-14",
                 precision: str = "auto", antialias: bool = True, allow_pickle: bool = False, **params: Any):
        if self.fixed_version is not None:
            version = self.fixed_version
        version = {"2.0": "v2.0", "2.1": "v2.1", "v2": "v2.0"}.get(str(version), str(version))
        if version not in HPS_FILES:
            raise ConfigError(f"hpsv2: version {version!r} is not one of {', '.join(HPS_FILES)}")
        super().__init__(**params)
        self.hps_version = version
        self.checkpoint = checkpoint
        self.model_name = model
        self.precision = resolve_precision(precision, self.device)
        self.antialias = bool(antialias)
        self.allow_pickle = bool(allow_pickle)
        # The checkpoint *path* stays out of params: the cache key carries the weights' identity instead,
        # so that the same file at another path (another machine) hits the same cache entries.
        self.params.update(version=version, model=model, precision=self.precision, antialias=self.antialias)
        self._model: torch.nn.Module | None = None
        self._tokenizer = None
        self._weights_id: str | None = None
        self.truncated_prompts: set[str] = set()

    # -- identity ------------------------------------------------------------------------------------
    @property
    def cache_id(self) -> str:
        import hashlib

        blob = json.dumps({"name": "hpsv2", "version": self.version, "params": self.params, "weights": self.weights_id()},
                          sort_keys=True, default=str)
        return f"hpsv2-{self.hps_version}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def weights_id(self) -> str:
        """sha256 of a local checkpoint; for the hub file, its repo and name (published files are never replaced).

        Naming the hub file instead of hashing it lets a finished run be re-scored from the cache on a
        machine that does not hold the 2 GB checkpoint at all.
        """
        if self._weights_id is None:
            if self.checkpoint:
                path = Path(self.checkpoint).expanduser()
                if not path.is_file():
                    raise ConfigError(f"hpsv2: checkpoint {path} does not exist; pass the path of "
                                      f"{HPS_FILES[self.hps_version]} or leave `checkpoint` unset to use the hub file")
                self._weights_id = f"sha256:{file_sha256(path)}"
            else:
                self._weights_id = f"hf:{HPS_REPO}/{HPS_FILES[self.hps_version]}"
        return self._weights_id

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(checkpoint=str(self.checkpoint) if self.checkpoint else f"{HPS_REPO}/{HPS_FILES[self.hps_version]}",
                    device=str(self.device), batch_size=self.batch_size, score="100 x cosine(image, text)")
        return info

    # -- weights -------------------------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        if self.checkpoint:
            return resolve_hub_file(self.checkpoint, HPS_FILES[self.hps_version], what=f"HPS {self.hps_version} checkpoint")
        return resolve_hub_file(HPS_REPO, HPS_FILES[self.hps_version], what=f"HPS {self.hps_version} checkpoint")

    def check_weights(self, world=None) -> None:
        """Resolve the checkpoint now (the harness calls this before generating: a missing file fails in seconds)."""
        check_model_name(self.model_name)
        self.checkpoint_path()

    def load(self) -> None:
        if self._model is not None:
            return
        import open_clip

        check_model_name(self.model_name)
        path = self.checkpoint_path()
        state_dict = load_hps_state_dict(path, self.allow_pickle)
        self._model = build_hps_model(self.model_name, state_dict, source=str(path)).to(self.device)
        del state_dict
        self._tokenizer = open_clip.get_tokenizer(self.model_name)

    def unload(self) -> None:
        self._model = None
        self._tokenizer = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- scoring -------------------------------------------------------------------------------------
    @staticmethod
    def read_image(path) -> torch.Tensor:
        """A file as this scorer sees it: transparency composited onto white (see the module docstring)."""
        return read_composited(path)

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        self.load()
        prompts = list(batch.prompts)
        if len(prompts) != batch.images.shape[0]:
            raise ValueError(f"hpsv2: {batch.images.shape[0]} images but {len(prompts)} prompts")
        self.truncated_prompts.update(p for p in set(prompts) if count_truncated(self._tokenizer, [p]))
        out = []
        for start in range(0, len(prompts), self.batch_size):
            out.append(self._score_chunk(batch.images[start:start + self.batch_size], prompts[start:start + self.batch_size]))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    @torch.no_grad()
    def _score_chunk(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        pixels = hps_preprocess(images, antialias=self.antialias).to(self.device)
        text = self._tokenizer(list(prompts)).to(self.device)
        with autocast(self.precision, self.device):
            image_features = self._model.encode_image(pixels, normalize=True)
            text_features = self._model.encode_text(text, normalize=True)
        cosine = (image_features.float() * text_features.float()).sum(dim=-1)
        return (100.0 * cosine).to(torch.float64).cpu()

    def notes(self) -> list[str]:
        """Lines for the report (prompts cut at 77 tokens, seen by this scorer in this process)."""
        if not self.truncated_prompts:
            return []
        return [f"{self.name}: {len(self.truncated_prompts)} distinct prompt(s) exceed 77 CLIP tokens and were truncated "
                "(as the reference does)"]


@register_metric("hpsv2.0")
class HPSv20(HPSv2):
    """HPS v2.0 x 100 (alias of ``hpsv2`` with ``version="v2.0"``)."""

    fixed_version = "v2.0"


@register_metric("hpsv2.1")
class HPSv21(HPSv2):
    """HPS v2.1 x 100 (alias of ``hpsv2`` with ``version="v2.1"``)."""

    fixed_version = "v2.1"
