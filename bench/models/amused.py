"""aMUSEd backend (Patil et al. 2024, arXiv 2401.01808): ``amused/amused-256`` and ``amused/amused-512``.

Built from the diffusers models — `UVit2DModel`, `VQModel`, `CLIPTextModelWithProjection` — rather
than the deprecated ``AmusedPipeline``, whose conventions it reproduces (diffusers 0.42,
``pipelines/deprecated/amused/pipeline_amused.py``):

- the text encoder and tokenizer are the checkpoint's own; conditioning = projected pooled
  embedding + penultimate hidden states (as Meissonic, reference §4.4);
- CFG batch [uncond; cond], negative prompt "" when none is given;
- micro-conditions [width, height, crop top 0, crop left 0, aesthetic score 6];
- **no timestep input**: the UVit2D transformer sees only the tokens, so ``step``/``total_steps``
  do not enter the forward (the sampler's schedules still use them);
- logits ``(B, codebook_size, h, w)``; mask id = the scheduler config's ``mask_token_id``
  (= vocab_size − 1 = 8255);
- resolution = ``sample_size`` × VQ scale (16): 256 or 512; pipeline defaults 12 steps, CFG 10.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from mgt_common.errors import ConfigError

from .hf_backend import (
    DTYPE_NAMES,
    PromptEncoder,
    TokenBackend,
    load_clip,
    load_tokenizer,
    load_vq,
    parse_device,
    parse_dtype,
    parse_post_model_dtype,
    precision_description,
    reject_unknown,
    quiet_loading,
    vq_scale_factor,
    weights_variant,
)
from .registry import MODELS
from .weights import resolve_model

DEFAULT_REPO = "amused/amused-256"
#: ``AmusedPipeline.__call__`` defaults.
DEFAULT_STEPS, DEFAULT_GUIDANCE = 12, 10.0
VALID_ARGS = ["path", "revision", "dtype", "device", "height", "width", "variant", "aesthetic_score", "crop_coords",
              "post_model_dtype", "compile", "compile_mode", "cuda_graphs"]


def checkpoint_files(variant: str | None) -> tuple[list[str], list[str]]:
    """(required globs, download patterns) for an aMUSEd checkpoint."""
    suffix = ".fp16" if variant == "fp16" else ""
    required = [
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors|transformer/diffusion_pytorch_model.fp16.safetensors",
        "vqvae/config.json",
        "vqvae/diffusion_pytorch_model.safetensors|vqvae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/config.json",
        "text_encoder/model.safetensors|text_encoder/model.fp16.safetensors",
        "tokenizer/tokenizer.json|tokenizer/vocab.json",
    ]
    download = [
        "model_index.json", "scheduler/scheduler_config.json", "tokenizer/*",
        "transformer/config.json", f"transformer/diffusion_pytorch_model{suffix}.safetensors",
        "vqvae/config.json", f"vqvae/diffusion_pytorch_model{suffix}.safetensors",
        "text_encoder/config.json", f"text_encoder/model{suffix}.safetensors",
    ]
    return required, download


class AmusedModel(TokenBackend):
    """An aMUSEd checkpoint behind `samplers.protocol.MaskedTokenModel`."""

    name = "amused"
    default_negative_prompt = ""

    def __init__(
        self,
        path: str = DEFAULT_REPO,
        revision: str | None = None,
        dtype: str = "fp32",
        device: str | None = "auto",
        height: int | None = None,
        width: int | None = None,
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
        if variant not in (None, "fp16"):
            raise ConfigError(f"model 'amused': variant must be \"fp16\" or left out; got {variant!r}")
        self.dtype = parse_dtype(self.name, dtype)
        self.device = parse_device(self.name, device)
        self.post_model_dtype = parse_post_model_dtype(self.name, post_model_dtype, self.dtype)
        self.compiled.configure(self.name, compile, compile_mode, cuda_graphs, self.device)
        self.aesthetic_score = float(aesthetic_score)
        self.crop_coords = tuple(int(c) for c in crop_coords)

        required, download = checkpoint_files(variant)
        self.weights = resolve_model(path, revision, required=required, allow_patterns=download, what="aMUSEd checkpoint")
        root = str(self.weights.path)

        from diffusers import UVit2DModel

        self.variant = weights_variant(root, "transformer", variant)
        with quiet_loading():
            self.transformer = UVit2DModel.from_pretrained(
                root, subfolder="transformer", torch_dtype=self.dtype, variant=self.variant, low_cpu_mem_usage=True
            ).to(self.device).eval().requires_grad_(False)
            self.vqvae = load_vq(root, self.dtype, self.device, weights_variant(root, "vqvae", variant))
            encoder = load_clip(root, "text_encoder", self.dtype, self.device)
        self.vq_scale = vq_scale_factor(self.vqvae.config)
        cfg = self.transformer.config
        self.codebook_size = int(cfg.codebook_size)
        scheduler = Path(root) / "scheduler" / "scheduler_config.json"
        mask = json.loads(scheduler.read_text()).get("mask_token_id") if scheduler.is_file() else None
        self.mask_token_id = int(mask) if mask is not None else int(cfg.vocab_size) - 1

        self.token_stride = 2 if cfg.downsample else 1
        side = int(cfg.sample_size) * self.vq_scale
        self._set_resolution(int(height or side), int(width or height or side))
        self.prompts = PromptEncoder(load_tokenizer(root), encoder, self.device, self.dtype)
        self.default_steps = DEFAULT_STEPS
        self.default_guidance_scale = DEFAULT_GUIDANCE

    def _forward(self, grid, pooled, hidden, step, total_steps):
        # aMUSEd's transformer has no timestep input: the masking ratio is implicit in the tokens.
        return self.compiled.module(self.transformer)(
            grid, micro_conds=self.micro_conditions(grid.shape[0]), pooled_text_emb=pooled, encoder_hidden_states=hidden
        )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "weights": self.weights.describe(),
            "dtype": DTYPE_NAMES[self.dtype],
            "variant": self.variant,
            "device": str(self.device),
            "height": self.height,
            "width": self.width,
            "token_grid": list(self.token_grid()),
            "codebook_size": self.codebook_size,
            "mask_token_id": self.mask_token_id,
            "default_steps": self.default_steps,
            "default_guidance_scale": self.default_guidance_scale,
            "default_negative_prompt": self.default_negative_prompt,
            "micro_conditions": {"aesthetic_score": self.aesthetic_score, "crop_coords": list(self.crop_coords)},
            **precision_description(self),
        }


@MODELS.register("amused")
def amused(**model_args) -> AmusedModel:
    """aMUSEd 256 / 512 (UVit2D + VQ + CLIP) from the hub or a local directory."""
    return AmusedModel(**model_args)
