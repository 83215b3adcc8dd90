"""ToMe-MGT: token merging inside the transformer blocks (arXiv 2411.10781 §4, "TomeMGT"; Bolya & Hoffman 2023, tomesd).

Per block, from the block's input image tokens x (B, N, C) on their h × w grid (reference code of
2411.10781, ``src/tomemgt``; tomesd's ``bipartite_soft_matching_random2d``):

1. partition: in every ``stride × stride`` window one token is a *destination* (dst; a random one per
   window, the same for every row of the batch), the others are *sources* (src);
2. similarity: cosine similarity of every src token to every dst token; each src keeps its best dst;
3. merge: the r = ⌊N · ratio⌋ src tokens with the highest best-similarity are averaged into their
   dst (scatter mean over the dst and its merged sources); N − r tokens go on;
4. unmerge: after the block's sub-layer, every merged src position receives a copy of its dst's output.

Where it merges, as in the reference: in Meissonic's dual-stream (MM) blocks, the image stream's
normalised input is merged before the joint attention (so image queries, keys and values are all
merged, and the image part of the RoPE table is merged with the same map, by mean), the gated
attention output is unmerged; the MLP path merges → feed-forward → gate → unmerges. The text stream
is untouched. On aMUSEd (no RoPE) the same is done around its self-attention and feed-forward.

Differences from the reference code, on purpose:

- the merge map is recomputed every ``recompute_every`` blocks *within one forward* (reference: 5,
  the default here), never carried from the last block of one step into the first of the next;
- the dst choice is drawn from a generator seeded by (``seed``, step, block), not from a generator
  forked once from the CUDA RNG and advanced by every call: an image must not depend on its batch or
  on the units generated before it (the reference's switch to the top-left dst for odd batches has
  no effect there: its matching draws a random dst whatever ``no_rand`` says; ``random_dst = false``
  here really takes the top-left one);
- RoPE is applied per sample (the reference's merged tables have a batch dimension that stock
  ``apply_rotary_emb`` cannot broadcast with a CFG batch).

Cost effect: attention and MLP of the chosen blocks see N − r image tokens instead of N (quadratic
saving in attention); forward passes are unchanged.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

from samplers.components import register_component, require
from samplers.model_transforms import ModelTransform

from .network import GROUPS, blocks, image_grid, network_of

Fn = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def bipartite_soft_matching_2d(metric: torch.Tensor, h: int, w: int, r: int, stride: int = 2,
                               generator: torch.Generator | None = None) -> tuple[Fn, Fn]:
    """(merge, unmerge) for tokens ``(B, h·w, C)`` on an h × w grid (tomesd's random-2d bipartite matching).

    ``generator`` None: the dst is the first (top-left) token of each window; else a random one per
    window, drawn on the CPU from `generator` and shared by every row.
    """
    batch, n, _ = metric.shape
    if r <= 0:
        return _identity, _identity
    hs, ws = h // stride, w // stride
    cells = stride * stride
    if generator is None:
        pick = torch.zeros(hs, ws, 1, dtype=torch.int64)
    else:
        pick = torch.randint(cells, (hs, ws, 1), generator=generator)
    # −1 marks the dst of each window; argsort puts the dst (−1) first, then the sources in grid order.
    window = torch.zeros(hs, ws, cells, dtype=torch.int64).scatter_(2, pick, -1)
    window = window.view(hs, ws, stride, stride).transpose(1, 2).reshape(hs * stride, ws * stride)
    if hs * stride < h or ws * stride < w:  # leftover rows/columns are sources
        full = torch.zeros(h, w, dtype=torch.int64)
        full[: hs * stride, : ws * stride] = window
        window = full
    order = window.reshape(1, -1, 1).argsort(dim=1, stable=True).to(metric.device)
    num_dst = hs * ws
    a_idx, b_idx = order[:, num_dst:, :], order[:, :num_dst, :]  # sources, destinations (positions)

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[-1]
        src = x.gather(1, a_idx.expand(x.shape[0], n - num_dst, c))
        dst = x.gather(1, b_idx.expand(x.shape[0], num_dst, c))
        return src, dst

    with torch.no_grad():
        normed = metric / metric.norm(dim=-1, keepdim=True)
        a, b = split(normed)
        scores = a @ b.transpose(-1, -2)
        r = min(a.shape[1], r)
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True, stable=True)[..., None]
        unm_idx = edge_idx[:, r:, :]  # sources that stay
        src_idx = edge_idx[:, :r, :]  # sources merged away
        dst_idx = node_idx[..., None].gather(1, src_idx)  # their destinations

    def merge(x: torch.Tensor) -> torch.Tensor:
        src, dst = split(x)
        rows, t1, c = src.shape
        unm = src.gather(1, unm_idx.expand(rows, t1 - r, c))
        moved = src.gather(1, src_idx.expand(rows, r, c))
        dst = dst.scatter_reduce(1, dst_idx.expand(rows, r, c), moved, reduce="mean")
        return torch.cat([unm, dst], dim=1)

    def unmerge(x: torch.Tensor) -> torch.Tensor:
        unm_len = unm_idx.shape[1]
        unm, dst = x[:, :unm_len, :], x[:, unm_len:, :]
        rows, _, c = x.shape
        src = dst.gather(1, dst_idx.expand(rows, r, c))
        out = x.new_zeros(rows, n, c)
        out.scatter_(1, b_idx.expand(rows, num_dst, c), dst)
        out.scatter_(1, a_idx.expand(rows, a_idx.shape[1], 1).gather(1, unm_idx).expand(rows, unm_len, c), unm)
        out.scatter_(1, a_idx.expand(rows, a_idx.shape[1], 1).gather(1, src_idx).expand(rows, r, c), src)
        return out

    return merge, unmerge


# -- Meissonic dual-stream blocks -----------------------------------------------------------------------

def _rope_per_sample(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """diffusers' ``apply_rotary_emb`` (use_real, unbind −1) with tables ``(B, S, D)``, one per row."""
    x_real, x_imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    rotated = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    return (x.float() * cos[:, None] + rotated.float() * sin[:, None]).to(x.dtype)


def _joint_attention(attn, image: torch.Tensor, text: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """`JointAttnProcessor` (meissonic_transformer.py) with per-row RoPE tables (merged image tokens)."""
    batch = image.shape[0]

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

    query = torch.cat([attn.norm_added_q(heads(attn.add_q_proj(text))), attn.norm_q(heads(attn.to_q(image)))], dim=2)
    key = torch.cat([attn.norm_added_k(heads(attn.add_k_proj(text))), attn.norm_k(heads(attn.to_k(image)))], dim=2)
    value = torch.cat([heads(attn.add_v_proj(text)), heads(attn.to_v(image))], dim=2)
    query, key = _rope_per_sample(query, cos, sin), _rope_per_sample(key, cos, sin)
    mask = None
    if getattr(attn.processor, "identity_image", False):  # PAG's perturbed pass (attention.py) on a merged block
        num_text, total = text.shape[1], query.shape[2]
        mask = torch.zeros(total, total, device=query.device, dtype=query.dtype)
        mask[num_text:, num_text:] = float("-inf")
        mask[num_text:, num_text:].fill_diagonal_(0)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * out.shape[-1]).to(query.dtype)
    num_text = text.shape[1]
    return attn.to_out[1](attn.to_out[0](out[:, num_text:])), attn.to_add_out(out[:, :num_text])


def merged_dual_block_forward(block, hidden_states, encoder_hidden_states, temb, image_rotary_emb,
                              merge: Fn, unmerge: Fn):
    """Meissonic's `TransformerBlock.forward` with the image stream merged around attention and MLP."""
    x, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(hidden_states, emb=temb)
    c, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = block.norm1_context(encoder_hidden_states, emb=temb)
    batch, num_text = c.shape[0], c.shape[1]
    cos, sin = image_rotary_emb
    # the image rows of the RoPE tables follow their tokens (mean over merged positions, as the reference)
    cos = torch.cat([cos[None, :num_text].expand(batch, -1, -1), merge(cos[None, num_text:].expand(batch, -1, -1))], 1)
    sin = torch.cat([sin[None, :num_text].expand(batch, -1, -1), merge(sin[None, num_text:].expand(batch, -1, -1))], 1)
    attn_out, text_attn_out = _joint_attention(block.attn, merge(x), c, cos, sin)

    hidden_states = hidden_states + unmerge(gate_msa[:, None] * attn_out)
    x = block.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
    hidden_states = hidden_states + unmerge(gate_mlp[:, None] * block.ff(merge(x)))

    encoder_hidden_states = encoder_hidden_states + c_gate_msa[:, None] * text_attn_out
    c = block.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
    encoder_hidden_states = encoder_hidden_states + c_gate_mlp[:, None] * block.ff_context(c)
    if encoder_hidden_states.dtype == torch.float16:
        encoder_hidden_states = encoder_hidden_states.clip(-65504, 65504)
    return encoder_hidden_states, hidden_states


@register_component("model_transform", "tome")
class TokenMerging(ModelTransform):
    """ToMe-MGT token merging: r = ratio·N image tokens averaged into similar ones inside the chosen blocks (arXiv 2411.10781).

    ``ratio``: share of image tokens merged per block (0.25 = the reference demo; 0 = off);
    ``blocks``: "auto" (Meissonic's 14 dual-stream MM blocks as in the reference; aMUSEd's layers),
    "mm", "single" (Meissonic only; the reference leaves them unmerged), "all";
    ``stride``: side of the window that holds one dst token (2: a quarter of the tokens are dst);
    ``recompute_every``: blocks that share one merge map (5 as in the reference);
    ``random_dst``: a random dst per window (reference) or the top-left one; ``seed`` for that draw.
    """

    version = "1"
    cost_effect = "attention and MLP of the chosen blocks run on (1 − ratio)·N image tokens; passes unchanged"

    ratio: float = 0.25
    blocks: str = "auto"
    stride: int = 2
    recompute_every: int = 5
    random_dst: bool = True
    seed: int = 0

    def validate(self) -> None:
        max_ratio = 1 - 1 / self.stride**2 if self.stride >= 1 else 0
        require(self.stride >= 1, "model_transform", self.name, f"stride must be >= 1, got {self.stride}")
        require(0 <= self.ratio <= max_ratio, "model_transform", self.name,
                f"ratio must be in [0, {max_ratio:g}] (only the non-dst share 1 − 1/stride² can merge), got {self.ratio}")
        require(self.recompute_every >= 1, "model_transform", self.name,
                f"recompute_every must be >= 1, got {self.recompute_every}")
        require(self.blocks in GROUPS, "model_transform", self.name,
                f"blocks must be one of {', '.join(GROUPS)}, got {self.blocks!r}")
        require(self.seed >= 0, "model_transform", self.name, f"seed must be >= 0, got {self.seed}")

    def neutral(self) -> bool:
        return self.ratio == 0

    def _targets(self, model):
        network = network_of(model, "model_transform 'tome'")
        return network, blocks(network, self.blocks, "mm", "model_transform 'tome'")

    def check_model(self, model) -> None:
        self._targets(model)

    block_patch: ClassVar[str] = "replace"

    def patched_blocks(self, model) -> list[str]:
        return [name for name, _ in self._targets(model)[1]]

    def _maps(self, model, state: dict, position: int, hidden: torch.Tensor) -> tuple[Fn, Fn]:
        """The merge map for the block at `position` among the patched ones (shared by recompute_every blocks)."""
        if position % self.recompute_every == 0 or "maps" not in state:
            h, w = image_grid(model, hidden.shape[1])
            generator = None
            if self.random_dst:
                step = int(model.current_step)
                generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1009 + position)
            state["maps"] = bipartite_soft_matching_2d(hidden, h, w, int(hidden.shape[1] * self.ratio),
                                                       self.stride, generator)
        return state["maps"]

    def attach(self, model):
        network, chosen = self._targets(model)
        state: dict = {}
        undo: list[Callable[[], None]] = []
        for position, (name, block) in enumerate(chosen):
            if name.startswith("transformer_blocks"):
                undo.append(self._patch_dual(model, block, position, state))
            elif name.startswith("single"):
                undo.append(self._patch_single(model, block, position, state))
            else:
                undo.extend(self._hook_layer(model, block, position, state))

        def restore() -> None:
            for fn in reversed(undo):
                fn()
            state.clear()

        return restore

    def _patch_dual(self, model, block, position: int, state: dict):
        def forward(hidden_states, encoder_hidden_states, temb, image_rotary_emb):
            merge, unmerge = self._maps(model, state, position, hidden_states)
            return merged_dual_block_forward(block, hidden_states, encoder_hidden_states, temb, image_rotary_emb,
                                             merge, unmerge)

        block.forward = forward  # instance attribute shadows the class method until restored
        return lambda: block.__dict__.pop("forward", None)

    def _patch_single(self, model, block, position: int, state: dict):
        """Single-stream block: only its image rows are merged (the text rows pass through)."""

        def forward(hidden_states, temb, image_rotary_emb):
            return _merged_single_forward(self, model, block, state, position, hidden_states, temb, image_rotary_emb)

        block.forward = forward
        return lambda: block.__dict__.pop("forward", None)

    def _hook_layer(self, model, layer, position: int, state: dict):
        """aMUSEd `BasicTransformerBlock`: merge the inputs of self-attention and feed-forward, unmerge their outputs."""

        def on_block(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            state["current"] = self._maps(model, state, position, hidden)

        def merge_input(module, args, kwargs):
            merge, _ = state["current"]
            if args:
                return (merge(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": merge(kwargs["hidden_states"])}

        def unmerge_output(module, args, kwargs, output):
            _, unmerge = state["current"]
            return unmerge(output)

        handles = [layer.register_forward_pre_hook(on_block, with_kwargs=True)]
        for sub in (layer.attn1, layer.ff):
            handles.append(sub.register_forward_pre_hook(merge_input, with_kwargs=True))
            handles.append(sub.register_forward_hook(unmerge_output, with_kwargs=True))
        return [h.remove for h in handles]


def _merged_single_forward(transform: TokenMerging, model, block, state: dict, position: int,
                           hidden_states, temb, image_rotary_emb):
    """Meissonic's `SingleTransformerBlock.forward` with the image rows merged around attention + MLP."""
    cos, sin = image_rotary_emb
    num_image = _image_tokens(model, hidden_states.shape[1])
    num_text = hidden_states.shape[1] - num_image
    merge_img, unmerge_img = transform._maps(model, state, position, hidden_states[:, num_text:])
    batch = hidden_states.shape[0]

    def merge(x):
        return torch.cat([x[:, :num_text], merge_img(x[:, num_text:])], dim=1)

    def unmerge(x):
        return torch.cat([x[:, :num_text], unmerge_img(x[:, num_text:])], dim=1)

    residual = hidden_states
    x, gate = block.norm(hidden_states, emb=temb)
    x = merge(x)
    mlp = block.act_mlp(block.proj_mlp(x))
    cos = merge(cos[None].expand(batch, -1, -1))
    sin = merge(sin[None].expand(batch, -1, -1))
    attn = block.attn
    rows = x.shape[0]

    def heads(t):
        return t.view(rows, -1, attn.heads, t.shape[-1] // attn.heads).transpose(1, 2)

    query = _rope_per_sample(attn.norm_q(heads(attn.to_q(x))), cos, sin)
    key = _rope_per_sample(attn.norm_k(heads(attn.to_k(x))), cos, sin)
    out = F.scaled_dot_product_attention(query, key, heads(attn.to_v(x)), dropout_p=0.0)
    out = out.transpose(1, 2).reshape(rows, -1, attn.heads * out.shape[-1]).to(query.dtype)
    hidden_states = residual + unmerge(gate[:, None] * block.proj_out(torch.cat([out, mlp], dim=2)))
    if hidden_states.dtype == torch.float16:
        hidden_states = hidden_states.clip(-65504, 65504)
    return hidden_states


def _image_tokens(model, sequence: int) -> int:
    """How many of a single-stream block's `sequence` rows are image tokens (text rows come first)."""
    rows, cols = model.token_grid()
    stride = 2 if getattr(model.transformer.config, "downsample", False) else 1
    return (rows // stride) * (cols // stride)
