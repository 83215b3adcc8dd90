"""Re-mask policies: which positions are masked after a step (remask kind)."""
from __future__ import annotations

import torch

from .components import RemaskPolicy, register_component


@register_component("remask", "lowest-confidence")
class LowestConfidence(RemaskPolicy):
    """Mask the `mask_len` lowest-confidence positions; committed tokens stay (MaskGIT, Meissonic vanilla).

    As in diffusers' `mask_by_random_topk`: the cut-off is the mask_len-th smallest confidence and
    positions strictly below it are masked. Committed positions carry +inf confidence.
    """

    def select(self, confidence, mask_len, ctx):
        confidence = torch.where(ctx.unknown, confidence, torch.full_like(confidence, float("inf")))
        # kthvalue is the (mask_len+1)-th smallest, i.e. sort(...)[mask_len], without a full sort.
        cutoff = torch.stack([torch.kthvalue(row, int(k) + 1).values for row, k in zip(confidence, mask_len[:, 0])])
        return confidence < cutoff.unsqueeze(-1)
