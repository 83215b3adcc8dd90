"""The Meissonic transformer (arXiv 2410.08261), built from diffusers' building blocks.

diffusers has no Meissonic class, so this module rebuilds the published architecture (the official
code's `src/transformer.py`, `viiika/Meissonic`) as a diffusers `ModelMixin` + `ConfigMixin`, so that

    MeissonicTransformer2DModel.from_pretrained("MeissonFlow/Meissonic", subfolder="transformer")

reads the published ``config.json`` (whose ``_class_name`` is ``"Transformer2DModel"``: diffusers only
uses that name to drop config keys our ``__init__`` does not know, so our class loads it unchanged) and
``diffusion_pytorch_model[.fp16].safetensors``. Every submodule keeps the published attribute name, so
the state-dict keys and shapes equal the published ones (checked against the 867-key list in
``tests/data/meissonic-1024-transformer-state-dict.txt``).

Shape of the network (the official Meissonic code's `src/transformer.py`):

    tokens (B, h, w) ─ embed (Embedding + RMSNorm + 1×1 conv) ─ down_block (2× conv, 1024 px only)
      ─ project_to_hidden ─ 14 dual-stream blocks (Flux joint attention, AdaLN-Zero) ─ 28 single-stream
      blocks ─ project_from_hidden ─ up_block (2× transposed conv) ─ mlm_layer ─ logits (B, 8192, h, w)

Conditioning: CLIP penultimate hidden states → ``context_embedder`` (text stream); pooled CLIP
embedding ⊕ five 256-d sinusoidal micro-conditions → ``cond_embed`` → ``time_text_embed`` together
with the timestep (→ AdaLN modulation of every block); 2-D RoPE over (0, row, col) ids.

The quirks a faithful loader must keep are kept on purpose and documented where they happen:
the timestep is multiplied by 1000 after being cast to the model dtype (so bf16 rounds 63000 to
62976, as the reference does), the RoPE ids of the 1024 checkpoint are built from the *latent* grid
only when the image height is exactly 1024 (`rope_image_ids`), and the logits cover the codebook
only (8192 channels; the mask id 8255 is never predicted).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import (
    CombinedTimestepTextProjEmbeddings,
    TimestepEmbedding,
    apply_rotary_emb,
    get_timestep_embedding,
)
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_flux import FluxPosEmbed  # 2-D RoPE, float64 freqs
from diffusers.models.normalization import AdaLayerNormZero, AdaLayerNormZeroSingle, RMSNorm
from diffusers.models.unets.uvit_2d import ConvMlmLayer, UVit2DConvEmbed
from diffusers.models.upsampling import Upsample2D

#: Each micro-condition scalar is embedded with a 256-d sinusoid (the forward's first step in `src/transformer.py`).
MICRO_COND_ENCODE_DIM = 256
#: Five micro-conditions: [width, height, crop top, crop left, aesthetic (HPS) score].
NUM_MICRO_CONDS = 5
#: The reference scales the step index by 1000 inside the model (the pipeline passes the integer T−1−i).
TIMESTEP_SCALE = 1000
#: Norm epsilon used by every RMSNorm/LayerNorm outside the attention heads (as `src/transformer.py`).
LAYER_NORM_EPS = 1e-6


def rope_image_ids(latent_height: int, latent_width: int, image_height: int, device=None) -> torch.Tensor:
    """RoPE position ids ``(n, 3)`` = rows of ``[0, row, col]`` for the image tokens (as the official pipeline builds them).

    The reference pipeline builds ids for a ``(H/2) × (W/2)`` grid where ``H × W`` is the latent (VQ)
    grid when ``image_height == 1024`` (its 2× down-sampling halves the 64×64 latent to 32×32 tokens),
    and ``2·latent`` otherwise (a 512 px checkpoint without down-sampling: 32×32 latent → 32×32 ids).
    The branch keys on the *height only*, exactly as in the reference; other sizes on the 1024
    checkpoint give an id count that does not match the token count, which the backend reports.
    """
    if image_height == 1024:
        rows, cols = latent_height // 2, latent_width // 2
    else:
        rows, cols = latent_height, latent_width
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] = torch.arange(rows, device=device)[:, None]
    ids[..., 2] = torch.arange(cols, device=device)[None, :]
    return ids.reshape(rows * cols, 3)


def text_position_ids(num_text_tokens: int, device=None) -> torch.Tensor:
    """All-zero RoPE ids for the text tokens (the official pipeline's ``txt_ids`` = 77×3 zeros)."""
    return torch.zeros(num_text_tokens, 3, device=device)


def embed_micro_conditions(micro_conds: torch.Tensor) -> torch.Tensor:
    """``(B, 5)`` micro-conditions → ``(B, 5·256)``: each scalar gets its own cos-first sinusoid."""
    flat = get_timestep_embedding(
        micro_conds.flatten(), MICRO_COND_ENCODE_DIM, flip_sin_to_cos=True, downscale_freq_shift=0
    )
    return flat.reshape(micro_conds.shape[0], -1)


class JointAttnProcessor:
    """Flux-style joint attention over [text; image] with 2-D RoPE, through PyTorch SDPA.

    Written for diffusers' classic `Attention` module (whose parameter names and order are those of
    the published checkpoint). Per head: q/k RMS-normalised, the text stream's projections
    (``add_*_proj``) placed before the image stream's, RoPE applied to both (text ids are zeros, i.e.
    the identity rotation), one ``scaled_dot_product_attention`` over the joint sequence.
    Single-stream blocks call it without ``encoder_hidden_states``: plain self-attention, no output
    projection (``pre_only``).
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        batch = hidden_states.shape[0]

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, S, H·D) → (B, H, S, D)
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query = attn.norm_q(heads(attn.to_q(hidden_states)))
        key = attn.norm_k(heads(attn.to_k(hidden_states)))
        value = heads(attn.to_v(hidden_states))

        if encoder_hidden_states is not None:
            text_query = attn.norm_added_q(heads(attn.add_q_proj(encoder_hidden_states)))
            text_key = attn.norm_added_k(heads(attn.add_k_proj(encoder_hidden_states)))
            text_value = heads(attn.add_v_proj(encoder_hidden_states))
            query = torch.cat([text_query, query], dim=2)
            key = torch.cat([text_key, key], dim=2)
            value = torch.cat([text_value, value], dim=2)

        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb)
            key = apply_rotary_emb(key, image_rotary_emb)

        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * out.shape[-1]).to(query.dtype)

        if encoder_hidden_states is None:
            return out
        num_text = encoder_hidden_states.shape[1]
        text_out, image_out = out[:, :num_text], out[:, num_text:]
        image_out = attn.to_out[1](attn.to_out[0](image_out))
        text_out = attn.to_add_out(text_out)
        return image_out, text_out


class TransformerBlock(nn.Module):
    """Dual-stream (MM-DiT) block: separate AdaLN-Zero modulation and MLPs for image and text, joint attention.

    Class name kept from the reference: the design-choices code (TomeMGT) patches modules whose class
    name is exactly ``TransformerBlock`` (`src/tomemgt` of the design-choices code, arXiv 2411.10781).
    """

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)
        self.norm1_context = AdaLayerNormZero(dim)
        self.attn = Attention(
            query_dim=dim,
            cross_attention_dim=None,
            added_kv_proj_dim=dim,
            dim_head=attention_head_dim,
            heads=num_attention_heads,
            out_dim=dim,
            context_pre_only=False,
            bias=True,
            processor=JointAttnProcessor(),
            qk_norm="rms_norm",
            eps=LAYER_NORM_EPS,
        )
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(dim=dim, dim_out=dim, activation_fn="gelu-approximate")
        self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.ff_context = FeedForward(dim=dim, dim_out=dim, activation_fn="gelu-approximate")

    def forward(self, hidden_states, encoder_hidden_states, temb, image_rotary_emb):
        x, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=temb)
        c, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(encoder_hidden_states, emb=temb)
        attn_out, text_attn_out = self.attn(
            hidden_states=x, encoder_hidden_states=c, image_rotary_emb=image_rotary_emb
        )

        hidden_states = hidden_states + gate_msa[:, None] * attn_out
        x = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        hidden_states = hidden_states + gate_mlp[:, None] * self.ff(x)

        encoder_hidden_states = encoder_hidden_states + c_gate_msa[:, None] * text_attn_out
        c = self.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
        encoder_hidden_states = encoder_hidden_states + c_gate_mlp[:, None] * self.ff_context(c)
        if encoder_hidden_states.dtype == torch.float16:  # the reference clips fp16 overflow here
            encoder_hidden_states = encoder_hidden_states.clip(-65504, 65504)
        return encoder_hidden_states, hidden_states


class SingleTransformerBlock(nn.Module):
    """Single-stream block over the concatenated [text; image] sequence: parallel attention and MLP."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        mlp_dim = int(dim * mlp_ratio)
        self.norm = AdaLayerNormZeroSingle(dim)
        self.proj_mlp = nn.Linear(dim, mlp_dim)
        self.act_mlp = nn.GELU(approximate="tanh")
        self.proj_out = nn.Linear(dim + mlp_dim, dim)
        self.attn = Attention(
            query_dim=dim,
            cross_attention_dim=None,
            dim_head=attention_head_dim,
            heads=num_attention_heads,
            out_dim=dim,
            bias=True,
            processor=JointAttnProcessor(),
            qk_norm="rms_norm",
            eps=LAYER_NORM_EPS,
            pre_only=True,
        )

    def forward(self, hidden_states, temb, image_rotary_emb):
        residual = hidden_states
        x, gate = self.norm(hidden_states, emb=temb)
        mlp = self.act_mlp(self.proj_mlp(x))
        attn = self.attn(hidden_states=x, image_rotary_emb=image_rotary_emb)
        hidden_states = residual + gate[:, None] * self.proj_out(torch.cat([attn, mlp], dim=2))
        if hidden_states.dtype == torch.float16:
            hidden_states = hidden_states.clip(-65504, 65504)
        return hidden_states


class Resample(nn.Module):
    """The 2× token-grid down- or up-sampling around the transformer (state-dict prefixes ``down_block``/``up_block``).

    Down: RMSNorm over channels, then a 2×2 stride-2 conv (64×64 → 32×32 at 1024 px). Up: RMSNorm, then a
    2×2 stride-2 transposed conv. Absent (identity) in 512 px checkpoints (``downsample = false``).
    """

    def __init__(self, channels: int, downsample: bool = False, upsample: bool = False):
        super().__init__()
        common = dict(norm_type="rms_norm", eps=LAYER_NORM_EPS, elementwise_affine=True, bias=False)
        # name="Conv2d_0" stores the conv only as `.conv` (no duplicate key), as in the checkpoint.
        self.downsample = (
            Downsample2D(channels, use_conv=True, padding=0, name="Conv2d_0", kernel_size=2, **common)
            if downsample
            else None
        )
        self.upsample = (
            Upsample2D(channels, use_conv_transpose=True, kernel_size=2, padding=0, name="conv", interpolate=False, **common)
            if upsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class MeissonicTransformer2DModel(ModelMixin, ConfigMixin):
    """Meissonic's multi-modal transformer (arXiv 2410.08261). Config keys equal the published ``config.json``.

    Args:
        patch_size, in_channels, guidance_embeds: present in the published config; unused by the
            forward (tokens enter through ``embed``; no guidance embedding in Meissonic). Kept so the
            config round-trips.
        num_layers: dual-stream blocks (14). num_single_layers: single-stream blocks (28).
        attention_head_dim, num_attention_heads: 128 × 8 → inner width 1024.
        joint_attention_dim: width of the text encoder's hidden states (CLIP-H: 1024).
        pooled_projection_dim: width of the pooled text embedding; it is also the input width of
            ``time_text_embed.text_embedder``, which receives ``cond_embed``'s output, so it must
            equal the inner width (1024 = 1024 in the published config).
        axes_dims_rope: RoPE dims per id axis (16, 56, 56); they sum to the head dim.
        downsample, upsample: the 2× conv resampling of the token grid (true at 1024 px).
        codebook_size: logits channels (8192). vocab_size: input embedding rows (8256; mask = 8255).
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["TransformerBlock", "SingleTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: int = 1,
        in_channels: int = 64,
        num_layers: int = 14,
        num_single_layers: int = 28,
        attention_head_dim: int = 128,
        num_attention_heads: int = 8,
        joint_attention_dim: int = 1024,
        pooled_projection_dim: int = 1024,
        guidance_embeds: bool = False,
        axes_dims_rope: tuple[int, ...] = (16, 56, 56),
        upsample: bool = False,
        downsample: bool = False,
        codebook_size: int = 8192,
        vocab_size: int = 8256,
    ):
        super().__init__()
        if guidance_embeds:
            raise ValueError("Meissonic has no guidance embedding; guidance_embeds=true is not a Meissonic config")
        inner = num_attention_heads * attention_head_dim
        if sum(axes_dims_rope) != attention_head_dim:
            raise ValueError(f"axes_dims_rope {list(axes_dims_rope)} must sum to attention_head_dim {attention_head_dim}")
        if pooled_projection_dim != inner:
            raise ValueError(
                f"pooled_projection_dim ({pooled_projection_dim}) must equal the inner width "
                f"num_attention_heads*attention_head_dim ({inner}): the text embedder reads cond_embed's output"
            )
        self.inner_dim = inner

        # Module creation order follows the published state dict's key order.
        self.pos_embed = FluxPosEmbed(theta=10000, axes_dim=list(axes_dims_rope))
        self.time_text_embed = CombinedTimestepTextProjEmbeddings(
            embedding_dim=inner, pooled_projection_dim=pooled_projection_dim
        )
        self.context_embedder = nn.Linear(joint_attention_dim, inner)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, num_attention_heads, attention_head_dim) for _ in range(num_layers)]
        )
        self.single_transformer_blocks = nn.ModuleList(
            [SingleTransformerBlock(inner, num_attention_heads, attention_head_dim) for _ in range(num_single_layers)]
        )
        # Token embedding and MLM head are aMUSEd's (UVit2D) modules: Embedding→RMSNorm→1×1 conv, and
        # 1×1 conv→RMSNorm→1×1 conv to `codebook_size` channels; bias-free, affine norms.
        self.embed = UVit2DConvEmbed(inner, inner, vocab_size, True, LAYER_NORM_EPS, False)
        self.mlm_layer = ConvMlmLayer(inner, inner, False, True, LAYER_NORM_EPS, codebook_size)
        self.cond_embed = TimestepEmbedding(
            NUM_MICRO_CONDS * MICRO_COND_ENCODE_DIM + pooled_projection_dim, inner, sample_proj_bias=False
        )
        self.encoder_proj_layer_norm = RMSNorm(inner, LAYER_NORM_EPS, True)
        self.project_to_hidden_norm = RMSNorm(inner, LAYER_NORM_EPS, True)
        self.project_to_hidden = nn.Linear(inner, inner, bias=False)
        self.project_from_hidden_norm = RMSNorm(inner, LAYER_NORM_EPS, True)
        self.project_from_hidden = nn.Linear(inner, inner, bias=False)
        self.down_block = Resample(inner, downsample=downsample)
        self.up_block = Resample(inner, upsample=upsample)

    def forward(
        self,
        hidden_states: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor,
        timestep: torch.Tensor,
        img_ids: torch.Tensor,
        txt_ids: torch.Tensor,
        micro_conds: torch.Tensor,
        return_dict: bool = True,
    ):
        """Logits ``(B, codebook_size, h, w)`` for token ids ``(B, h, w)`` (the forward of `src/transformer.py`).

        Args:
            hidden_states: token ids on the latent grid (mask id = ``vocab_size - 1``).
            encoder_hidden_states: CLIP penultimate hidden states ``(B, 77, joint_attention_dim)``.
            pooled_projections: projected pooled CLIP embedding ``(B, pooled_projection_dim)``.
            timestep: the *integer step index* ``T-1-i`` (shape ``[1]`` or ``[B]``), scaled by 1000 here.
            img_ids, txt_ids: RoPE ids ``(n_img, 3)`` and ``(n_txt, 3)`` (a leading batch dim is dropped).
            micro_conds: ``(B, 5)`` = [width, height, crop top, crop left, score].
        """
        cond = torch.cat([pooled_projections, embed_micro_conditions(micro_conds)], dim=1)
        cond = self.cond_embed(cond.to(self.dtype)).to(encoder_hidden_states.dtype)

        hidden_states = self.embed(hidden_states)
        encoder_hidden_states = self.encoder_proj_layer_norm(self.context_embedder(encoder_hidden_states))
        hidden_states = self.down_block(hidden_states)
        batch, channels, height, width = hidden_states.shape
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        hidden_states = self.project_to_hidden(self.project_to_hidden_norm(hidden_states))

        # Quirk kept from the reference: cast to the model dtype *before* scaling by 1000.
        timestep = timestep.to(hidden_states.dtype) * TIMESTEP_SCALE
        temb = self.time_text_embed(timestep, cond)

        if txt_ids.ndim == 3:
            txt_ids = txt_ids[0]
        if img_ids.ndim == 3:
            img_ids = img_ids[0]
        if img_ids.shape[0] != height * width:
            raise ValueError(
                f"{img_ids.shape[0]} RoPE image ids for {height}x{width}={height * width} image tokens: this checkpoint "
                "(down_block present: 1024 px only) does not support this resolution (docs/models.md, 'Image size')"
            )
        rotary = self.pos_embed(torch.cat([txt_ids, img_ids], dim=0))

        for block in self.transformer_blocks:
            encoder_hidden_states, hidden_states = block(hidden_states, encoder_hidden_states, temb, rotary)
        num_text = encoder_hidden_states.shape[1]
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        for block in self.single_transformer_blocks:
            hidden_states = block(hidden_states, temb, rotary)
        hidden_states = hidden_states[:, num_text:]

        hidden_states = self.project_from_hidden(self.project_from_hidden_norm(hidden_states))
        hidden_states = hidden_states.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        logits = self.mlm_layer(self.up_block(hidden_states))
        if not return_dict:
            return (logits,)
        return Transformer2DModelOutput(sample=logits)
