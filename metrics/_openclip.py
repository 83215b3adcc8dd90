"""Small pieces shared by the OpenCLIP-based scorers (HPSv2, CLIP score)."""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from mgt_common.errors import ConfigError

#: OpenAI CLIP's normalisation (open_clip.constants.OPENAI_DATASET_MEAN / _STD), used by HPSv2.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def check_model_name(model: str) -> None:
    import open_clip

    if model not in open_clip.list_models():
        from mgt_common.registry import unknown_name_message

        raise ConfigError(unknown_name_message("OpenCLIP model config", model, open_clip.list_models())
                          + " Register a custom one with open_clip.add_model_config(path).")


def count_truncated(tokenizer, prompts: Sequence[str]) -> int:
    """How many prompts exceed the tokenizer's context (77 for CLIP) and are cut (start + text + end tokens)."""
    context = getattr(tokenizer, "context_length", 77) or 77
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        return 0
    return sum(len(encode(p)) + 2 > context for p in prompts)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is 'amp' on CUDA (what the HPSv2 reference runs: fp16 autocast) and fp32 elsewhere."""
    precision = str(precision).lower()
    if precision == "auto":
        return "amp" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "amp", "bf16"):
        raise ConfigError(f"precision {precision!r}: use 'auto', 'fp32', 'amp' (fp16 autocast) or 'bf16' (bf16 autocast)")
    return precision


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "amp" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] back to the bytes they were saved as (rounding, not truncating: k/255·255 may fall below k)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


# -- images with transparency or a palette (one documented rule per scorer; docs/scorers.md) ---------------

def composite_on_white(image):
    """A PIL image as RGB, any transparency (alpha band, or a palette/colour key) composited onto white.

    This is what transformers' CLIP image processor does first (``convert_to_rgb``), so PickScore's
    reference sees exactly this; HPSv2's reference has no rule (it crashes on RGBA), and we use the same
    one there: an image looks as it would on a white page. Images without transparency are only converted.
    """
    from PIL import Image

    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def pil_to_float(image) -> torch.Tensor:
    """An RGB PIL image as float ``(3, H, W)`` in [0, 1] (exactly ``ToTensor``: k / 255)."""
    import numpy as np

    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)


def read_composited(path) -> torch.Tensor:
    """An image file under the `composite_on_white` rule (HPSv2, PickScore)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return pil_to_float(composite_on_white(image))
