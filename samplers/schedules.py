"""Schedules as pure functions, separate from the components that use them (the k-diffusion habit).

Mask-ratio schedules map progress r = (i+1)/T ∈ (0, 1] to the fraction of the N positions that stay
masked after step i (MaskGIT, Chang et al. 2022, arXiv 2202.04200, §3.3 "mask scheduling function" γ). They take and
return tensors so that the vanilla schedule is evaluated in float32 exactly as diffusers does. The
count that stays masked is floor(N · γ(r)) clipped to [1, masked − 1] (`components.clip_mask_len`),
the rule of the vanilla step (diffusers' AmusedScheduler.step); `scheduled_mask_len` evaluates it for a plain
count, without a sampler.

Step schedules map the step index i ∈ [0, T) to a scalar (a temperature, a guidance scale, a noise
level): `ramp` interpolates between two values along a named shape; the others are specific formulas.
"""
from __future__ import annotations

import math

import torch

#: Shapes understood by `ramp`.
RAMP_SHAPES = ("constant", "linear", "cosine", "power", "exponential")


def progress(step: int, total_steps: int) -> torch.Tensor:
    """r = (i+1)/T as a float32 ``(1, 1)`` tensor: the value diffusers' AmusedScheduler.step computes."""
    return torch.tensor([[step + 1]]) / total_steps


# -- mask-ratio schedules γ(r) ------------------------------------------------------------------

def cosine_mask_ratio(progress: torch.Tensor) -> torch.Tensor:
    """γ(r) = cos(π r / 2): MaskGIT's and Meissonic's default (diffusers `masking_schedule="cosine"`)."""
    return torch.cos(progress * math.pi / 2)


def linear_mask_ratio(progress: torch.Tensor) -> torch.Tensor:
    """γ(r) = 1 − r (diffusers `masking_schedule="linear"`; MaskGIT's "uniform")."""
    return 1 - progress


def power_mask_ratio(progress: torch.Tensor, exponent: float) -> torch.Tensor:
    """γ(r) = 1 − r^k: MaskGIT's concave family (k = 2 "square", k = 3 "cubic"; MaskGIT §3.3 and its schedule ablation)."""
    return 1 - progress ** exponent


def root_mask_ratio(progress: torch.Tensor, degree: float = 2.0) -> torch.Tensor:
    """γ(r) = 1 − r^(1/d): MaskGIT's convex "square root" schedule for d = 2 (MaskGIT §3.3 and its schedule ablation)."""
    return 1 - progress ** (1.0 / degree)


def arccos_mask_ratio(progress: torch.Tensor) -> torch.Tensor:
    """γ(r) = arccos(r) / (π/2): the "arccos" schedule of the MaskGIT-pytorch / Halton-MaskGIT code bases."""
    return torch.arccos(progress.clamp(0, 1)) / (math.pi / 2)


def exponential_mask_ratio(progress: torch.Tensor, seq_len: int) -> torch.Tensor:
    """γ(r) = 1 − 2^(−log2(N)·(1 − r)) = 1 − N^(r − 1): MaskGIT's "exponential" (concave, MaskGIT §3.3).

    Base-2 arithmetic on purpose: for N a power of two the values at simple r are exact in float32,
    so floor(N·γ) does not fall one short of an integer.
    """
    return 1 - torch.exp2(-math.log2(seq_len) * (1 - progress))


def logarithmic_mask_ratio(progress: torch.Tensor, seq_len: int) -> torch.Tensor:
    """γ(r) = −log2(r) / log2(N), clipped to [0, 1]: MaskGIT's "logarithmic" (convex, MaskGIT §3.3)."""
    return (-torch.log2(progress) / math.log2(seq_len)).clamp(0, 1)


