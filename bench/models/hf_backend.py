"""What the Meissonic and aMUSEd backends share: settings, CLIP prompt encoding, the forward's plumbing, VQ decoding.

Both families condition on a CLIP text encoder (`CLIPTextModelWithProjection`) the same way, as the
official pipelines do: the prompt is padded/truncated to 77 tokens; the projected pooled embedding
(``text_embeds``) and the *penultimate* hidden states (``hidden_states[-2]``) are the conditioning.
Both decode with a diffusers `VQModel` looked up from the codebook. Both stack the CFG batch as
[uncond; cond] and take the five micro-conditions [width, height, crop top, crop left, aesthetic score]
(docs/models.md, "What the backends reproduce").
"""
from __future__ import annotations

import abc
import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mgt_common.errors import ConfigError

from .base import Backend

if TYPE_CHECKING:  # pragma: no cover
    from .weights import ResolvedWeights


DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def parse_dtype(backend: str, value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    try:
        return DTYPES[str(value).lower()]
    except KeyError:
        raise ConfigError(f"model {backend!r}: dtype must be one of fp32, bf16, fp16; got {value!r}") from None


def parse_device(backend: str, value: str | torch.device | None) -> torch.device:
    """``auto`` (or None) = the first CUDA device when there is one, else the CPU."""
    if value in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(f"model {backend!r}: device {value!r} is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model {backend!r}: device {value!r} requested but CUDA is not available here")
    return device


def reject_unknown(backend: str, unknown: dict[str, Any], valid: list[str]) -> None:
    if unknown:
        raise ConfigError(f"model {backend!r}: unknown parameter {sorted(unknown)[0]!r}; valid: {', '.join(valid)}")


class PromptEncoder:
    """CLIP tokenizer + text encoder with a per-string cache (each prompt is encoded once per run)."""

    def __init__(self, tokenizer, text_encoder, device: torch.device, dtype: torch.dtype, max_length: int = 77):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()  # not inference_mode: samplers may update the returned tensors in place
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled (B, D), hidden (B, 77, D_h))`` in the model dtype, on the model device."""
        # One prompt per text-encoder call: an encoding must not depend on which prompts share a batch
        # (docs/design.md, "Pairing"); the encoder is cheap next to 64 transformer passes.
        for text in dict.fromkeys(t for t in texts if t not in self._cache):
            ids = self.tokenizer(
                [text], padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
            ).input_ids.to(self.text_encoder.device)
            out = self.text_encoder(ids, return_dict=True, output_hidden_states=True)
            pooled = out.text_embeds[0].to(self.device, self.dtype)
            hidden = out.hidden_states[-2][0].to(self.device, self.dtype)  # penultimate layer, before the final LN
            self._cache[text] = (pooled, hidden)
        pooled = torch.stack([self._cache[t][0] for t in texts])
        hidden = torch.stack([self._cache[t][1] for t in texts])
        return pooled, hidden


@contextlib.contextmanager
def quiet_loading():
    """Silence transformers/diffusers progress bars and load reports while loading.

    Loading CLIP-H's text tower from the full laion CLIP checkpoint reports every vision weight as
    "unexpected"; that is by design (the official scripts do the same), not a problem to show.
    """
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    levels = tlog.get_verbosity(), dlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(levels[0])
        dlog.set_verbosity(levels[1])
        if bars[0]:
            tlog.enable_progress_bar()
        if bars[1]:
            dlog.enable_progress_bar()


def load_clip(root: str, subfolder: str | None, dtype: torch.dtype, device: torch.device):
    """`CLIPTextModelWithProjection` from a CLIP (text or full) checkpoint folder, in eval mode."""
    from transformers import CLIPTextModelWithProjection

    kwargs = {"subfolder": subfolder} if subfolder else {}
    variant = weights_variant(root, subfolder, None, stem="model")
    if variant:
        kwargs["variant"] = variant
    model = CLIPTextModelWithProjection.from_pretrained(root, dtype=dtype, local_files_only=True, **kwargs)
    return model.to(device).eval().requires_grad_(False)


def load_tokenizer(root: str, subfolder: str = "tokenizer"):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(root, subfolder=subfolder, local_files_only=True)


def load_vq(root: str, dtype: torch.dtype, device: torch.device, variant: str | None):
    """The VQ decoder. An fp16 VQ with ``force_upcast`` is upcast to fp32 once, here.

    The official pipeline casts the fp16 VQ to fp32 around every decode; loading it
    in fp16 and upcasting once gives the same weights (fp16-rounded, held in fp32) and the same
    images without the per-call casts.
    """
    from diffusers import VQModel

    vq = VQModel.from_pretrained(root, subfolder="vqvae", torch_dtype=dtype, variant=variant, low_cpu_mem_usage=True)
    if dtype == torch.float16 and vq.config.get("force_upcast", False):
        vq = vq.float()
    return vq.to(device).eval().requires_grad_(False)


def vq_scale_factor(vq_config) -> int:
    """Pixels per token side: 2^(number of VQ resolution levels − 1) (16 for Meissonic and aMUSEd)."""
    return 2 ** (len(vq_config["block_out_channels"]) - 1)


def weights_variant(root, subfolder: str | None, requested: str | None, stem: str = "diffusion_pytorch_model") -> str | None:
    """``requested`` if given; else None when the full-precision file exists, ``"fp16"`` when only the fp16 one does.

    ``stem`` is the weights file name without extension: ``diffusion_pytorch_model`` (diffusers) or
    ``model`` (transformers).
    """
    if requested:
        return requested
    folder = Path(root) / subfolder if subfolder else Path(root)
    if any(folder.glob(f"{stem}.safetensors")) or any(folder.glob(f"{stem}-*.safetensors")):
        return None
    if any(folder.glob(f"{stem}.fp16*.safetensors")):
        return "fp16"
    return None


class TokenBackend(Backend):
    """What the Meissonic and aMUSEd backends share: settings, assembly, CLIP conditioning, the forward's
    plumbing, VQ decoding, PAG's hook and the identity; subclasses load their modules and provide `_forward`.

    Conditioning (batch-first, one row per image): ``pooled``, ``hidden``, and the shared negative
    prompt's ``negative_pooled``, ``negative_hidden`` repeated per row (so `take_rows` keeps them aligned).
    """

    name = "?"
    mask_token_id: int
    codebook_size: int
    default_negative_prompt: str = ""
    #: 2 when the transformer halves the token grid internally (its size must then be even).
    token_stride: int = 1

    def __init__(self):
        super().__init__()
        self.vqvae = None
        self.weights: "ResolvedWeights | None" = None
        self.variant: str | None = None
        self.prompts: PromptEncoder
        self.height: int
        self.width: int
        self.vq_scale: int
        self.default_steps: int
        self.default_guidance_scale: float

    # -- construction (both families) ----------------------------------------------------------
    def _configure(self, dtype: torch.dtype, device: str | None, post_model_dtype: str, compile: Any,
                   compile_mode: Any, cuda_graphs: Any, aesthetic_score: float, crop_coords) -> None:
        """Check and keep the [model] settings both families take; ConfigError names the bad one."""
        self.dtype = dtype
        self.device = parse_device(self.name, device)
        self.post_model_dtype = parse_post_model_dtype(self.name, post_model_dtype, self.dtype)
        self.compiled.configure(self.name, compile, compile_mode, cuda_graphs, self.device)
        self.aesthetic_score = float(aesthetic_score)
        self.crop_coords = tuple(int(c) for c in crop_coords)

    def _load_transformer(self, model_class, root: str, variant: str | None):
        """The checkpoint's ``transformer/`` in the model dtype (``variant``: None, or "fp16" for its .fp16 files).

        ``low_cpu_mem_usage`` (needs accelerate): the weights are materialised once, not over a random init.
        """
        self.variant = weights_variant(root, "transformer", variant)
        return model_class.from_pretrained(root, subfolder="transformer", torch_dtype=self.dtype,
                                           variant=self.variant, low_cpu_mem_usage=True)

    def _assemble(self, transformer, vqvae, encoder, tokenizer, mask_token_id: int, size: tuple[int | None, int | None],
                  default_side: int) -> None:
        """Put the modules on the device in eval mode, read the token layout, and set the image size
        (``size`` = the config's height and width; a missing one follows the other, then `default_side`)."""
        self.transformer = transformer.to(self.device).eval().requires_grad_(False)
        self.vqvae = vqvae.to(self.device).eval().requires_grad_(False)
        self.vq_scale = vq_scale_factor(self.vqvae.config)
        self.codebook_size = int(self.transformer.config.codebook_size)
        self.mask_token_id = int(mask_token_id)
        height, width = size
        self._set_resolution(int(height or default_side), int(width or height or default_side))
        self.prompts = PromptEncoder(tokenizer, encoder.to(self.device).eval().requires_grad_(False),
                                     self.device, self.dtype)

    # -- protocol -------------------------------------------------------------------------------
    def token_grid(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """Token rows and columns for an image size (None: the size the model was loaded for).

        Asking for another size switches the backend to it (after checking the checkpoint supports
        it): image size is a per-call argument of the reference pipelines too.
        """
        height = self.height if height is None else int(height)
        width = self.width if width is None else int(width)
        if (height, width) != (self.height, self.width):
            self._set_resolution(height, width)
        return height // self.vq_scale, width // self.vq_scale

    def _set_resolution(self, height: int, width: int) -> None:
        step = self.vq_scale * self.token_stride
        if height <= 0 or width <= 0 or height % step or width % step:
            raise ConfigError(f"model {self.name!r}: height and width must be positive multiples of {step}; got {height}x{width}")
        self.height, self.width = height, width

    def encode(self, prompts: list[str], negative_prompt: str | None = None) -> dict[str, torch.Tensor]:
        """Encode prompts once each (cached); ``negative_prompt=None`` means "" as in the reference pipelines."""
        pooled, hidden = self.prompts(list(prompts))
        neg_pooled, neg_hidden = self.prompts([negative_prompt or ""])
        rows = len(prompts)
        return {
            "pooled": pooled,
            "hidden": hidden,
            "negative_pooled": neg_pooled.expand(rows, *neg_pooled.shape[1:]),
            "negative_hidden": neg_hidden.expand(rows, *neg_hidden.shape[1:]),
        }

    @torch.no_grad()  # not inference_mode: samplers may update the returned tensors in place
    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        """One batched forward over [uncond; cond] (or cond only), ``(B, N, codebook_size)`` each.

        float32 by default; in the model's dtype with ``post_model_dtype = "model"``, as the official
        half-precision scripts compute CFG, softmax and the Gumbel noise (docs/models.md, "Post-model precision").
        """
        cond, uncond = self.raw_logits(tokens, conditioning, step, total_steps, with_uncond)
        dtype = self.post_model_dtype
        return cond.to(dtype), (None if uncond is None else uncond.to(dtype))

    @torch.no_grad()
    def raw_logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        """`logits` in the transformer's own dtype and layout: views of its output, no copy (the fused
        step, samplers/fast_step.py, upcasts block by block)."""
        batch, seq = tokens.shape
        rows, cols = self.token_grid()
        if seq != rows * cols:
            raise ValueError(f"model {self.name!r}: {seq} tokens do not fill the {rows}x{cols} token grid")
        grid = tokens.to(self.device).reshape(batch, rows, cols)
        pooled, hidden = conditioning["pooled"], conditioning["hidden"]
        if with_uncond:
            grid = torch.cat([grid, grid])
            pooled = torch.cat([conditioning["negative_pooled"], pooled])
            hidden = torch.cat([conditioning["negative_hidden"], hidden])
        self.current_step = int(step)
        out = self.compiled.forward(self, grid, pooled.to(self.device), hidden.to(self.device), step, total_steps)
        out = out.reshape(out.shape[0], out.shape[1], seq).transpose(1, 2)
        if with_uncond:
            return out[batch:], out[:batch]
        return out, None

    @torch.no_grad()  # not inference_mode: samplers may update the returned tensors in place
    def decode(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1], float32: codebook lookup → VQ decoder → clip, as the official
        pipelines decode.

        One image at a time: the VQ decoder's convolutions pick different kernels (and summation
        orders) for different batch sizes, which moved pixels by one level in 0.006 % of pixels between
        batch 4 and batch 1, so an image would depend on its batch. Decoding each image alone makes
        its bytes independent of batch size and batch company (docs/design.md, "Pairing"); the decoder
        is a small share of a generation's time (one pass against dozens of transformer steps).
        """
        rows, cols = grid or self.token_grid()
        if int(tokens.max()) >= self.codebook_size or int(tokens.min()) < 0:
            raise ValueError(f"model {self.name!r}: decode got ids outside the codebook (still-masked tokens?)")
        channels = self.vqvae.config.latent_channels
        ids = tokens.to(self.device).reshape(tokens.shape[0], rows, cols)
        images = [self.vqvae.decode(ids[i:i + 1], force_not_quantize=True, shape=(1, rows, cols, channels)).sample
                  for i in range(ids.shape[0])]
        return torch.cat(images).clip(0, 1).float()

    def perturbed_attention(self, layers):
        """Context manager: identity self-attention of the image tokens in `layers` (PAG, samplers/pag.py)."""
        from .transforms.attention import perturbed_attention

        return perturbed_attention(self, layers)

    def check_perturbed_attention(self, layers) -> None:
        from .transforms.attention import check_layers

        check_layers(self, layers)

    def describe(self) -> dict[str, Any]:
        """The manifest's model entry: weights, precision, size and the reference defaults (subclasses add theirs).

        The precision entries (``post_model_dtype``, ``compile``) appear only when not the defaults, so
        the unit keys of default runs do not change when such a setting is added.
        """
        info = {
            "backend": self.name,
            "weights": self.weights.describe() if self.weights else None,
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
        }
        if self.post_model_dtype != torch.float32:
            info["post_model_dtype"] = "model"
        info.update(self.compiled.describe())
        return info

    def identity(self) -> dict[str, Any]:
        """What decides the images, for unit keys: `describe()` without where the files happen to lie.

        Weight folders enter through their fingerprint and resolved commit only, so moving a checkpoint
        (or reading it from the cache instead of a copy) does not invalidate finished units.
        """
        info = {k: v for k, v in self.describe().items() if k not in ("device", "compile_seconds")}
        for key in ("weights", "text_encoder"):
            if isinstance(info.get(key), dict):
                info[key] = {"fingerprint": info[key]["fingerprint"]}
        return info

    def warm_up(self, batch: int, with_uncond: bool = True) -> float:
        """One forward at this batch size outside all timings (compiles it when compiled); its seconds."""
        rows, cols = self.token_grid()
        tokens = torch.full((batch, rows * cols), self.mask_token_id, dtype=torch.long, device=self.device)
        started = time.perf_counter()
        self.raw_logits(tokens, self.encode([""] * batch), 0, 2, with_uncond)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def micro_conditions(self, rows: int) -> torch.Tensor:
        """``(rows, 5)`` = [width, height, crop top, crop left, score] (width first "as in original code")."""
        values = [self.width, self.height, self.crop_coords[0], self.crop_coords[1], self.aesthetic_score]
        return torch.tensor(values, device=self.device, dtype=self.dtype)[None].expand(rows, 5)

    @abc.abstractmethod
    def _forward(self, grid, pooled, hidden, step, total_steps) -> torch.Tensor:
        """The transformer's logits ``(rows, codebook_size, h, w)`` for the token grid and conditioning rows."""


def check_variant(backend: str, variant: str | None) -> None:
    """The weights-file variant: None (the full-precision files) or "fp16" (the .fp16 ones)."""
    if variant not in (None, "fp16"):
        raise ConfigError(f"model {backend!r}: variant must be \"fp16\" or left out; got {variant!r}")


def checkpoint_mask_token_id(root: str, vocab_size: int) -> int:
    """The scheduler config's ``mask_token_id`` when the checkpoint has one, else vocab_size − 1 (the last
    id of the vocabulary, as both published checkpoints have it: 8255 of 8256)."""
    config = Path(root) / "scheduler" / "scheduler_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("mask_token_id")
        if value is not None:
            if not 0 <= int(value) < vocab_size:
                raise ConfigError(f"{config}: mask_token_id {value} is outside the vocabulary of {vocab_size}")
            return int(value)
    return vocab_size - 1


POST_MODEL_DTYPES = ("float32", "model")


def parse_post_model_dtype(backend: str, value: str, model_dtype: torch.dtype) -> torch.dtype:
    """``"float32"`` (default: guidance, softmax and sampling in float32) or ``"model"`` (in the model dtype,
    as the official Meissonic half-precision scripts do; reproduces them token for token)."""
    if value not in POST_MODEL_DTYPES:
        raise ConfigError(f"model {backend!r}: post_model_dtype must be one of {', '.join(POST_MODEL_DTYPES)}; got {value!r}")
    return torch.float32 if value == "float32" else model_dtype
