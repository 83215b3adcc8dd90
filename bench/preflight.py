"""Checks before the first file is written: the device, the model-side choices, the scorers' weights.

Each failure is a `UserError` (exit 2) naming the fix; none writes anything (docs/rundir.md,
"Checked before the first image").
"""
from __future__ import annotations

from typing import Mapping

import torch

from mgt_common.errors import ConfigError, UserError

from .models.base import Backend


def check_device(device: str) -> None:
    """A device this machine has, checked before anything is written (a CUDA config on a CPU node would
    otherwise fail with a torch traceback after the manifest had locked the directory to ``device = cuda``)."""
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"device {device!r}: CUDA is not available on this machine ({why}; torch "
                            f"{torch.__version__}); pass --device cpu, or run on a GPU node")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                            f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {device!r}: Apple MPS is not available on this machine; pass --device cpu")


def check_model_side(variants: Mapping, model: Backend) -> None:
    """Config-time check that the loaded backend can carry every variant's model-side choices (model
    transforms, PAG's attention hook): a ConfigError (exit 2) names the variant before anything is written.

    A compiled transformer (`[model] compile`) is refused with them: the transforms rewrite the blocks'
    forwards and PAG swaps attention processors after the graph was traced, which no test has shown to
    re-trace correctly, so the combination is not offered until it is proven."""
    for name, variant in variants.items():
        for component in variant.components():
            check = getattr(component, "check_model", None)  # a component that acts on the model has one
            if check is None:
                continue
            if model.compiled.enabled:
                raise ConfigError(f"variants.{name}: the model-side choice {component.name!r} cannot run on a "
                                  "compiled transformer yet; set compile = false in [model] for this run")
            try:
                check(model)
            except UserError as exc:
                raise type(exc)(f"variants.{name}: {exc}") from None
        check_block_patches(name, variant.model_transforms, model)


def check_block_patches(name: str, transforms, model) -> None:
    """Two transforms may patch one block only when the later one wraps what it finds (`block_patch`
    "wrap", e.g. residual caching over token merging); a second "replace" (token merging and FORA's
    feature cache both rewrite the block's forward) would silently drop the first."""
    owner: dict[str, str] = {}
    for transform in sorted((t for t in transforms if not t.neutral()), key=lambda t: t.order):
        for block in transform.patched_blocks(model):
            if block in owner and transform.block_patch != "wrap":
                raise ConfigError(f"variants.{name}: model transforms {owner[block]!r} and {transform.name!r} both "
                                  f"rewrite block {block}; give them disjoint blocks (e.g. blocks = \"mm\" and "
                                  "\"single\" on Meissonic) or use residual-cache, which wraps the merged block")
            owner.setdefault(block, transform.name)


def check_scorers(metrics: Mapping, model: Backend) -> None:
    """Find every scorer's weights now, before the first image: a missing checkpoint must not surface
    hours into a run, after generation (`MissingWeightsError` names the `hf download …` command)."""
    for metric in metrics.values():
        check = getattr(metric, "check_weights", None)
        if check is not None:
            check(world=model.world)
