"""Schedules as pure functions, separate from the components that use them (the k-diffusion habit).

Mask-ratio schedules map progress r = (i+1)/T ∈ (0, 1] to the fraction of the N positions that stay
masked after step i (MaskGIT, Chang et al. 2022, §3.2 "mask scheduling function" γ). They take and
return tensors so that the vanilla schedule is evaluated in float32 exactly as diffusers does.

Step schedules map the step index i ∈ [0, T) to a scalar (a temperature, a guidance scale).
"""
from __future__ import annotations

import math

import torch


def cosine_mask_ratio(progress: torch.Tensor) -> torch.Tensor:
    """γ(r) = cos(π r / 2): MaskGIT's and Meissonic's default (diffusers `masking_schedule="cosine"`)."""
    return torch.cos(progress * math.pi / 2)


def linear_mask_ratio(progress: torch.Tensor) -> torch.Tensor:
    """γ(r) = 1 − r (diffusers `masking_schedule="linear"`)."""
    return 1 - progress


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
