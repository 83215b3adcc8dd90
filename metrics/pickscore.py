"""PickScore (Kirstain et al., "Pick-a-Pic", arXiv 2305.01569): a CLIP-H fine-tuned on human preferences.

PickScore ships no package: the weights are the transformers ``CLIPModel`` ``yuvalkirstain/PickScore_v1``
and the processor is the one of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (the model card's usage).
score = logit_scale.exp() · cosine(image, text) (about 20-23 for typical images; the model card
compares images of the same prompt).

Text is padded to 77 tokens (``padding="max_length"``) rather than to the longest prompt of the batch,
so a prompt's features never depend on which other prompts share its batch; with CLIP's causal mask
and the end-token pooling this gives the model card's numbers.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from mgt_common.errors import MissingWeightsError

from ._openclip import autocast, read_composited, resolve_precision, to_uint8
from .base import PerImageMetric, ScoreBatch, register_metric
from .weights import download_command, downloads_allowed, folder_sha256

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def _features(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@register_metric("pickscore")
class PickScore(PerImageMetric):
    """PickScore v1 per image: logit_scale.exp() · cos (transformers CLIP-H; Kirstain et al. 2023).

    Params: ``model`` (hub id or local folder, default yuvalkirstain/PickScore_v1), ``processor`` (hub id
    or local folder, default laion/CLIP-ViT-H-14-laion2B-s32B-b79K), ``revision``, ``precision``,
    ``device``, ``batch_size``.
    """

    higher_is_better = True
    unit = "scaled cos"  # exp(logit_scale) · cosine
    version = "pickscore-1"

    def __init__(self, model: str = PICKSCORE_MODEL, processor: str = PICKSCORE_PROCESSOR, revision: str | None = None,
                 precision: str = "auto", **params: Any):
        super().__init__(**params)
        self.model_source = str(model)
        self.processor_source = str(processor)
        self.revision = revision
        self.precision = resolve_precision(precision, self.device)
        self.params.update(precision=self.precision)
        self._model = None
        self._processor = None
        self.truncated_prompts: set[str] = set()

    @property
    def cache_id(self) -> str:
        blob = json.dumps({"name": "pickscore", "version": self.version, "params": self.params, "weights": self.weights_id()},
                          sort_keys=True, default=str)
        return f"pickscore-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def weights_id(self) -> str:
        """The hub ids (and revision), or for local folders a hash of every file's content.

        Content, not sizes: other weights of the same shape have the same sizes and must not return
        the old scores; each file's hash is memoised by `file_sha256`, so this costs one read per file.
        """
        parts = []
        for source in (self.model_source, self.processor_source):
            local = Path(source).expanduser()
            if local.is_dir():
                parts.append(f"dir:{folder_sha256(local)[:16]}")
            else:
                parts.append(f"hf:{source}@{self.revision or 'main'}")
        return "|".join(parts)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(model=self.model_source, processor=self.processor_source, device=str(self.device),
                    batch_size=self.batch_size, score="logit_scale.exp() * cosine(image, text)")
        return info

    def check_weights(self, world=None) -> None:
        """Offline, both hub repos must be in the cache now (the harness calls this before generating)."""
        if downloads_allowed():
            return  # `load` downloads them; a failure there names the command
        from huggingface_hub import snapshot_download

        for what, source in (("model", self.model_source), ("processor", self.processor_source)):
            if Path(source).expanduser().is_dir():
                continue
            try:
                snapshot_download(source, revision=self.revision, local_files_only=True)
            except Exception as exc:  # LocalEntryNotFoundError and friends
                raise MissingWeightsError(
                    f"pickscore: the {what} {source!r} is not in the Hugging Face cache and downloads are disabled "
                    f"(HF_HUB_OFFLINE / MGT_BENCH_OFFLINE) ({type(exc).__name__}). Fetch it with "
                    f"`{download_command(source, None)}` on a machine with network access, or pass a local folder.") from None

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoProcessor, CLIPModel

        offline = not downloads_allowed()
        loaded = []
        for what, source, loader in (("model", self.model_source, CLIPModel), ("processor", self.processor_source, AutoProcessor)):
            local = Path(source).expanduser()
            try:
                loaded.append(loader.from_pretrained(str(local) if local.is_dir() else source,
                                                     revision=None if local.is_dir() else self.revision,
                                                     local_files_only=offline or local.is_dir()))
            except Exception as exc:  # offline / missing / gated: one clear message
                raise MissingWeightsError(
                    f"pickscore: the {what} {source!r} could not be loaded "
                    f"({'offline and not in the Hugging Face cache' if offline and not local.is_dir() else type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Fetch it with `{download_command(source, None)}` "
                    "on a machine with network access, or pass a local folder.") from None
        model, self._processor = loaded
        self._model = model.eval().requires_grad_(False).to(self.device)

    def unload(self) -> None:
        self._model = self._processor = None

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        self.load()
        prompts = list(batch.prompts)
        if len(prompts) != batch.images.shape[0]:
            raise ValueError(f"pickscore: {batch.images.shape[0]} images but {len(prompts)} prompts")
        out = [self._score_chunk(batch.images[s:s + self.batch_size], prompts[s:s + self.batch_size])
               for s in range(0, len(prompts), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    @staticmethod
    def read_image(path) -> torch.Tensor:
        """A file as the reference sees it: the CLIP processor composites transparency onto white first
        (transformers' ``convert_to_rgb``), so doing that here and handing it RGB gives identical pixels."""
        return read_composited(path)

    @torch.no_grad()
    def _score_chunk(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        from PIL import Image

        pil = [Image.fromarray(p) for p in to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()]
        image_inputs = self._processor(images=pil, return_tensors="pt")
        text_inputs = self._processor(text=list(prompts), padding="max_length", truncation=True, max_length=77,
                                      return_tensors="pt")
        lengths = self._processor.tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]
        self.truncated_prompts.update(p for p, ids in zip(prompts, lengths) if len(ids) > 77)
        with autocast(self.precision, self.device):
            image_features = _features(self._model.get_image_features(pixel_values=image_inputs["pixel_values"].to(self.device)))
            text_features = _features(self._model.get_text_features(
                input_ids=text_inputs["input_ids"].to(self.device), attention_mask=text_inputs["attention_mask"].to(self.device)))
        image_features = torch.nn.functional.normalize(image_features.float(), dim=-1)
        text_features = torch.nn.functional.normalize(text_features.float(), dim=-1)
        scores = self._model.logit_scale.exp().float() * (image_features * text_features).sum(dim=-1)
        return scores.to(torch.float64).cpu()

    def notes(self) -> list[str]:
        if not self.truncated_prompts:
            return []
        return [f"pickscore: {len(self.truncated_prompts)} distinct prompt(s) exceed 77 tokens and were truncated"]
