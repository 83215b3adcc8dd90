"""Re-mask policies: which positions are masked after a step (remask kind). ReMDM is in `remdm.py`."""
from __future__ import annotations

import torch

from .components import RemaskPolicy, register_component


def lowest_confidence(confidence: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor,
                      fill_ties: bool = True) -> torch.Tensor:
    """Boolean ``(B, N)``: the `count` (per row, ``(B, 1)``) lowest-confidence candidates.

    As in diffusers' `mask_by_random_topk`: the cut-off is the count-th smallest confidence and
    positions strictly below it are selected (non-candidates carry +inf); unlike it, ties at the
    cut-off are filled in position order so that exactly `count` are selected. count = 0 selects nothing.
    """
    counts = count.reshape(-1, 1).clamp(min=0)
    confidence = torch.where(candidates, confidence, torch.full_like(confidence, float("inf")))
    # kthvalue is the (count+1)-th smallest, i.e. sort(...)[count], without a full sort.
    cutoff = torch.stack([torch.kthvalue(row, int(k) + 1).values
                          for row, k in zip(confidence, counts[:, 0].tolist())]).unsqueeze(-1)
    selected = confidence < cutoff
    # Ties at the cut-off: the reference selects none of them, so a deterministic confidence with many
    # equal values (margin, entropy, Gumbel at τ = 0) would reveal far more than the schedule asks.
    # Fill the remainder from the tied candidates in position order. With continuous Gumbel noise
    # ties do not occur and this is a no-op, so the vanilla step stays the reference's.
    deficit = counts - selected.sum(dim=-1, keepdim=True)
    if fill_ties and bool((deficit > 0).any()):
        tied = (confidence == cutoff) & candidates
        selected |= tied & (tied.long().cumsum(dim=-1) <= deficit)
    return selected


@register_component("remask", "lowest-confidence")
class LowestConfidence(RemaskPolicy):
    """Mask the `mask_len` lowest-confidence positions; committed tokens stay (MaskGIT, Meissonic vanilla).

    As in diffusers' `mask_by_random_topk`: the cut-off is the mask_len-th smallest confidence and
    positions strictly below it are masked. Committed positions carry +inf confidence.
    """

    def select(self, confidence, mask_len, ctx):
        # In the official half-precision arithmetic (post_model_dtype = "model", docs/scaling.md) confidences
        # are bf16-rounded and tie often; reproducing that pipeline means keeping its rule: no tie filling.
        model_dtype = ctx.generation.model.post_model_dtype != torch.float32
        return lowest_confidence(confidence, ctx.unknown, mask_len, fill_ties=not model_dtype)

    def fused(self):
        return self  # reads the confidence and the count, which the fused pass provides
