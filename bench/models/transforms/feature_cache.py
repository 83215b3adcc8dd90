"""Feature caching across steps: reuse of block residuals (ToCa, arXiv 2410.05317; DeepCache, arXiv 2312.00858).

Masked generation changes few tokens between neighbouring steps, so a block's contribution to the
residual stream changes little too. On a *refresh* step every cached block runs and its residual
update Δ = block(x) − x is stored (per stream: Meissonic's dual-stream blocks update the image and
the text streams); on the ``interval − 1`` steps after it the block is skipped and returns x + Δ with
the stored Δ. Steps i with i mod interval = 0 refresh (so every generation starts with one), as does
any forward whose batch shape has no stored Δ (e.g. a step with and one without the unconditional
half, or PAG's perturbed pass, which keeps its own entries). This is ToCa's/FORA's reuse of cached
block outputs at block granularity (ToCa selects tokens within a block; not done here) and DeepCache's
refresh interval.

interval = 1 refreshes at every step: the plain model, bit for bit (the transform is then skipped).
Cost effect: on (interval − 1)/interval of the steps the cached blocks cost nothing; forward passes
are unchanged (each step still calls the network once).
"""
from __future__ import annotations

from typing import Any

import torch

from samplers.components import register_component, require
from samplers.model_transforms import ModelTransform

from .network import GROUPS, blocks, network_of


@register_component("model_transform", "feature-cache")
class FeatureCache(ModelTransform):
    """Skip the chosen blocks on interval − 1 of every interval steps, reusing their last residual update (ToCa / DeepCache).

    ``interval``: refresh every this many steps (1 = off); ``blocks``: "auto" (Meissonic's 28
    single-stream blocks; aMUSEd's layers), "mm", "single", "all".
    """

    version = "1"
    cost_effect = "the cached blocks are skipped on (interval − 1)/interval of the steps; passes unchanged"

    interval: int = 2
    blocks: str = "auto"

    def validate(self) -> None:
        require(self.interval >= 1, "model_transform", self.name, f"interval must be >= 1, got {self.interval}")
        require(self.blocks in GROUPS, "model_transform", self.name,
                f"blocks must be one of {', '.join(GROUPS)}, got {self.blocks!r}")

    def neutral(self) -> bool:
        return self.interval == 1

    def _targets(self, model):
        network = network_of(model, "model_transform 'feature-cache'")
        return blocks(network, self.blocks, "single", "model_transform 'feature-cache'")

    def check_model(self, model) -> None:
        self._targets(model)

    def attach(self, model):
        store: dict[Any, tuple[int, list[torch.Tensor]]] = {}
        # How often each block has run at the current step: a backend may run one step's batch as several
        # calls (the trained world's fixed-size chunks) or add a pass (PAG); the k-th call of a step must
        # find the k-th call's entry of the refresh step, not another chunk's rows of the same shape.
        calls: dict[str, Any] = {"step": None, "count": {}}
        undo = []
        for position, (name, block) in enumerate(self._targets(model)):
            undo.append(self._wrap(model, block, position, name.startswith("transformer_blocks"), store, calls))

        def restore() -> None:
            for fn in reversed(undo):
                fn()
            store.clear()

        return restore

    def _wrap(self, model, block, position: int, dual: bool, store: dict, calls: dict):
        had_own = "forward" in block.__dict__
        inner = block.forward  # the class method, or another transform's patch (e.g. tome)
        interval = self.interval

        def streams(args, kwargs) -> list[torch.Tensor]:
            """The residual-stream inputs, in the order the block returns them."""
            hidden = args[0] if args else kwargs["hidden_states"]
            if dual:  # Meissonic's dual-stream block returns (encoder_hidden_states, hidden_states)
                text = args[1] if len(args) > 1 else kwargs["encoder_hidden_states"]
                return [text, hidden]
            return [hidden]

        def forward(*args, **kwargs):
            step = int(model.current_step)
            if calls["step"] != step:
                calls["step"], calls["count"] = step, {}
            index = calls["count"].get(position, 0)
            calls["count"][position] = index + 1
            inputs = streams(args, kwargs)
            key = (position, index, tuple(tuple(x.shape) for x in inputs), bool(model.attention_perturbed))
            entry = store.get(key)
            fresh = step % interval == 0 or entry is None or not 0 < step - entry[0] < interval
            if not fresh:
                outputs = [x + delta for x, delta in zip(inputs, entry[1])]
                return tuple(outputs) if dual else outputs[0]
            out = inner(*args, **kwargs)
            outputs = list(out) if dual else [out]
            store[key] = (step, [o - x for o, x in zip(outputs, inputs)])
            return out

        block.forward = forward

        def restore() -> None:
            if had_own:
                block.forward = inner
            else:
                block.__dict__.pop("forward", None)

        return restore
