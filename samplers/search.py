"""Inference-time search with a reward: best-of-N and sequential Monte Carlo (loop kind).

Both spend more compute per image to raise a per-image reward r (any metric, e.g. HPSv2; see
`reward.py` for how the harness provides it). Cost is counted twice: forward passes (every
candidate's or particle's transformer calls, summed per image) and scorer calls (reward evaluations
per image), since the reward model may cost as much as the generator.

Random streams: candidate / particle 0 of an image runs on the image's own generator; candidate k
on a stream derived from the image's seed and k by hashing (`reward.derived_generator`), so nothing
depends on the batch, and a search of size 1 is its inner sampler exactly.

Best-of-N (e.g. the "random search" baseline of Ma et al. 2025, "Inference-Time Scaling for
Diffusion Models beyond Scaling Denoising Steps", arXiv 2501.09732): generate N complete images with
the inner loop, score each once, keep the highest (ties: the earliest). N·(inner passes) forward
passes and N scorer calls per image.

Sequential Monte Carlo (Feynman–Kac steering, Singhal et al. 2025, "A General Framework for
Inference-time Scaling and Steering of Diffusion Models", arXiv 2501.06848, with the "difference"
potential): K particles per image run the step in one batch. Every `resample_every` steps each
particle's look-ahead x̂ (the step's full prediction: committed tokens kept, every masked position
drawn) is scored, and its log-weight grows by λ·(r(x̂_i) − r(x̂_prev)), the reward change since the
particle's last scoring. Since these increments telescope, the final weights target
p(x)·exp(λ·r(x)). When the effective sample size 1/Σw² of an image's normalised weights falls below
`ess_threshold`·K, its particles are resampled (systematic resampling, one uniform from the image's
own resampling stream) and the weights reset; a resampled slot takes over its parent's tokens and
the per-particle state of every component (every tensor in the component state whose first
dimension is the particle batch), but keeps its own random stream, so copies diverge. At the end,
`select = "best"` returns the particle with the highest final reward (as FK steering reports),
`"sample"` draws one by the final weights (the SMC estimate of the tilted distribution). Forward
passes: K per step per image (the particles' sum); scorer calls: K per scoring.
"""
from __future__ import annotations

from typing import Any

import torch

from . import randomness
from .components import ConfigError, Loop, build_component, register_component, require
from .engine import Generation
from .protocol import take_rows
from .reward import derived_generator, require_reward

SELECTIONS = ("best", "sample")


def _inner_loop(name: str, owner: str) -> Loop:
    if name in ("best-of-n", "smc"):
        raise ConfigError(f"loop {owner!r}: inner must be a plain loop (standard, zigzag), not {name!r}")
    return build_component("loop", name)


@register_component("loop", "best-of-n")
class BestOfN(Loop):
    """Best-of-N: N complete images with the inner loop, keep the one the reward scores highest (cost N× passes + N scorer calls)."""

    n: int = 4
    reward: str = "world-loglik"
    inner: str = "standard"

    def validate(self) -> None:
        require(self.n >= 1, self.kind, self.name, f"n must be >= 1, got {self.n}")
        require(bool(self.reward), self.kind, self.name, "reward must name a per-image metric (e.g. hpsv2)")
        self._inner = _inner_loop(self.inner, self.name)

    def forward_passes(self, total_steps, step_passes):
        return self.n * _inner_loop(self.inner, self.name).forward_passes(total_steps, step_passes)

    def run(self, engine, generation: Generation) -> None:
        reward = require_reward(generation, self.name, self.reward)
        inner = getattr(self, "_inner", None) or _inner_loop(self.inner, self.name)
        own = generation.generators
        rows = list(range(generation.batch_size))
        best_tokens, best_score = None, None
        for k in range(self.n):
            generation.generators = own if k == 0 else [derived_generator(g, f"best-of-n:{k}") for g in own]
            generation.tokens = torch.full_like(generation.tokens, engine.model.mask_token_id)
            generation.component_state = {}
            inner.run(engine, generation)
            score = torch.as_tensor(reward(generation.tokens, rows), dtype=torch.float64).cpu()
            generation.scorer_calls += 1
            if best_tokens is None:
                best_tokens, best_score = generation.tokens.clone(), score
            else:
                better = score > best_score  # strict: ties keep the earlier candidate
                best_tokens = torch.where(better.to(best_tokens.device).unsqueeze(-1), generation.tokens, best_tokens)
                best_score = torch.where(better, score, best_score)
        generation.tokens = best_tokens
        generation.generators = own


def systematic_resample(weights: torch.Tensor, u: float) -> torch.Tensor:
    """Ancestor indices ``(K,)`` for normalised weights ``(K,)`` and one uniform u ∈ [0, 1).

    Point k is (u + k)/K; its ancestor is the first index whose cumulative weight exceeds it.
    """
    k = weights.numel()
    cumulative = weights.double().cumsum(0)
    cumulative[-1] = 1.0  # rounding must not leave the last point past the end
    points = (u + torch.arange(k, dtype=torch.float64)) / k
    return torch.searchsorted(cumulative, points, right=True).clamp(max=k - 1)


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """1 / Σ w² of the normalised weights, per row of ``(B, K)`` log-weights."""
    w = log_weights.softmax(dim=-1)
    return 1.0 / (w * w).sum(dim=-1)


