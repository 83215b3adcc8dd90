"""aMUSEd backend (Patil et al. 2024, arXiv 2401.01808): ``amused/amused-256`` and ``amused/amused-512``.

Built from the diffusers models — `UVit2DModel`, `VQModel`, `CLIPTextModelWithProjection` — rather
than the deprecated ``AmusedPipeline``, whose conventions it reproduces (diffusers 0.42,
``pipelines/deprecated/amused/pipeline_amused.py``):

- the text encoder and tokenizer are the checkpoint's own; conditioning = projected pooled
  embedding + penultimate hidden states (as Meissonic's);
- CFG batch [uncond; cond], negative prompt "" when none is given;
- micro-conditions [width, height, crop top 0, crop left 0, aesthetic score 6];
- **no timestep input**: the UVit2D transformer sees only the tokens, so ``step``/``total_steps``
  do not enter the forward (the sampler's schedules still use them);
- logits ``(B, codebook_size, h, w)``; mask id = the scheduler config's ``mask_token_id``
  (= vocab_size − 1 = 8255);
- resolution = ``sample_size`` × VQ scale (16): 256 or 512; pipeline defaults 12 steps, CFG 10.
"""
from __future__ import annotations

from typing import Any

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
        check_variant(self.name, variant)
        self._configure(parse_dtype(self.name, dtype), device, post_model_dtype, compile, compile_mode, cuda_graphs,
                        aesthetic_score, crop_coords)
        required, download = checkpoint_files(variant)
        self.weights = resolve_model(path, revision, required=required, allow_patterns=download, what="aMUSEd checkpoint")
        root = str(self.weights.path)

        from diffusers import UVit2DModel

        with quiet_loading():
            transformer = self._load_transformer(UVit2DModel, root, variant)
            vqvae = load_vq(root, self.dtype, self.device, weights_variant(root, "vqvae", variant))
            encoder = load_clip(root, "text_encoder", self.dtype, self.device)
        cfg = transformer.config
        self.token_stride = 2 if cfg.downsample else 1
        mask_token_id = checkpoint_mask_token_id(root, cfg.vocab_size)
        self._assemble(transformer, vqvae, encoder, load_tokenizer(root), mask_token_id, (height, width),
                       default_side=int(cfg.sample_size) * vq_scale_factor(vqvae.config))
        self.default_steps = DEFAULT_STEPS
        self.default_guidance_scale = DEFAULT_GUIDANCE

    def _forward(self, grid, pooled, hidden, step, total_steps):
        # aMUSEd's transformer has no timestep input: the masking ratio is implicit in the tokens.
        return self.compiled.module(self.transformer)(
            grid, micro_conds=self.micro_conditions(grid.shape[0]), pooled_text_emb=pooled, encoder_hidden_states=hidden
        )


@MODELS.register("amused")
def amused(**model_args) -> AmusedModel:
    """aMUSEd 256 / 512 (UVit2D + VQ + CLIP) from the hub or a local directory."""
    return AmusedModel(**model_args)
