"""Meissonic backend (arXiv 2410.08261) behind the model protocol: 1024 px and the 512 px family.

Loading follows the official inference scripts (`inference*.py` of the Meissonic code): the
transformer, the VQ decoder and the CLIP tokenizer come from the checkpoint (``transformer/``,
``vqvae/``, ``tokenizer/``); the text encoder is ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` for the 1024
checkpoint ("original text enc for stable sampling") and the checkpoint's own ``text_encoder/`` for the
512 family (Collov-Labs/Monetico), unless ``text_encoder`` says otherwise.

Inference conventions kept from the official pipeline (`src/pipeline.py`, `src/transformer.py`;
docs/models.md, "What the backends reproduce"):

- CFG batch order [uncond; cond], one forward per step; the unconditional branch encodes the negative
  prompt ("" when none is given; the official scripts pass `DEFAULT_NEGATIVE_PROMPT`).
- ``timestep`` = the integer step index T−1−i as a long tensor of shape [1] (scaled by 1000 inside).
- micro-conditions [width, height, crop top 0, crop left 0, score 6] for every row.
- RoPE ids from `rope_image_ids` (the height == 1024 special case).
- logits over the 8192 codebook entries only; the mask id is 8255 = vocab_size − 1.
- defaults: 1024 px → 64 steps, CFG 9; 512 px → 48 steps, CFG 9.
"""
from __future__ import annotations

from typing import Any

import torch

from mgt_common.errors import ConfigError

from .hf_backend import (
    TokenBackend,
    check_variant,
    checkpoint_mask_token_id,
    load_clip,
    load_tokenizer,
    load_vq,
    parse_dtype,
    quiet_loading,
    reject_unknown,
    weights_variant,
)
from .registry import MODELS
from .weights import ResolvedWeights, resolve_model

DEFAULT_REPO = "MeissonFlow/Meissonic"
#: The official inference scripts' text encoder for the 1024 checkpoint.
LAION_CLIP_H = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
#: Used by every official inference script and by the design-choices paper's evaluation code.
DEFAULT_NEGATIVE_PROMPT = (
    "worst quality, low quality, low res, blurry, distortion, watermark, logo, signature, text, jpeg artifacts, "
    "signature, sketch, duplicate, ugly, identifying mark"
)
#: The official pipeline's defaults per family.
STEPS_1024, STEPS_512, GUIDANCE = 64, 48, 9.0

VALID_ARGS = ["path", "revision", "dtype", "device", "height", "width", "text_encoder", "text_encoder_revision",
              "variant", "aesthetic_score", "crop_coords",
              "post_model_dtype", "compile", "compile_mode", "cuda_graphs"]


def checkpoint_files(variant: str | None, own_text_encoder: bool) -> tuple[list[str], list[str]]:
    """(required globs, download patterns) for a Meissonic-layout checkpoint."""
    suffix = ".fp16" if variant == "fp16" else ""
    required = [
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors|transformer/diffusion_pytorch_model.fp16.safetensors",
        "vqvae/config.json",
        "vqvae/diffusion_pytorch_model.safetensors|vqvae/diffusion_pytorch_model.fp16.safetensors",
        "tokenizer/tokenizer.json|tokenizer/vocab.json",
    ]
    download = [
        "model_index.json", "scheduler/scheduler_config.json", "tokenizer/*",
        "transformer/config.json", f"transformer/diffusion_pytorch_model{suffix}.safetensors",
        "vqvae/config.json", f"vqvae/diffusion_pytorch_model{suffix}.safetensors",
    ]
    if own_text_encoder:
        required += ["text_encoder/config.json", "text_encoder/model.safetensors|text_encoder/model.fp16.safetensors"]
        download += ["text_encoder/config.json", f"text_encoder/model{suffix}.safetensors"]
    return required, download


