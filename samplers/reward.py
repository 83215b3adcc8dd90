"""The reward a search loop steers by: a protocol the harness fills in (samplers never import metrics).

A reward is any per-image score where higher is better (e.g. HPSv2, or the synthetic world's exact
log-likelihood in tests). The harness (bench) builds one from a metric named in the loop's `reward`
parameter and passes it to `SamplerEngine.generate(reward=...)`; the loop calls it on complete token
grids. Each call scores every row it is given once: the loop counts those as scorer calls per image,
next to the forward passes, because a reward model is often as costly as the generator.
"""
from __future__ import annotations

import hashlib
from typing import Protocol, Sequence, runtime_checkable

import torch

from .randomness import make_generator


@runtime_checkable
class Reward(Protocol):
    """Scores complete token grids: ``reward(tokens (R, N), rows) → (R,) float64``, higher is better.

    ``rows[r]`` is the row of the generation's batch (its prompt and seed) that row r of `tokens`
    belongs to: a search loop scores several candidates of the same image.
    """

    def __call__(self, tokens: torch.Tensor, rows: Sequence[int]) -> torch.Tensor: ...


def derived_seed(seed: int, label: str) -> int:
    """A seed for an auxiliary random stream of one image (a candidate, a particle, a resampler).

    Derived by hashing, so that it consumes nothing from the image's own stream and does not depend
    on the batch: candidate 0 of a search *is* the image's own stream, so a search of size 1 is the
    plain sampler, bit for bit.
    """
    digest = hashlib.sha256(f"mgt-bench:{int(seed)}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def derived_generator(generator: torch.Generator, label: str) -> torch.Generator:
    """The auxiliary stream `label` of the image whose generator is `generator` (same device)."""
    return make_generator(derived_seed(generator.initial_seed(), label), generator.device)


def require_reward(generation, loop_name: str, metric: str) -> Reward:
    reward = getattr(generation, "reward", None)
    if reward is None:
        from mgt_common.errors import ConfigError
        raise ConfigError(f"loop {loop_name!r} needs a reward (metric {metric!r}); the harness provides it from the "
                          "loop's `reward` parameter — pass SamplerEngine.generate(reward=...) when calling the engine directly")
    return reward
