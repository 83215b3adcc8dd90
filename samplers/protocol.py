"""What a sampler may know about a model: the masked-token model protocol (DESIGN.md, "The model protocol").

A sampler never imports a backend. It sees an object with this shape; `bench.models` provides
Meissonic, aMUSEd and the synthetic world behind it.
"""
from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import torch

#: Text conditioning of a batch: tensors whose first dimension is the batch (one row per image).
#: Samplers slice it with `take_rows`; only the backend knows what the tensors mean.
Conditioning = Mapping[str, torch.Tensor]


def take_rows(conditioning: Conditioning, rows: torch.Tensor | list[int]) -> dict[str, torch.Tensor]:
    """The conditioning of a subset of the batch (rows index the first dimension of every tensor)."""
    return {key: value[rows] for key, value in conditioning.items()}


@runtime_checkable
class MaskedTokenModel(Protocol):
    """A text-to-image masked generative transformer with a VQ decoder.

    Attributes:
        mask_token_id: the id of the [MASK] token in the input vocabulary (8255 for Meissonic).
        codebook_size: the number of image tokens the model predicts logits over (8192 for Meissonic).
        forward_passes: a running count of transformer calls (one batched cond+uncond call counts once).
    """

    mask_token_id: int
    codebook_size: int
    forward_passes: int

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The (rows, columns) of the token grid for an image of this size."""

    def encode(self, prompts: list[str], negative_prompt: str | None = None) -> Conditioning:
        """Encode prompts (and the shared negative prompt) once; rows follow `prompts`."""

    def logits(
        self,
        tokens: torch.Tensor,
        conditioning: Conditioning,
        step: int,
        total_steps: int,
        with_uncond: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conditional and unconditional logits ``(B, N, codebook_size)`` for tokens ``(B, N)``.

        One batched forward (the CFG batch [uncond; cond] for Meissonic). ``step`` is the 0-based step
        index i of ``total_steps``; a backend maps it to its own timestep convention (Meissonic feeds
        the integer T-1-i). With ``with_uncond=False`` only the conditional half is computed and the
        second element is None.
        """

    def decode(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] from tokens ``(B, N)`` laid out on ``grid``."""