def permute_state(state: Any, index: torch.Tensor, rows: int) -> Any:
    """Every tensor whose first dimension is the particle batch, re-indexed by `index` (recursively)."""
    if isinstance(state, torch.Tensor):
        return state[index.to(state.device)] if state.dim() > 0 and state.shape[0] == rows else state
    if isinstance(state, dict):
        return {key: permute_state(value, index, rows) for key, value in state.items()}
    if isinstance(state, list):
        return [permute_state(value, index, rows) for value in state]
    if isinstance(state, tuple):
        return tuple(permute_state(value, index, rows) for value in state)
    return state


@register_component("loop", "smc")
class SequentialMonteCarlo(Loop):
    """SMC / FK steering: K particles per image, reweighted by exp(λ·Δreward) of their look-ahead and resampled when the ESS drops (arXiv 2501.06848)."""

    particles: int = 4
    reward: str = "world-loglik"
    strength: float = 10.0
    resample_every: int = 1
    ess_threshold: float = 0.5
    select: str = "best"

    def validate(self) -> None:
        require(self.particles >= 1, self.kind, self.name, f"particles must be >= 1, got {self.particles}")
        require(bool(self.reward), self.kind, self.name, "reward must name a per-image metric (e.g. hpsv2)")
        require(self.strength >= 0, self.kind, self.name, f"strength (λ) must be >= 0, got {self.strength}")
        require(self.resample_every >= 1, self.kind, self.name, f"resample_every must be >= 1, got {self.resample_every}")
        require(0 <= self.ess_threshold <= 1, self.kind, self.name,
                f"ess_threshold must be in [0, 1] (a fraction of the particles), got {self.ess_threshold}")
        require(self.select in SELECTIONS, self.kind, self.name,
                f"select must be one of {', '.join(SELECTIONS)}, got {self.select!r}")

    def forward_passes(self, total_steps, step_passes):
        return self.particles * super().forward_passes(total_steps, step_passes)

    def run(self, engine, generation: Generation) -> None:
        reward = require_reward(generation, self.name, self.reward)
        batch, k = generation.batch_size, self.particles
        owner = [b for b in range(batch) for _ in range(k)]
        owner_index = torch.tensor(owner, dtype=torch.long)
        particles = Generation(
            model=generation.model, variant=generation.variant,
            conditioning=take_rows(generation.conditioning, owner_index.to(_device(generation.conditioning))),
            generators=[g if j == 0 else derived_generator(g, f"smc:{j}")
                        for g in generation.generators for j in range(k)],
            tokens=generation.tokens.repeat_interleave(k, dim=0),
            total_steps=generation.total_steps, guidance_scale=generation.guidance_scale,
            forward_passes=torch.zeros(batch * k, dtype=torch.long), grid=generation.grid)
        resamplers = [derived_generator(g, "smc:resample") for g in generation.generators]
        log_w = torch.zeros(batch, k, dtype=torch.float64)
        last_reward = torch.zeros(batch, k, dtype=torch.float64)

        def score(tokens: torch.Tensor) -> torch.Tensor:
            generation.scorer_calls += k
            return torch.as_tensor(reward(tokens, owner), dtype=torch.float64).cpu().view(batch, k)

        for step in range(generation.total_steps):
            if step > 0 and not bool(particles.masked().any()):
                break
            engine.step(particles, step, notify=False)
            generation.trajectory.append(particles.masked().sum(dim=-1)[::k].tolist())
            done = step == generation.total_steps - 1 or not bool(particles.masked().any())
            if done or (step + 1) % self.resample_every != 0 or k == 1:
                continue
            current = score(particles.prediction)
            log_w += self.strength * (current - last_reward)
            last_reward = current
            ess = effective_sample_size(log_w)
            index = torch.arange(batch * k)
            for b in range(batch):
                if float(ess[b]) < self.ess_threshold * k:
                    u = float(randomness.uniform([resamplers[b]], (1,), "cpu", torch.float64)[0, 0])
                    ancestors = systematic_resample(log_w[b].softmax(dim=-1), u)
                    index[b * k:(b + 1) * k] = b * k + ancestors
                    last_reward[b] = last_reward[b][ancestors]
                    log_w[b] = 0.0
            if not torch.equal(index, torch.arange(batch * k)):
                particles.tokens = particles.tokens[index.to(particles.device)]
                particles.component_state = permute_state(particles.component_state, index, batch * k)
        final = score(particles.tokens) if k > 1 else torch.zeros(batch, 1, dtype=torch.float64)
        log_w += self.strength * (final - last_reward)
        if self.select == "best" or k == 1:
            chosen = final.argmax(dim=-1)  # first maximum: ties keep the lower particle
        else:
            chosen = torch.tensor([_draw(log_w[b].softmax(dim=-1), resamplers[b]) for b in range(batch)])
        rows = torch.arange(batch) * k + chosen
        generation.tokens = particles.tokens[rows.to(particles.device)]
        generation.absorb_costs(particles, k)  # passes, rows and FLOPs of the K particles, per image


def _draw(weights: torch.Tensor, generator: torch.Generator) -> int:
    u = float(randomness.uniform([generator], (1,), "cpu", torch.float64)[0, 0])
    cumulative = weights.cumsum(0)
    cumulative[-1] = 1.0
    return int(torch.searchsorted(cumulative, torch.tensor([u], dtype=torch.float64), right=True).clamp(max=weights.numel() - 1))


def _device(conditioning) -> torch.device:
    for value in conditioning.values():
        return value.device
    return torch.device("cpu")