def sigmoid_mask_ratio(progress: torch.Tensor, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """open-muse's sigmoid schedule: γ(r) = (σ(end/τ) − σ((start + r(end − start))/τ)) / (σ(end/τ) − σ(start/τ)).

    γ(0) = 1 and γ(1) = 0; a steeper τ concentrates the reveals around the middle of sampling.
    """
    v_start = torch.sigmoid(torch.tensor(start / tau))
    v_end = torch.sigmoid(torch.tensor(end / tau))
    value = torch.sigmoid((progress * (end - start) + start) / tau)
    return ((v_end - value) / (v_end - v_start)).clamp(0, 1)


def scheduled_mask_len(mask_ratio: torch.Tensor, seq_len: int, masked: int) -> int:
    """floor(N · γ) clipped to [1, masked − 1]: the count that stays masked (diffusers' AmusedScheduler.step)."""
    return max(1, min(masked - 1, int(torch.floor(seq_len * mask_ratio).item())))


# -- step schedules ---------------------------------------------------------------------------

def linspace_value(start: float, end: float, step: int, total_steps: int) -> torch.Tensor:
    """Entry `step` of ``torch.linspace(start, end, total_steps)`` (float32), without building it.

    The vanilla Gumbel temperature is ``linspace(2, 0, T)[i]`` in diffusers; reproducing the same float32
    value keeps the confidence, and so the reveal order, identical to the reference.
    """
    return torch.linspace(start, end, total_steps)[step]


def linear_value(start: float, end: float, step: int, total_steps: int) -> float:
    """start + (end − start) · i / (T − 1), i.e. linspace(start, end, T)[i] in float64 (start when T = 1)."""
    if total_steps <= 1:
        return float(start)
    return start + (end - start) * step / (total_steps - 1)


def step_fraction(step: int, total_steps: int) -> float:
    """u = i / (T − 1) ∈ [0, 1]: 0 at the first step, 1 at the last (0 when T = 1)."""
    return 0.0 if total_steps <= 1 else step / (total_steps - 1)


def ramp(shape: str, start: float, end: float, step: int, total_steps: int, exponent: float = 1.0) -> float:
    """A value moving from `start` (first step) to `end` (last step) along `shape`, with u = i/(T−1):

    - constant:    start
    - linear:      start + (end − start)·u
    - cosine:      start + (end − start)·(1 − cos(π u))/2      (flat at both ends)
    - power:       start + (end − start)·u^exponent
    - exponential: start·(end/start)^u                        (geometric; start, end > 0)
    """
    u = step_fraction(step, total_steps)
    if shape == "constant":
        return float(start)
    if shape == "linear":
        return start + (end - start) * u
    if shape == "cosine":
        return start + (end - start) * (1 - math.cos(math.pi * u)) / 2
    if shape == "power":
        return start + (end - start) * u ** exponent
    if shape == "exponential":
        if start <= 0 or end <= 0:
            raise ValueError(f"an exponential ramp needs start > 0 and end > 0, got {start}, {end}")
        return start * (end / start) ** u
    raise ValueError(f"unknown ramp shape {shape!r}; shapes: {', '.join(RAMP_SHAPES)}")


def maskgit_temperature(tau0: float, step: int, total_steps: int) -> float:
    """MaskGIT's choice temperature τ_i = τ0 · (1 − (i+1)/T) (official MaskGIT code; τ0 = 4.5 there)."""
    return tau0 * (1 - (step + 1) / total_steps)


def noise_regularization_sigma(shape: str, scale: float, step: int, total_steps: int) -> float:
    """σ of noise regularization (Shao et al. 2024, arXiv 2411.10781 §3, and its code), t = T − 1 − i:

    - cosine:   s · |cos(π t / (T − 1))|   (the paper's code: s = 2, largest at the first and last steps;
                computed in float32 exactly as the reference code does)
    - constant: s
    - linear:   s · t / (T − 1)             (s at the first step, 0 at the last)
    """
    t = total_steps - 1 - step
    frac = 0.0 if total_steps <= 1 else t / (total_steps - 1)
    if shape == "cosine":
        if total_steps <= 1:
            return float(scale)
        # float32, as the reference computes it on the integer timestep tensor
        # (`2 * torch.abs(torch.cos(math.pi * timestep / (len(timesteps) - 1)))`), so that σ and hence
        # σ·ε carry the reference's last bit; the float32 value is exact as a Python float.
        timestep = torch.tensor(t)
        return float(scale * torch.abs(torch.cos(math.pi * timestep / (total_steps - 1))))
    if shape == "constant":
        return float(scale)
    if shape == "linear":
        return scale * frac
    raise ValueError(f"unknown noise schedule {shape!r}; schedules: cosine, constant, linear")
