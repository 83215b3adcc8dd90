"""What a sampler may know about a model: the masked-token model contract (docs/design.md, "The model protocol").

A sampler never imports a backend. It sees a `MaskedTokenModel`: the members below and nothing else.
`bench.models.base.Backend` extends it with what the harness needs to plan, generate and decode
(token grid, prompt encoding, images, identity), and `bench.models` provides Meissonic, aMUSEd and the
synthetic world behind it. Optional members have a default here, so a model implements only what it
can do, and no sampler probes a model for an attribute.

Forward passes are counted by the engine (`SamplerEngine.model_logits`), per image, not by the model.
"""
from __future__ import annotations

import abc
from typing import ContextManager, Mapping, Sequence

import torch

from mgt_common.errors import ConfigError

#: Text conditioning of a batch: tensors whose first dimension is the batch (one row per image).
#: Samplers slice it with `take_rows`; only the backend knows what the tensors mean.
Conditioning = Mapping[str, torch.Tensor]


def take_rows(conditioning: Conditioning, rows: torch.Tensor | list[int]) -> dict[str, torch.Tensor]:
    """The conditioning of a subset of the batch (rows index the first dimension of every tensor)."""
    return {key: value[rows] for key, value in conditioning.items()}


class MaskedTokenModel(abc.ABC):
    """A text-conditioned masked generative transformer, as a sampler sees it.

    Required:
        mask_token_id: the id of the [MASK] token in the input vocabulary (8255 for Meissonic).
        codebook_size: the number of image tokens the model predicts logits over (8192 for Meissonic).
        logits(): conditional and unconditional logits of one batched forward.

    Optional (defaults here):
        name: the registry name, for messages ("" → the class name).
        post_model_dtype: the dtype of `logits` (float32 unless the backend keeps its own dtype).
        raw_logits(): `logits` in the network's own dtype, without a copy (the fused step upcasts itself).
        check_perturbed_attention() / perturbed_attention(): perturbed-attention guidance's degraded
            forward (Ahn et al. 2024, arXiv 2403.17377); a model without attention refuses it.
    """

    mask_token_id: int
    codebook_size: int
    name: str = ""
    #: dtype of the logits handed to the sampler; float32 unless the backend computes guidance, softmax
    #: and sampling in its own dtype, as the official half-precision Meissonic scripts do.
    post_model_dtype: torch.dtype = torch.float32

    @abc.abstractmethod
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
        second element is None. Returned in `post_model_dtype`.
        """

    def raw_logits(self, tokens: torch.Tensor, conditioning: Conditioning, step: int, total_steps: int,
                   with_uncond: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`logits` in the network's own dtype and layout, possibly views of its output (read-only for the
        caller). Default: `logits` itself, for a model with no cheaper form."""
        return self.logits(tokens, conditioning, step, total_steps, with_uncond)

    def check_perturbed_attention(self, layers: Sequence[int]) -> None:
        """Raise `ConfigError` unless `perturbed_attention(layers)` can run on this model (a config-time check).

        Default: the model has no attention to perturb.
        """
        raise ConfigError(f"guidance 'pag': model {self.name or type(self).__name__!r} has no attention to perturb "
                          "(PAG needs a network backend such as meissonic or amused; the exact synthetic world "
                          "has none)")

    def perturbed_attention(self, layers: Sequence[int]) -> ContextManager[None]:
        """A context manager inside which `logits` runs with identity self-attention of the image tokens in
        `layers`. Only called after `check_perturbed_attention(layers)` passed."""
        raise NotImplementedError(f"{type(self).__name__} has no perturbed attention; check_perturbed_attention "
                                  "refuses it at config time")
