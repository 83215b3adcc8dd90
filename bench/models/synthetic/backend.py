"""The synthetic world behind the model protocol, with knobs that simulate a trained network's faults.

With the default knobs off (text_strength = 1, logit_temperature = 1) the model *is* the exact
denoiser. A real MGT is imperfect in ways the design choices try to repair; two knobs imitate that:

- ``text_strength`` α ∈ (0, 1]: weakened text conditioning. The model's conditional logits are
  α·log p(·|x_vis, c) + (1 − α)·log p(·|x_vis): it leans toward the unconditional, as an MGT trained
  with condition dropout does. CFG on logits repairs it exactly at w = 1/α, since
  ℓ_u + w(ℓ_c' − ℓ_u) = ℓ_u + wα(ℓ_c − ℓ_u).
- ``logit_temperature`` τ_m > 0: miscalibrated confidence; all logits are divided by τ_m
  (τ_m > 1: under-confident and too diverse; τ_m < 1: over-confident).

Defaults (α = 0.25, τ_m = 1.25): CFG is needed (w = 1/α = 4 repairs the conditioning exactly), and the
model is slightly under-confident, so sampling and confidence choices have something to correct.
"""
from __future__ import annotations

from typing import Any

import torch

from mgt_common.errors import ConfigError

from ...prompts import Prompt, register_prompt_set
from ..base import Backend
from ..registry import MODELS
from .grammar import SceneGrammar
from .world import TokenWorld


class SyntheticModel(Backend):
    """A `Backend` over a `TokenWorld`; mask id = codebook size (as Meissonic's 8255 = vocab − 1).

    It has no network: model-side choices and PAG are refused at config time (the contract's defaults).
    """

    def __init__(self, grid: int = 16, patch: int = 4, epsilon: float = 0.05, text_strength: float = 0.25,
                 logit_temperature: float = 1.25, colours: list[str] | None = None, shapes: list[str] | None = None,
                 positions: list[str] | None = None, sizes: list[str] | None = None, device: str = "cpu",
                 dtype: str = "float32", **unknown: Any):
        # dtype is accepted for a uniform model interface; the world's maths always runs in float64.
        super().__init__()
        if unknown:
            raise ConfigError(f"model 'synthetic': unknown parameter {sorted(unknown)[0]!r}; valid: grid, patch, "
                              "epsilon, text_strength, logit_temperature, colours, shapes, positions, sizes")
        _check(0 < text_strength <= 1, "text_strength", text_strength, "in (0, 1]")
        _check(logit_temperature > 0, "logit_temperature", logit_temperature, "> 0")
        _check(0 < epsilon < 1, "epsilon", epsilon, "in (0, 1)")
        _check(grid >= 2 and patch >= 1, "grid/patch", (grid, patch), "grid >= 2 and patch >= 1")
        grammar_args = {k: tuple(v) for k, v in dict(colours=colours, shapes=shapes, positions=positions,
                                                     sizes=sizes).items() if v is not None}
        try:
            self.grammar = SceneGrammar(grid=grid, **grammar_args)
        except ValueError as exc:
            raise ConfigError(f"model 'synthetic': {exc}") from None
        self.world = TokenWorld(self.grammar, epsilon=epsilon, patch=patch)
        self.text_strength = float(text_strength)
        self.logit_temperature = float(logit_temperature)
        self.codebook_size = self.world.codebook_size
        self.mask_token_id = self.codebook_size
        self.device = torch.device(device)
        self._config = {"grid": grid, "patch": patch, "epsilon": epsilon, "text_strength": text_strength,
                        "logit_temperature": logit_temperature, **{k: list(v) for k, v in grammar_args.items()}}

    def describe(self) -> dict[str, Any]:
        return {"backend": "synthetic", "scenes": self.world.num_scenes, "codebook_size": self.codebook_size,
                "tokens": self.world.seq_len, **self._config}

    def token_grid(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        side = self.world.grid[0] * self.world.patch
        if (height, width) not in ((None, None), (side, side)):
            raise ConfigError(f"model 'synthetic' renders {side}x{side} images; set height = width = {side} "
                              "or leave them out (change the world's size with grid and patch)")
        return self.world.grid

    def encode(self, prompts: list[str], negative_prompt: str | None = None) -> dict[str, torch.Tensor]:
        # The world has no negative prompts: its unconditional branch is the prior over all scenes.
        return {"log_prior": self.world.log_priors(prompts)}

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        world = self.world
        loglik = world.scene_loglik(tokens, self.mask_token_id)
        log_uncond = world.token_marginals(loglik + world.log_prior(None)).log()
        log_cond = world.token_marginals(loglik + conditioning["log_prior"]).log()
        alpha, temperature = self.text_strength, self.logit_temperature
        cond = ((alpha * log_cond + (1 - alpha) * log_uncond) / temperature).float().to(tokens.device)
        uncond = (log_uncond / temperature).float().to(tokens.device) if with_uncond else None
        return cond, uncond

    def decode(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return self.world.render(tokens)


def _check(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"model 'synthetic': {key} must be {rule}, got {value}")


@MODELS.register("synthetic-exact")
def synthetic_exact(**model_args) -> SyntheticModel:
    """The synthetic world's exact denoiser, with fault knobs: exact token distribution, CPU-fast, no weights."""
    return SyntheticModel(**model_args)


# "synthetic" stays the exact denoiser: every config written for it (text_strength, grid, ...) keeps working.
MODELS.register("synthetic", synthetic_exact)


@register_prompt_set("synthetic-world")
def synthetic_world_prompts(n: int = 48, seed: int = 0, grid: int = 16) -> list[Prompt]:
    """The synthetic world's own prompts: fully, partly and barely specified scenes (category = which)."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"prompts 'synthetic-world': n must be a positive integer, got {n!r}")
    return [Prompt(id=i, text=t, category=c) for i, t, c in SceneGrammar(grid=grid).prompt_set(n, seed)]
