"""Perturbed-attention guidance on logits (Ahn et al. 2024, arXiv 2403.17377), a `guidance` component.

PAG guides away from the model's own prediction with a degraded attention: in the chosen blocks the
image tokens' self-attention map is replaced by the identity (each image token attends only to itself,
and to the text tokens in a joint-attention block, as diffusers' PAG processors do). With CFG, PAG's
eq. (combined guidance, §3.3) on logits is

    ℓ = ℓ_u + w (ℓ_c − ℓ_u) + s (ℓ_c − ℓ̂_c),

where ℓ̂_c are the conditional logits of the perturbed network. ℓ̂_c costs one extra, conditional-only
forward pass per step (counted by the engine like every forward). s = 0 is plain CFG, bit for bit,
without the extra pass.

The perturbation is model-side: the backend provides it as a context manager
``model.perturbed_attention(layers)`` (bench.models.transforms.attention for Meissonic and aMUSEd);
a backend without it (the exact synthetic world has no attention) is refused at config time.
"""
from __future__ import annotations

from dataclasses import field

from .components import register_component, require
from .guidance import ConstantGuidance


@register_component("guidance", "pag")
class PerturbedAttentionGuidance(ConstantGuidance):
    """PAG: CFG at the run's scale plus s·(ℓ_c − ℓ̂_c), ℓ̂_c with identity self-attention in `layers` (arXiv 2403.17377).

    Parameters: ``pag_scale`` s (the paper's default for SD is 3.0); ``layers``: indices of the blocks
    whose attention is perturbed — Meissonic's dual-stream (MM) blocks, aMUSEd's transformer layers
    (default [1]: MM block 1 alone. diffusers' SD3 PAG default "blocks.1" names that block, but its
    regex search over module names also matches blocks 10–19, 11 of a 24-block MM-DiT; we perturb
    exactly the listed indices).
    """

    pag_scale: float = 3.0
    layers: list[int] = field(default_factory=lambda: [1])

    def validate(self) -> None:
        require(self.pag_scale >= 0, "guidance", self.name, f"pag_scale must be >= 0, got {self.pag_scale}")
        require(bool(self.layers) and all(isinstance(i, int) and i >= 0 for i in self.layers), "guidance", self.name,
                f"layers must be a non-empty list of block indices >= 0, got {self.layers}")

    def extra_forward_passes(self) -> int:
        """ℓ̂_c: one conditional-only forward of the perturbed network per `combine` (none when s = 0)."""
        return 1 if self.pag_scale > 0 else 0

    def check_model(self, model) -> None:
        """The backend must offer the attention perturbation for these layers (config-time check)."""
        model.check_perturbed_attention(self.layers)  # a model without attention refuses (samplers/protocol.py)

    def combine(self, cond, uncond, ctx):
        guided = super().combine(cond, uncond, ctx)
        if self.pag_scale == 0:
            return guided
        engine, generation = ctx.engine, ctx.generation
        with generation.model.perturbed_attention(self.layers):
            perturbed, _ = engine.model_logits(generation, ctx.step, ctx.forward_tokens, with_uncond=False,
                                               perturbed=True)
        if guided is cond:  # never write into the model's own output
            guided = cond.clone()
        # ℓ += s (ℓ_c − ℓ̂_c), in place on the guided tensor (the engine's own)
        return guided.add_(cond.sub(perturbed).mul_(self.pag_scale))
