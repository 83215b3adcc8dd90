"""The backend contract: everything the harness asks of a generation model (docs/design.md, "Adding a backend").

`Backend` extends the sampler's view of a model (`samplers.protocol.MaskedTokenModel`: mask id,
codebook size, logits) with what planning, generation and scoring use. Abstract members must be
written by every backend; the others have a default here that is right for a model without a neural
network (the exact synthetic world), so the harness reads every member directly and never probes a
model for one.

A factory registered in `bench.models.registry.MODELS` returns a `Backend`; the runner refuses
anything else with a message naming this class.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch

from samplers.protocol import Conditioning, MaskedTokenModel

from .compiled import CompiledForward

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .synthetic.world import TokenWorld


class Backend(MaskedTokenModel):
    """A text-to-image masked generative transformer with an image decoder, as the harness uses it.

    Required (abstract): ``mask_token_id``, ``codebook_size`` and `logits` (the sampler's part), and
    `token_grid`, `encode`, `decode`, `describe`.

    Optional, with defaults:
        default_negative_prompt: the negative prompt when the config sets none (None: the empty prompt).
        world: the synthetic world that scores this model's images exactly (None for other models).
        transformer: the network that model-side transforms rewrite (None: the model has none).
        compiled: the `torch.compile` settings (`bench/models/compiled.py`); eager by default.
        current_step: the sampler step of the forward being run (model-side transforms read it).
        attention_perturbed: True inside `perturbed_attention` (feature caching keeps that pass apart).
        identity(): what decides the images, for unit keys (default: `describe()`).
        warm_up(): one untimed forward per batch size, so compilation is not timed (default: nothing).
        release(): free what `del model` would not (default: nothing).
    """

    default_negative_prompt: str | None = None
    world: "TokenWorld | None" = None
    transformer: "nn.Module | None" = None

    def __init__(self) -> None:
        self.compiled = CompiledForward()
        self.current_step = 0
        self.attention_perturbed = False

    @abc.abstractmethod
    def token_grid(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """The (rows, columns) of the token grid for an image of this size (None: the model's own size).

        A backend may switch resolution here (Meissonic's 1024 and 512 rules), so the harness asks for
        `describe()` after it.
        """

    @abc.abstractmethod
    def encode(self, prompts: list[str], negative_prompt: str | None = None) -> Conditioning:
        """Encode prompts (and the shared negative prompt) once; rows follow `prompts`.

        A row must not depend on the other prompts of the batch (docs/design.md, "Pairing").
        """

    @abc.abstractmethod
    def decode(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] from tokens ``(B, N)`` laid out on ``grid``; each image must not
        depend on its batch."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The model as the manifest records it (JSON-serialisable): backend, weights, dtype, device, size."""

    def identity(self) -> dict[str, Any]:
        """What decides the images, for unit keys (the runner drops ``device``): `describe()` unless the
        backend has fields that do not change images (weight folders, compile seconds)."""
        return self.describe()

    def warm_up(self, batch: int, with_uncond: bool = True) -> float:
        """Run one forward at this batch size outside all timings (compiling it when compiled); its seconds.

        Called only when ``compiled.enabled``; an eager model has nothing to warm up.
        """
        return 0.0

    def release(self) -> None:
        """Free memory that dropping the last reference would not (e.g. a cache held elsewhere)."""