class MeissonicModel(TokenBackend):
    """A Meissonic checkpoint (transformer + VQ + CLIP) behind `samplers.protocol.MaskedTokenModel`."""

    name = "meissonic"
    default_negative_prompt = DEFAULT_NEGATIVE_PROMPT

    def __init__(
        self,
        path: str = DEFAULT_REPO,
        revision: str | None = None,
        dtype: str = "fp32",
        device: str | None = "auto",
        height: int | None = None,
        width: int | None = None,
        text_encoder: str = "auto",
        text_encoder_revision: str | None = None,
        variant: str | None = None,
        aesthetic_score: float = 6.0,
        crop_coords: tuple[int, int] | list[int] = (0, 0),
        post_model_dtype: str = "float32",
        compile: bool = False,
        compile_mode: str = "default",
        cuda_graphs: bool = False,
        **unknown: Any,
    ):
        super().__init__()
        reject_unknown(self.name, unknown, VALID_ARGS)
        check_variant(self.name, variant)
        # diffusers is imported here, not at module level: listing the registry must stay light.
        from .meissonic_transformer import MeissonicTransformer2DModel

        self._configure(parse_dtype(self.name, dtype), device, post_model_dtype, compile, compile_mode, cuda_graphs,
                        aesthetic_score, crop_coords)
        required, download = checkpoint_files(variant, own_text_encoder=False)
        self.weights: ResolvedWeights = resolve_model(
            path, revision, required=required, allow_patterns=download, what="Meissonic checkpoint"
        )
        config = MeissonicTransformer2DModel.load_config(str(self.weights.path), subfolder="transformer")
        family_1024 = bool(config.get("downsample", False))
        # "auto" follows the official scripts: laion CLIP-H for the 1024 checkpoint, the checkpoint's own
        # text encoder for the 512 family (Monetico).
        own_te = text_encoder == "checkpoint" or (text_encoder == "auto" and not family_1024)
        if own_te:  # the text encoder's files must be there too (cache or download)
            required, download = checkpoint_files(variant, own_text_encoder=True)
            self.weights = resolve_model(
                path, revision, required=required, allow_patterns=download, what="Meissonic checkpoint"
            )
        root = str(self.weights.path)

        with quiet_loading():
            transformer = self._load_transformer(MeissonicTransformer2DModel, root, variant)
            vqvae = load_vq(root, self.dtype, self.device, weights_variant(root, "vqvae", variant))
            if own_te:
                self.text_encoder_weights = self.weights
                encoder = load_clip(root, "text_encoder", self.dtype, self.device)
            else:
                te_name = LAION_CLIP_H if text_encoder in ("auto", "laion") else str(text_encoder)
                self.text_encoder_weights = resolve_model(
                    te_name, text_encoder_revision,
                    required=["config.json", "model.safetensors|model.fp16.safetensors|pytorch_model.bin"],
                    allow_patterns=["config.json", "model.safetensors"], what="CLIP text encoder",
                )
                # the full laion CLIP checkpoint: its vision weights are skipped on purpose
                encoder = load_clip(str(self.text_encoder_weights.path), None, self.dtype, self.device)
        self._assemble_meissonic(transformer, vqvae, encoder, load_tokenizer(root),
                                 checkpoint_mask_token_id(root, transformer.config.vocab_size), height, width)

    @classmethod
    def from_components(cls, transformer, vqvae, text_encoder, tokenizer, *, height: int | None = None,
                        width: int | None = None, device: str | None = "auto", mask_token_id: int | None = None,
                        aesthetic_score: float = 6.0, crop_coords=(0, 0), post_model_dtype: str = "float32",
                        compile: bool = False, compile_mode: str = "default",
                        cuda_graphs: bool = False) -> "MeissonicModel":
        """A backend over modules already in memory (random full-size weights for `benchmarks/model_speed.py`).

        Modules keep their dtype (the transformer's is the backend's); ``mask_token_id`` defaults to
        vocab_size − 1. `describe()` reports ``weights: None``.
        """
        self = cls.__new__(cls)
        TokenBackend.__init__(self)
        self._configure(transformer.dtype, device, post_model_dtype, compile, compile_mode, cuda_graphs,
                        aesthetic_score, crop_coords)
        self.text_encoder_weights = None
        vocab = transformer.config.vocab_size
        self._assemble_meissonic(transformer, vqvae, text_encoder, tokenizer,
                                 vocab - 1 if mask_token_id is None else mask_token_id, height, width)
        return self

    def _assemble_meissonic(self, transformer, vqvae, encoder, tokenizer, mask_token_id: int, height, width) -> None:
        """`_assemble` with the family's defaults: 1024 px and 64 steps for the down-sampling checkpoint, else
        512 px and 48 steps."""
        family_1024 = bool(transformer.config.downsample)
        self._assemble(transformer, vqvae, encoder, tokenizer, mask_token_id, (height, width),
                       default_side=1024 if family_1024 else 512)
        self.default_steps = STEPS_1024 if family_1024 else STEPS_512
        self.default_guidance_scale = GUIDANCE

    def _set_resolution(self, height: int, width: int) -> None:
        """Validate an image size for this checkpoint and build its RoPE ids (as Meissonic's `src/pipeline.py`)."""
        from .meissonic_transformer import rope_image_ids, text_position_ids

        downsample = bool(self.transformer.config.downsample)
        step = self.vq_scale * (2 if downsample else 1)
        if height <= 0 or width <= 0 or height % step or width % step:
            raise ConfigError(f"model 'meissonic': height and width must be positive multiples of {step}; got {height}x{width}")
        rows, cols = height // self.vq_scale, width // self.vq_scale
        tokens = (rows // 2) * (cols // 2) if downsample else rows * cols
        ids = rope_image_ids(rows, cols, height, device=self.device)
        if ids.shape[0] != tokens:
            family = "1024 checkpoint (with 2x down-sampling)" if downsample else "checkpoint without down-sampling (512 family)"
            need = "height = 1024" if downsample else "a height other than 1024"
            raise ConfigError(
                f"model 'meissonic': the {family} needs {need}: the reference pipeline builds RoPE ids from the latent "
                f"grid only when height == 1024 (docs/models.md, 'Image size'); got {height}x{width}"
            )
        self.height, self.width = height, width
        self._img_ids = ids
        self._txt_ids = text_position_ids(77, device=self.device)  # CLIP's 77 text positions, all zero

    def _forward(self, grid, pooled, hidden, step, total_steps):
        timestep = torch.tensor([total_steps - 1 - step], device=self.device, dtype=torch.long)
        return self.compiled.module(self.transformer)(
            grid, encoder_hidden_states=hidden, pooled_projections=pooled, timestep=timestep,
            img_ids=self._img_ids, txt_ids=self._txt_ids, micro_conds=self.micro_conditions(grid.shape[0]),
        ).sample

    def describe(self) -> dict[str, Any]:
        cfg = self.transformer.config
        return {
            **super().describe(),
            "text_encoder": self.text_encoder_weights.describe() if self.text_encoder_weights else None,
            "attention": "sdpa",
            "transformer": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if not k.startswith("_")},
        }


@MODELS.register("meissonic")
def meissonic(**model_args) -> MeissonicModel:
    """Meissonic (1024 px, or the 512 px family without down-sampling) from the hub or a local directory."""
    return MeissonicModel(**model_args)
