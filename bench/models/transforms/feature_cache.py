"""Feature caching across steps, in two forms (docs/catalogue.md, "Feature caching across steps").

Masked generation changes few tokens between neighbouring steps, so a block's computation changes
little too; a cached block is computed on *refresh* steps and reused on the ``interval − 1`` steps after
each. Steps i with i mod interval = 0 refresh (so every generation starts with one), as does any forward
whose call has no stored entry (a step with and one without the unconditional half; PAG's perturbed
pass keeps its own entries; entries are kept per call within a step, so a backend that runs one step's
batch as several calls, the trained world's fixed-size chunks, reuses each call's own rows). interval = 1
refreshes at every step: the plain model, bit for bit (the transform is then skipped).

Two things can be cached:

- ``feature-cache`` — **FORA / ToCa** (Selvaraju et al. 2024, "FORA: Fast-Forward Caching in Diffusion
  Transformer Acceleration", arXiv 2407.01425; Zou et al. 2024, "ToCa", arXiv 2410.05317, code DiT-ToCa
  ``models.py``): the *ungated* outputs of attention and MLP are cached, and a reuse step applies the
  **current** step's adaLN gates to them, x ← x + gate_t · attn_cached, x ← x + gate_t · mlp_cached, as
  DiT-ToCa does with ``gate_msa``/``gate_mlp`` from the current conditioning. Meissonic's dual-stream
  block caches its joint attention's image and text outputs and both MLP outputs; its single-stream
  block, whose attention and MLP share one output projection and one gate, caches that projection's
  output ``proj_out([attn; mlp])``. aMUSEd's layers have no step-dependent gates (their adaptive norm
  reads the pooled text only): self-attention, cross-attention and MLP outputs are reused as they are.
- ``residual-cache`` — **residual caching** (Δ-DiT-like; Chen et al. 2024, "Δ-DiT", arXiv 2406.01125,
  caches block residuals; DeepCache, arXiv 2312.00858, the refresh interval): the block's whole residual
  update Δ = block(x) − x is stored and a reuse step returns x + Δ, so the refresh step's gates are
  reused although Meissonic's timestep embedding changes every step.

Cost: the cached blocks' attention and MLPs are skipped on (interval − 1)/interval of the steps (FORA
still computes the gates, one small linear of the timestep embedding per block); passes unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import torch

from samplers.components import register_component, require
from samplers.model_transforms import ModelTransform

from .network import GROUPS, blocks, family, network_of


class RefreshSchedule:
    """When a cached block runs, and its stored entries (shared by both forms).

    Entry key: (block position, the block's call count at this step, input shapes, perturbed pass).
    """

    def __init__(self, model, interval: int):
        self.model, self.interval = model, interval
        self.store: dict[Any, tuple[int, Any]] = {}
        # How often each block has run at the current step: a backend may run one step's batch as several
        # calls (the trained world's fixed-size chunks) or add a pass (PAG); the k-th call of a step must
        # find the k-th call's entry of the refresh step, not another chunk's rows of the same shape.
        self.calls: dict[str, Any] = {"step": None, "count": {}}

    def lookup(self, position: int, inputs: list[torch.Tensor]) -> tuple[Any, Any, int]:
        """(key, entry or None when this call must refresh, step)."""
        step = int(self.model.current_step)
        if self.calls["step"] != step:
            self.calls["step"], self.calls["count"] = step, {}
        index = self.calls["count"].get(position, 0)
        self.calls["count"][position] = index + 1
        key = (position, index, tuple(tuple(x.shape) for x in inputs), bool(self.model.attention_perturbed))
        entry = self.store.get(key)
        fresh = step % self.interval == 0 or entry is None or not 0 < step - entry[0] < self.interval
        return key, (None if fresh else entry[1]), step

    def keep(self, key, step: int, value) -> None:
        self.store[key] = (step, value)

    def clear(self) -> None:
        self.store.clear()


@dataclasses.dataclass
class _CachingTransform(ModelTransform):
    """What both forms share: parameters, targets, attach/restore."""

    interval: int = 2
    blocks: str = "auto"

    def validate(self) -> None:
        require(self.interval >= 1, "model_transform", self.name, f"interval must be >= 1, got {self.interval}")
        require(self.blocks in GROUPS, "model_transform", self.name,
                f"blocks must be one of {', '.join(GROUPS)}, got {self.blocks!r}")

    def neutral(self) -> bool:
        return self.interval == 1

    def _targets(self, model):
        network = network_of(model, f"model_transform {self.name!r}")
        return blocks(network, self.blocks, "single", f"model_transform {self.name!r}")

    def check_model(self, model) -> None:
        self._targets(model)

    def patched_blocks(self, model) -> list[str]:
        return [name for name, _ in self._targets(model)]

    def attach(self, model):
        schedule = RefreshSchedule(model, self.interval)
        kind = family(network_of(model, f"model_transform {self.name!r}"))
        undo = [self._patch(model, kind, name, block, position, schedule)
                for position, (name, block) in enumerate(self._targets(model))]

        def restore() -> None:
            for fn in reversed(undo):
                fn()
            schedule.clear()

        return restore

    def _patch(self, model, kind: str, name: str, block, position: int, schedule: RefreshSchedule) -> Callable[[], None]:
        raise NotImplementedError


def _own_forward(block, forward) -> Callable[[], None]:
    """Shadow the block's forward with an instance attribute; the undo puts back what was there."""
    had_own = "forward" in block.__dict__
    previous = block.__dict__.get("forward")
    block.forward = forward

    def restore() -> None:
        if had_own:
            block.forward = previous
        else:
            block.__dict__.pop("forward", None)

    return restore


@register_component("model_transform", "feature-cache")
class FeatureCache(_CachingTransform):
    """FORA / ToCa: cache the chosen blocks' ungated attention and MLP outputs, apply the current step's adaLN gates (arXiv 2407.01425, 2410.05317).

    ``interval``: refresh every this many steps (1 = off); ``blocks``: "auto" (Meissonic's 28
    single-stream blocks; aMUSEd's layers), "mm", "single", "all".
    """

    version = "2"
    cost_effect = ("the cached blocks' attention and MLPs are skipped on (interval − 1)/interval of the steps, "
                   "the current gates applied to their cached outputs; passes unchanged")
    block_patch: ClassVar[str] = "replace"

    def _patch(self, model, kind, name, block, position, schedule):
        if kind == "amused":
            return _fora_amused_layer(block, position, schedule)
        if name.startswith("transformer_blocks"):
            return _own_forward(block, _fora_dual_forward(block, position, schedule))
        return _own_forward(block, _fora_single_forward(block, position, schedule))


def _gates(norm, temb: torch.Tensor, chunks: int) -> tuple[torch.Tensor, ...]:
    """The adaLN-Zero modulation of diffusers' `AdaLayerNormZero` (6 chunks) / `…Single` (3) from the
    timestep embedding alone: what the norm computes before normalising its input."""
    return norm.linear(norm.silu(temb)).chunk(chunks, dim=1)


def _fora_dual_forward(block, position: int, schedule: RefreshSchedule):
    """Meissonic's `TransformerBlock.forward` (bench/models/meissonic_transformer.py), op for op on a refresh
    step, with the four ungated sublayer outputs cached: joint attention (image, text) and the two MLPs."""

    def forward(hidden_states, encoder_hidden_states, temb, image_rotary_emb):
        key, cached, step = schedule.lookup(position, [encoder_hidden_states, hidden_states])
        if cached is None:
            x, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(hidden_states, emb=temb)
            c, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = block.norm1_context(encoder_hidden_states, emb=temb)
            attn_out, text_attn_out = block.attn(hidden_states=x, encoder_hidden_states=c,
                                                 image_rotary_emb=image_rotary_emb)
        else:
            attn_out, text_attn_out, ff_out, ff_context_out = cached
            _, _, gate_msa, _, _, gate_mlp = _gates(block.norm1, temb, 6)
            _, _, c_gate_msa, _, _, c_gate_mlp = _gates(block.norm1_context, temb, 6)

        hidden_states = hidden_states + gate_msa[:, None] * attn_out
        if cached is None:
            x = block.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
            ff_out = block.ff(x)
        hidden_states = hidden_states + gate_mlp[:, None] * ff_out

        encoder_hidden_states = encoder_hidden_states + c_gate_msa[:, None] * text_attn_out
        if cached is None:
            c = block.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
            ff_context_out = block.ff_context(c)
            schedule.keep(key, step, (attn_out, text_attn_out, ff_out, ff_context_out))
        encoder_hidden_states = encoder_hidden_states + c_gate_mlp[:, None] * ff_context_out
        if encoder_hidden_states.dtype == torch.float16:  # as the block: the reference clips fp16 overflow
            encoder_hidden_states = encoder_hidden_states.clip(-65504, 65504)
        return encoder_hidden_states, hidden_states

    return forward


def _fora_single_forward(block, position: int, schedule: RefreshSchedule):
    """Meissonic's `SingleTransformerBlock.forward`, op for op on a refresh step, with the ungated output
    ``proj_out([attn; mlp])`` cached (attention and MLP run in parallel and share that projection and gate)."""

    def forward(hidden_states, temb, image_rotary_emb):
        key, cached, step = schedule.lookup(position, [hidden_states])
        residual = hidden_states
        if cached is None:
            x, gate = block.norm(hidden_states, emb=temb)
            mlp = block.act_mlp(block.proj_mlp(x))
            attn = block.attn(hidden_states=x, image_rotary_emb=image_rotary_emb)
            out = block.proj_out(torch.cat([attn, mlp], dim=2))
            schedule.keep(key, step, out)
        else:
            out = cached
            _, _, gate = _gates(block.norm, temb, 3)
        hidden_states = residual + gate[:, None] * out
        if hidden_states.dtype == torch.float16:
            hidden_states = hidden_states.clip(-65504, 65504)
        return hidden_states

    return forward


def _fora_amused_layer(layer, position: int, schedule: RefreshSchedule) -> Callable[[], None]:
    """aMUSEd's `BasicTransformerBlock` (adaptive norm on the pooled text, no gates): its self-attention,
    cross-attention and MLP outputs are cached on a refresh step and returned as they are on a reuse step
    (the norms before them still run; their outputs are then unused)."""
    state: dict[str, Any] = {}

    def on_layer(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        key, cached, step = schedule.lookup(position, [hidden])
        state.update(key=key, cached=cached, step=step, outputs={})

    def sublayer(name: str, inner):
        def forward(*args, **kwargs):
            if state["cached"] is not None:
                return state["cached"][name]
            out = inner(*args, **kwargs)
            state["outputs"][name] = out
            return out

        return forward

    def after_layer(module, args, kwargs, output):
        if state["cached"] is None:
            schedule.keep(state["key"], state["step"], dict(state["outputs"]))

    handles = [layer.register_forward_pre_hook(on_layer, with_kwargs=True),
               layer.register_forward_hook(after_layer, with_kwargs=True)]
    undo = [_own_forward(sub, sublayer(name, sub.forward))
            for name, sub in (("attn1", layer.attn1), ("attn2", layer.attn2), ("ff", layer.ff)) if sub is not None]

    def restore() -> None:
        for fn in reversed(undo):
            fn()
        for handle in handles:
            handle.remove()

    return restore


@register_component("model_transform", "residual-cache")
class ResidualCache(_CachingTransform):
    """Residual caching (Δ-DiT-like): skip the chosen blocks on interval − 1 of every interval steps, returning x + Δ with the refresh step's Δ = block(x) − x (arXiv 2406.01125; DeepCache's interval).

    ``interval``: refresh every this many steps (1 = off); ``blocks``: "auto" (Meissonic's 28
    single-stream blocks; aMUSEd's layers), "mm", "single", "all". The refresh step's adaLN gates are
    part of Δ, so they are reused on the following steps (``feature-cache`` applies the current ones).
    """

    version = "1"
    cost_effect = "the cached blocks are skipped on (interval − 1)/interval of the steps; passes unchanged"
    block_patch: ClassVar[str] = "wrap"

    def _patch(self, model, kind, name, block, position, schedule):
        inner = block.forward  # the class method, or another transform's patch (e.g. tome)
        dual = name.startswith("transformer_blocks")

        def streams(args, kwargs) -> list[torch.Tensor]:
            """The residual-stream inputs, in the order the block returns them."""
            hidden = args[0] if args else kwargs["hidden_states"]
            if dual:  # Meissonic's dual-stream block returns (encoder_hidden_states, hidden_states)
                text = args[1] if len(args) > 1 else kwargs["encoder_hidden_states"]
                return [text, hidden]
            return [hidden]

        def forward(*args, **kwargs):
            inputs = streams(args, kwargs)
            key, cached, step = schedule.lookup(position, inputs)
            if cached is not None:
                outputs = [x + delta for x, delta in zip(inputs, cached)]
                return tuple(outputs) if dual else outputs[0]
            out = inner(*args, **kwargs)
            outputs = list(out) if dual else [out]
            schedule.keep(key, step, [o - x for o, x in zip(outputs, inputs)])
            return out

        return _own_forward(block, forward)
