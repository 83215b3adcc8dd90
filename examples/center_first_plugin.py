"""An mgt-bench plugin: a new confidence rule, registered and used without touching mgt-bench's code.

    python run_bench.py --plugin examples/center_first_plugin.py --samplers vanilla,center-first
"""
import torch

from samplers.components import Confidence, register_component, require
from samplers.variant import register_variant


@register_component("confidence", "center-first")
class CenterFirst(Confidence):
    """Reveal positions near the image centre first; `sharpness` weighs distance against log p(token)."""

    sharpness: float = 4.0

    def validate(self):
        require(self.sharpness >= 0, "confidence", self.name, "sharpness must be >= 0")

    def score(self, probs, sampled, ctx):
        side = int(ctx.seq_len ** 0.5)  # a square token grid
        rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        distance = torch.hypot(rows - (side - 1) / 2, cols - (side - 1) / 2).flatten() / side
        log_p = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1).clamp_min(1e-20).log()
        return log_p - self.sharpness * distance.to(ctx.device)


register_variant("center-first", {"base": "vanilla", "confidence": {"name": "center-first"}})
