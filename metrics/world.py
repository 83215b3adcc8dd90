"""The synthetic world's exact per-image metrics (no model error, no scorer error).

- ``world-loglik``: log p(x | prompt) / N under the world's true conditional distribution, in nats per
  token — image quality, exactly.
- ``world-alignment``: P(the image shows a scene its prompt describes | x) under a uniform scene prior —
  prompt alignment, the world's CLIP score.

Both need `ScoreBatch.world` (the backend passes its `TokenWorld`); the tokens are recovered exactly
from the saved PNG, so the metric scores what was written to disk.
"""
from __future__ import annotations

import torch

from mgt_common.errors import ConfigError

from .base import PerImageMetric, ScoreBatch, register_metric


class _WorldMetric(PerImageMetric):
    needs = frozenset({"world"})

    def tokens(self, batch: ScoreBatch) -> torch.Tensor:
        if batch.world is None:
            raise ConfigError(f"metric {self.name!r} needs the synthetic world as model; "
                              "remove it from 'metrics' for other models")
        return batch.world.image_to_tokens(batch.images)


@register_metric("world-loglik")
class WorldLogLikelihood(_WorldMetric):
    """Exact log-likelihood per token of the image under the world's true p(x | prompt) (higher is better)."""

    higher_is_better = True

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        return batch.world.log_likelihood(self.tokens(batch), list(batch.prompts)).double()


@register_metric("world-alignment")
class WorldAlignment(_WorldMetric):
    """Exact posterior probability that the image shows its prompt (the world's CLIP score; higher is better)."""

    higher_is_better = True
    # A probability: gaps below 1e-4 (e.g. 1 − 1e-7 vs 1) are not a better image, they are a tie.
    tie_tolerance = 1e-4

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        return batch.world.prompt_posterior(self.tokens(batch), list(batch.prompts)).double()
