"""The synthetic world's exact per-image metrics (no model error, no scorer error).

- ``world-loglik``: log p(x | prompt) / N under the world's true conditional distribution, in nats per
  token — image quality, exactly.
- ``world-alignment``: P(the image shows a scene its prompt describes | x) under a uniform scene prior —
  prompt alignment, the world's CLIP score. All-or-nothing: it is ≈ 1 whenever the image shows *a*
  scene the prompt allows, so on good samplers it saturates (win rates all ties).
- ``world-attributes``: the share of the attributes the prompt names that the image gets right, each
  weighed by its posterior probability — an alignment score that gives partial credit (a red square
  asked for as a red circle scores 1/2 on "a red circle"), so it does not saturate as early.
- ``world-error-shape``, ``-colour``, ``-background``, ``-position``, ``-size``: per attribute,
  P(the image's attribute differs from the one the prompt names); 0 when the prompt does not name it
  (nothing to get wrong: every image has a score, as the score cache and the paired statistics
  expect). Their means are per-image error rates over the whole prompt set: *how* a sampler fails.

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
    unit = "nats/token"

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        return batch.world.log_likelihood(self.tokens(batch), list(batch.prompts)).double()


@register_metric("world-alignment")
class WorldAlignment(_WorldMetric):
    """Exact posterior probability that the image shows its prompt (the world's CLIP score; higher is better)."""

    higher_is_better = True
    unit = "probability"
    # A probability: gaps below 1e-4 (e.g. 1 − 1e-7 vs 1) are not a better image, they are a tie.
    tie_tolerance = 1e-4

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        return batch.world.prompt_posterior(self.tokens(batch), list(batch.prompts)).double()


@register_metric("world-attributes")
class WorldAttributes(_WorldMetric):
    """Share of the prompt's named attributes the image shows, by posterior probability (higher is better)."""

    higher_is_better = True
    tie_tolerance = 1e-4  # a probability, as world-alignment
    unit = "share"  # of the attributes the prompt names

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        errors = torch.stack(list(batch.world.attribute_errors(self.tokens(batch), list(batch.prompts)).values()))
        named = ~errors.isnan()
        right = (1 - errors.nan_to_num(0.0)) * named
        # a prompt that names nothing cannot be misread: full credit
        return torch.where(named.any(dim=0), right.sum(dim=0) / named.sum(dim=0).clamp(min=1), 1.0).double()


class _AttributeError(_WorldMetric):
    """P(the image's ATTRIBUTE differs from the prompt's), 0 when the prompt leaves it open (lower is better)."""

    higher_is_better = False
    tie_tolerance = 1e-4
    unit = "probability"
    attribute = ""

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        errors = batch.world.attribute_errors(self.tokens(batch), list(batch.prompts))[self.attribute]
        return errors.nan_to_num(0.0).double()


for _attribute in ("shape", "colour", "background", "position", "size"):
    register_metric(f"world-error-{_attribute}")(type(
        f"WorldError{_attribute.title()}", (_AttributeError,),
        {"attribute": _attribute, "__doc__": _AttributeError.__doc__.replace("ATTRIBUTE", _attribute)}))
