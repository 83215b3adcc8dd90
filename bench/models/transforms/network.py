"""What the model-side transforms need of a backend, and the block groups they address.

A backend carries model transforms when its `bench.models.base.Backend` members say so:

- ``transformer``: the network (an ``nn.Module``; None for a model without one), as an attribute the
  harness may swap for a transformed copy while a variant runs (quantization) and put back afterwards;
- ``token_grid()``: the current (rows, columns) of the token grid (the transformer may halve it);
- ``current_step``: the 0-based sampler step of the forward being run (set by the backend's `logits`;
  feature caching refreshes and token merging draws its partition from it).

The network's blocks are found by class, so any network built from these blocks carries the
transforms: Meissonic's dual-stream `TransformerBlock` (``transformer_blocks``, the "MM" blocks) and
`SingleTransformerBlock` (``single_transformer_blocks``), from bench/models/meissonic_transformer.py,
and aMUSEd's diffusers `BasicTransformerBlock` (``transformer_layers`` of `UVit2DModel`).
"""
from __future__ import annotations

from torch import nn

from mgt_common.errors import ConfigError

#: Block groups a transform may name; "auto" is the transform's own default group.
GROUPS = ("auto", "mm", "single", "all")


def network_of(model, who: str) -> nn.Module:
    """The backend's transformer, or a ConfigError naming the transform and why it cannot apply."""
    network = model.transformer
    if not isinstance(network, nn.Module):
        raise ConfigError(f"{who}: model {model.name or type(model).__name__!r} has no neural transformer "
                          "to change (model-side choices need a network backend such as meissonic or amused; the "
                          "exact synthetic world has none)")
    return network


def family(network: nn.Module) -> str:
    """"meissonic" (dual + single-stream blocks), "amused" (BasicTransformerBlock layers), or ""."""
    if hasattr(network, "transformer_blocks") and hasattr(network, "single_transformer_blocks"):
        return "meissonic"
    if hasattr(network, "transformer_layers"):
        return "amused"
    return ""


def blocks(network: nn.Module, group: str, default: str, who: str) -> list[tuple[str, nn.Module]]:
    """(qualified name, block) of a group: "mm" = Meissonic's dual-stream blocks, "single" = its
    single-stream blocks, "all" = every transformer block; "auto" = `default`. aMUSEd has one kind of
    block (its transformer layers): "auto", "mm" and "all" all name them, "single" is refused."""
    kind = family(network)
    group = (default if kind == "meissonic" else "all") if group == "auto" else group
    if kind == "meissonic":
        mm = [(f"transformer_blocks.{i}", b) for i, b in enumerate(network.transformer_blocks)]
        single = [(f"single_transformer_blocks.{i}", b) for i, b in enumerate(network.single_transformer_blocks)]
        chosen = {"mm": mm, "single": single, "all": mm + single}.get(group)
    elif kind == "amused":
        layers = [(f"transformer_layers.{i}", b) for i, b in enumerate(network.transformer_layers)]
        chosen = {"mm": layers, "all": layers}.get(group)
    else:
        raise ConfigError(f"{who}: the network {type(network).__name__} has neither Meissonic blocks "
                          "(transformer_blocks, single_transformer_blocks) nor aMUSEd layers (transformer_layers)")
    if chosen is None:
        valid = "auto, mm, single, all" if kind == "meissonic" else "auto, mm, all (aMUSEd has one kind of block)"
        raise ConfigError(f"{who}: blocks {group!r} is not a block group of this {kind} network; valid: {valid}")
    if not chosen:
        raise ConfigError(f"{who}: blocks {group!r} is empty in this network")
    return chosen


def image_grid(model, tokens: int) -> tuple[int, int]:
    """(rows, columns) of the `tokens` image tokens inside the network (the token grid, halved by a
    down-sampling transformer such as Meissonic-1024's)."""
    rows, cols = model.token_grid()
    for stride in (1, 2, 4):
        if (rows // stride) * (cols // stride) == tokens:
            return rows // stride, cols // stride
    raise ValueError(f"{tokens} image tokens do not tile the {rows}x{cols} token grid at stride 1, 2 or 4")
