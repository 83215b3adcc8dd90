"""Tiny random Meissonic and aMUSEd checkpoints in the published directory layouts, built offline.

The real weights (~9 GB) cannot be fetched on CI machines, so the loading code is proven on models of
the *same classes* with tiny widths, saved with ``save_pretrained`` exactly where the hub checkpoints
keep them (``transformer/``, ``vqvae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
``model_index.json``) and loaded back through the real backends. Used by the tests and by
``benchmarks/model_speed.py``; also a quick smoke test for a user's installation.

The tokenizer is a real CLIP BPE tokenizer built from the vocabulary file open_clip ships in its wheel
(49408 tokens; no download), so prompts tokenize as they do for the real checkpoints.
"""
from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import torch

#: Tiny codebook: 32 image codes; the vocabulary adds room for the mask id (vocab − 1), as 8192 → 8256.
TINY_CODEBOOK, TINY_VOCAB = 32, 40
CLIP_VOCAB = 49408


@functools.lru_cache(maxsize=1)
def _clip_bpe() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's vocabulary and merges, from open_clip's shipped ``bpe_simple_vocab_16e6.txt.gz``."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = tuple(lines[1 : 49152 - 256 - 2 + 1])  # the slice CLIP uses: 48894 merges
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == CLIP_VOCAB
    return vocab, merges


def clip_tokenizer():
    """A transformers `CLIPTokenizer` equal to CLIP's, built from open_clip's BPE file (no network).

    transformers 5 takes ``vocab=``/``merges=`` objects (``vocab_file=`` is ignored), and
    ``model_max_length`` must be set to 77.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], model_max_length=77)


def save_clip_tokenizer(folder: Path) -> None:
    """Write the tokenizer in the hub checkpoints' (legacy) layout: vocab.json, merges.txt and two small configs."""
    vocab, merges = _clip_bpe()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(folder / "tokenizer_config.json", {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
                                                   "do_lower_case": True, **special})


def _clip_text_config(width: int, projection: int):
    from transformers import CLIPTextConfig

    # eos_token_id 2 as in the laion CLIP-H config: transformers then pools at argmax(input_ids) (the EOS).
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=projection, max_position_embeddings=77, eos_token_id=2,
        bos_token_id=0, pad_token_id=1,
    )


def _tiny_vq(levels: int = 5):
    """`VQModel` with the published VQ's structure (codebook lookup, 5 levels = scale factor 16) at width 8."""
    from diffusers import VQModel

    return VQModel(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels, block_out_channels=[8] * levels, layers_per_block=1,
        act_fn="silu", latent_channels=4, norm_num_groups=4, num_vq_embeddings=TINY_CODEBOOK, vq_embed_dim=None,
        sample_size=32, scaling_factor=0.18215, norm_type="group", lookup_from_codebook=True,
        mid_block_add_attention=False, force_upcast=True,
    )


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _publish_class_name(config_path: Path, class_name: str, version: str = "0.30.2") -> None:
    """Rewrite ``_class_name`` as the hub checkpoint has it (Meissonic's says "Transformer2DModel")."""
    config = json.loads(config_path.read_text())
    config.update({"_class_name": class_name, "_diffusers_version": version})
    config_path.write_text(json.dumps(config, indent=2))


def save_tiny_meissonic(root: str | Path, *, downsample: bool = True, seed: int = 0, variant: str | None = None,
                        separate_text_encoder: str | Path | None = None) -> Path:
    """Write a tiny random Meissonic checkpoint under ``root`` (downsample=True: the 1024 layout, else 512).

    ``separate_text_encoder``: also write a tiny *full* CLIP model (text + vision, as the laion
    CLIP-H repository holds) at that path, for the default ``text_encoder`` path of the 1024 family.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTextModelWithProjection, CLIPVisionConfig

    from .meissonic_transformer import MeissonicTransformer2DModel

    root = Path(root)
    torch.manual_seed(seed)
    width = 32  # inner width = heads 2 × head dim 16; RoPE axes 4 + 6 + 6 = 16
    transformer = MeissonicTransformer2DModel(
        num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
        pooled_projection_dim=width, axes_dims_rope=(4, 6, 6), downsample=downsample, upsample=downsample,
        codebook_size=TINY_CODEBOOK, vocab_size=TINY_VOCAB,
    )
    half = (lambda m: m.half()) if variant == "fp16" else (lambda m: m)  # hub .fp16 files hold fp16 tensors
    half(transformer).save_pretrained(root / "transformer", variant=variant)
    _publish_class_name(root / "transformer" / "config.json", "Transformer2DModel")
    half(_tiny_vq()).save_pretrained(root / "vqvae", variant=variant)
    text_config = _clip_text_config(width=24, projection=width)
    half(CLIPTextModelWithProjection(text_config)).save_pretrained(root / "text_encoder", variant=variant)
    save_clip_tokenizer(root / "tokenizer")
    _write_json(root / "scheduler" / "scheduler_config.json",
                {"_class_name": "Scheduler", "mask_token_id": TINY_VOCAB - 1, "masking_schedule": "cosine"})
    _write_json(root / "model_index.json", {
        "_class_name": "Pipeline", "_diffusers_version": "0.30.2",
        "scheduler": ["scheduler", "Scheduler"], "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "transformer": ["transformer", "Transformer2DModel"],
        "vqvae": ["diffusers", "VQModel"],
    })
    if separate_text_encoder is not None:
        vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=32, patch_size=16, projection_dim=width)
        config = CLIPConfig(text_config=text_config.to_dict(), vision_config=vision.to_dict(), projection_dim=width)
        CLIPModel(config).save_pretrained(separate_text_encoder)
    return root


def save_tiny_amused(root: str | Path, *, seed: int = 0, sample_size: int = 4) -> Path:
    """Write a tiny random aMUSEd checkpoint (``UVit2DModel`` + VQ + CLIP) under ``root``.

    ``sample_size`` tokens per side × VQ scale 16 = the default resolution (4 → 64 px).
    """
    from diffusers import AmusedScheduler, UVit2DModel
    from transformers import CLIPTextModelWithProjection

    root = Path(root)
    torch.manual_seed(seed)
    UVit2DModel(
        hidden_size=32, use_bias=False, cond_embed_dim=32, micro_cond_encode_dim=256, micro_cond_embed_dim=1280,
        encoder_hidden_size=24, vocab_size=TINY_VOCAB, codebook_size=TINY_CODEBOOK, in_channels=16,
        block_out_channels=16, num_res_blocks=1, downsample=False, upsample=False, block_num_heads=2,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, sample_size=sample_size,
    ).save_pretrained(root / "transformer")
    _tiny_vq().save_pretrained(root / "vqvae")
    CLIPTextModelWithProjection(_clip_text_config(width=24, projection=32)).save_pretrained(root / "text_encoder")
    save_clip_tokenizer(root / "tokenizer")
    AmusedScheduler(mask_token_id=TINY_VOCAB - 1).save_pretrained(root / "scheduler")
    _write_json(root / "model_index.json", {
        "_class_name": "AmusedPipeline", "_diffusers_version": "0.25.0",
        "scheduler": ["diffusers", "AmusedScheduler"], "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "transformer": ["diffusers", "UVit2DModel"],
        "vqvae": ["diffusers", "VQModel"],
    })
    return root
