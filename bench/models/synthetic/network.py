"""The synthetic world's trained network: a tiny Meissonic transformer and a word-level text encoder.

The denoiser is `MeissonicTransformer2DModel` itself (arXiv 2410.08261; `bench/models/meissonic_transformer.py`)
at a tiny width and depth, in its 1024 px layout: the 16×16 token grid is halved to 8×8 by the 2×2 conv
``down_block``, runs through dual-stream (`TransformerBlock`) and single-stream (`SingleTransformerBlock`)
blocks with joint attention and 2-D RoPE, and is brought back to 16×16 by ``up_block`` before the MLM head.
Because the classes are the Meissonic backend's own, model-side design choices written against them
(token merging, quantization, feature caching, attention hooks) apply to this network unchanged.

CLIP is replaced by `WordTextEncoder`: the world's prompts use a closed vocabulary of a few dozen words,
so a word-level tokenizer and learned embeddings are enough. It produces what Meissonic takes from CLIP:
per-token hidden states (``encoder_hidden_states``: word + position embeddings through two small
self-attention layers, a tiny CLIP text tower) and a pooled vector (``pooled_projections``, the mean of
the hidden states over the prompt's tokens, projected to the transformer width). The layers make the
pooled vector depend on word order: a mean of word + position embeddings is a bag of words, identical
for "a red circle on a blue background" and "a blue circle on a red background". Measured at the full
training budget, the network binds as well without them (``text_layers=0``): the per-word hidden states
carry word order into the joint attention (docs/world.md, "Ablation at the full budget"). The empty
prompt "" (only the start token) is the unconditional branch, as in Meissonic's CFG with an empty
negative prompt; training drops prompts to "" for classifier-free guidance.

Image positions: the transformer's image tokens see positions only through 2-D RoPE, which is relative
between image tokens; absolute position reaches them only through attention to the text tokens (RoPE id
0). The world's prompts name absolute positions ("at the top left"), and a network this small trained
for minutes did not learn them that way (its first-step prediction was the same at every position:
docs/world.md), so `PositionalConvEmbed` adds a learned absolute position embedding to the token
embedding, before the down-sampling and outside the blocks, which stay Meissonic's classes.

Timestep: MaskGIT-style training samples a mask ratio, not a step of a fixed schedule, so the network is
told the fraction of its input that is masked (per row, in [0, 1]; the transformer scales it by 1000 as
Meissonic does its step index). That keeps it meaningful for any number of steps or schedule, and a
row's conditioning depends on that row only.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .grammar import COLOURS, POSITIONS, SHAPES, SIZES

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
#: Attention heads of the text layers (16 dims each at the default text width).
TEXT_HEADS = 2
#: Every word the world's prompts use (grammar.py): fixed order, so token ids are stable across versions.
PROMPT_WORDS = (
    "a", "an", "at", "the", "on", "background", "something",
    *COLOURS, *SHAPES, *dict.fromkeys(w for p in POSITIONS for w in p.split()), *SIZES,
)


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the trained world's network (recorded next to the weights; part of the model identity)."""

    grid: int = 16              # token grid side (the world's)
    codebook_size: int = 16     # image tokens (2 per colour)
    text_length: int = 16       # <bos> + up to 15 words
    text_dim: int = 32          # word embedding width (Meissonic's joint_attention_dim)
    heads: int = 2
    head_dim: int = 32          # inner width = heads × head_dim = 64
    rope_axes: tuple[int, int, int] = (8, 12, 12)
    text_layers: int = 2        # self-attention layers over the words (0: word + position embeddings only)
    image_positions: bool = True  # learned absolute position embedding of the image tokens
    dual_blocks: int = 2        # TransformerBlock (MM-DiT) count
    single_blocks: int = 2      # SingleTransformerBlock count
    words: tuple[str, ...] = field(default=PROMPT_WORDS)

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def vocab(self) -> tuple[str, ...]:
        return (PAD, BOS, UNK, *self.words)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "NetworkConfig":
        # Files written before these fields existed hold the first network: no text layers, no image positions.
        data = {"text_layers": 0, "image_positions": False, **data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class WordTokenizer:
    """Lower-case words → ids: ``[<bos>, w1, …, wn, <pad>, …]`` of fixed length (unknown words → <unk>)."""

    def __init__(self, vocab: tuple[str, ...], length: int):
        self.index = {w: i for i, w in enumerate(vocab)}
        self.length = length

    def __call__(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())[: self.length - 1]
            ids = [self.index[BOS]] + [self.index.get(w, self.index[UNK]) for w in words]
            rows.append(ids + [self.index[PAD]] * (self.length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)


class TextLayer(nn.Module):
    """Pre-LN transformer encoder layer over the words (self-attention with the padding masked, then an MLP).

    Written out rather than `nn.TransformerEncoderLayer`, whose inference fast path (nested tensors) zeroes
    padded positions in eval mode only: training and generation would then see different text states.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        # every query sees the prompt's words only (<bos> is always there, so no row is fully masked)
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=present[:, None, None, :])
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


class WordTextEncoder(nn.Module):
    """Stand-in for CLIP: word + position embeddings, ``text_layers`` self-attention layers (hidden states),
    and the masked mean of the hidden states, projected (pooled)."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.word_embedding = nn.Embedding(len(config.vocab), config.text_dim)
        self.position_embedding = nn.Parameter(torch.zeros(config.text_length, config.text_dim))
        self.layers = nn.ModuleList(TextLayer(config.text_dim, TEXT_HEADS) for _ in range(config.text_layers))
        self.final_norm = nn.LayerNorm(config.text_dim) if config.text_layers else nn.Identity()
        self.pooled_projection = nn.Linear(config.text_dim, config.inner)
        nn.init.normal_(self.position_embedding, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled (B, inner), hidden (B, L, text_dim))`` for token ids ``(B, L)`` (pad id 0)."""
        hidden = self.word_embedding(ids) + self.position_embedding
        present = ids != 0  # <bos> is always present: never divides by 0
        for layer in self.layers:
            hidden = layer(hidden, present)
        hidden = self.final_norm(hidden)
        weights = present.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
        return self.pooled_projection(pooled), hidden


class PositionalConvEmbed(nn.Module):
    """Meissonic's token embedding (aMUSEd's `UVit2DConvEmbed`) plus a learned absolute position embedding."""

    def __init__(self, embed: nn.Module, channels: int, grid: int):
        super().__init__()
        self.embeddings, self.layer_norm, self.conv = embed.embeddings, embed.layer_norm, embed.conv
        self.position = nn.Parameter(torch.randn(1, channels, grid, grid) * 0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(self.embeddings(input_ids)).permute(0, 3, 1, 2)
        return self.conv(x) + self.position


class WorldNetwork(nn.Module):
    """Text encoder + tiny Meissonic transformer: ``logits (B, N, V)`` for tokens ``(B, N)`` and text ids."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        from ..meissonic_transformer import MeissonicTransformer2DModel, rope_image_ids, text_position_ids

        self.config = config
        self.text_encoder = WordTextEncoder(config)
        self.transformer = MeissonicTransformer2DModel(
            num_layers=config.dual_blocks, num_single_layers=config.single_blocks,
            attention_head_dim=config.head_dim, num_attention_heads=config.heads,
            joint_attention_dim=config.text_dim, pooled_projection_dim=config.inner,
            axes_dims_rope=tuple(config.rope_axes), downsample=True, upsample=True,
            codebook_size=config.codebook_size, vocab_size=config.codebook_size + 1,
        )
        if config.image_positions:
            self.transformer.embed = PositionalConvEmbed(self.transformer.embed, config.inner, config.grid)
        self.mask_token_id = config.codebook_size
        half = config.grid // 2  # the 2× down-sampling: RoPE ids for the 8×8 grid the blocks see
        self.register_buffer("img_ids", rope_image_ids(half, half, image_height=0), persistent=False)
        self.register_buffer("txt_ids", text_position_ids(config.text_length), persistent=False)
        # Micro-conditions are constant in this world (one resolution, no crops, no aesthetic score).
        self.register_buffer("micro_conds", torch.tensor([[config.grid, config.grid, 0.0, 0.0, 0.0]]),
                             persistent=False)

    def forward(self, tokens: torch.Tensor, pooled: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        batch, n = tokens.shape
        side = self.config.grid
        masked_fraction = (tokens == self.mask_token_id).float().mean(dim=1)
        logits = self.transformer(
            tokens.reshape(batch, side, side), encoder_hidden_states=hidden, pooled_projections=pooled,
            timestep=masked_fraction, img_ids=self.img_ids, txt_ids=self.txt_ids,
            micro_conds=self.micro_conds.expand(batch, 5), return_dict=False,
        )[0]
        return logits.reshape(batch, self.config.codebook_size, n).transpose(1, 2)
