"""The synthetic world's exact metrics (no model error, no scorer error), whose optimum is the truth.

The world knows its image distribution p(x | c) exactly, so a metric can ask how far a sampler's
images are from the *exact sampler's* — not whether they are "more likely", which rewards dropping
the world's own token noise (a clean prototype is more likely than any true sample). Three metrics
have the exact sampler at their optimum (docs/world.md, "The world's metrics"):

- ``world-typicality`` (per image, lower is better; the default primary metric): how many nats per
  token the image's log-likelihood lies outside the central 99 % range of the exact sampler's for its
  prompt (`TokenWorld.typical_loglik_range`). 0 inside; too clean and too noisy both lose.
- ``world-faithfulness`` (per prompt over its seeds, a set metric): the share of images whose decoded
  scene (`TokenWorld.decode_scenes`) is one the prompt describes. Exact sampler: 1.
- ``world-coverage`` (per prompt over its seeds, a set metric): how often two seeds show two different
  scenes the prompt allows, relative to the exact sampler's 1 − 1/K_c — an unbiased estimate from
  any number (≥ 2) of seeds, 1 in expectation for the exact sampler, 0 for a sampler that shows one
  scene whatever the seed.

Diagnostics and finer views:

- ``world-loglik``: log p(x | prompt) / N, nats per token — exact, but a *diagnostic*: higher is not
  better past the exact sampler's level (−0.33 for the default world), so it is never a verdict.
- ``world-alignment``: P(the image shows a scene its prompt describes | x) under a uniform scene prior —
  the soft, per-image form of faithfulness. All-or-nothing, so on good samplers it saturates.
- ``world-attributes``: the share of the attributes the prompt names that the image gets right, each
  weighed by its posterior probability — an alignment score that gives partial credit (a red square
  asked for as a red circle scores 1/2 on "a red circle"), so it does not saturate as early.
- ``world-error-shape``, ``-colour``, ``-background``, ``-position``, ``-size``: per attribute,
  P(the image's attribute differs from the one the prompt names); 0 when the prompt does not name it
  (nothing to get wrong: every image has a score, as the score cache and the paired statistics
  expect). Their means are per-image error rates over the whole prompt set: *how* a sampler fails.

All need the synthetic world (`ScoreBatch.world` / the set's ``world``); the tokens are recovered
exactly from the saved PNG, so a metric scores what was written to disk.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from mgt_common.errors import ConfigError

from .base import ExactWorld, PerImageMetric, ScoreBatch, SetFeatures, SetMetric, SetMetricResult, register_metric


def _require_world(name: str, world: ExactWorld | None) -> None:
    if world is None:
        raise ConfigError(f"metric {name!r} needs the synthetic world as model; "
                          "remove it from 'metrics' for other models")


class _WorldMetric(PerImageMetric):
    needs = frozenset({"world"})

    def check_weights(self, world: ExactWorld | None = None) -> None:
        """Refuse a model without the world before the first image is generated (nothing else to find)."""
        _require_world(self.name, world)

    def tokens(self, batch: ScoreBatch) -> torch.Tensor:
        _require_world(self.name, batch.world)
        return batch.world.image_to_tokens(batch.images)


@register_metric("world-loglik")
class WorldLogLikelihood(_WorldMetric):
    """Exact log-likelihood per token of the image under the world's true p(x | prompt) — a diagnostic.

    Higher is more likely, not better: the exact sampler's images sit at a level set by the world's
    token noise, and an image cleaner than that (a sharpened sampler's) scores higher than the truth.
    Read ``world-typicality`` for quality; this one says on which side of the level a sampler errs.
    """

    higher_is_better = True
    unit = "nats/token"
    diagnostic = True

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


@register_metric("world-typicality")
class WorldTypicality(_WorldMetric):
    """Nats per token by which log p(x | c) / N lies outside the exact sampler's central range (lower is better).

    ``max(0, lo − ℓ(x), ℓ(x) − hi)`` with ``[lo, hi] = TokenWorld.typical_loglik_range(c, mass)``: 0 for
    an image as likely as the exact sampler's images are (a share ``mass`` of them, 0.99 by default),
    positive for one too noisy (mixed scenes, wrong tokens) *and* for one too clean (the world's token
    noise dropped, as low temperature or strong guidance do). The range is the exact Binomial law of
    the exact sampler's match count, so the exact sampler scores 0 on at least 99 % of its images and
    no sampler can score below 0: its optimum is the truth.
    """

    higher_is_better = False
    unit = "nats/token"

    def __init__(self, mass: float = 0.99, **params: Any):
        super().__init__(**params)
        if not 0 < float(mass) < 1:
            raise ConfigError(f"world-typicality: mass must be between 0 and 1 (e.g. 0.99), not {mass!r}")
        self.mass = float(mass)
        self.params["mass"] = self.mass
        self._ranges: dict[tuple[int, str], tuple[float, float]] = {}

    def typical_range(self, world: ExactWorld, prompt: str) -> tuple[float, float]:
        key = (id(world), prompt)
        if key not in self._ranges:
            self._ranges[key] = world.typical_loglik_range(prompt, self.mass)
        return self._ranges[key]

    def score(self, batch: ScoreBatch) -> torch.Tensor:
        prompts = list(batch.prompts)
        loglik = batch.world.log_likelihood(self.tokens(batch), prompts).double()
        ranges = torch.tensor([self.typical_range(batch.world, p) for p in prompts], dtype=torch.float64)
        return torch.clamp(torch.maximum(ranges[:, 0] - loglik, loglik - ranges[:, 1]), min=0.0)


# -- set metrics over each prompt's seeds --------------------------------------------------------------
class _SceneSetMetric(SetMetric):
    """A per-prompt value from the scenes its images show, averaged over prompts (higher is better).

    Features: one row per image holding the index of its decoded scene (`TokenWorld.decode_scenes`).
    A prompt's value uses its own images only (all its seeds); the set's value is the mean over the
    prompts that have one, so every prompt weighs the same. Its interval is the jackknife over prompts
    of bench/set_intervals.py, which for a mean of per-prompt values is the t interval on them.
    """

    higher_is_better = True
    needs = frozenset({"world"})
    lower_bound = 0.0
    unbiased = True  # a mean of per-prompt unbiased estimates: no size-dependent bias
    version = "1"

    def check_weights(self, world: ExactWorld | None = None) -> None:
        _require_world(self.name, world)

    def features(self, images: torch.Tensor | Iterable[torch.Tensor], prompts: Sequence[str],
                 world: ExactWorld | None = None, prompt_ids: Sequence[str] | None = None) -> SetFeatures:
        _require_world(self.name, world)
        batches = [images] if isinstance(images, torch.Tensor) else images
        scenes = [world.decode_scenes(world.image_to_tokens(batch)) for batch in batches]
        if not scenes:
            raise ValueError(f"{self.name}: no images")
        return SetFeatures(torch.cat(scenes).double()[:, None], tuple(prompts),
                           None if prompt_ids is None else tuple(prompt_ids), world)

    def per_prompt(self, features: SetFeatures) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(prompt texts, value per prompt — NaN where the prompt has none, index of each row's prompt)."""
        texts = list(dict.fromkeys(features.prompts))
        index = {t: i for i, t in enumerate(texts)}
        row_prompt = np.array([index[t] for t in features.prompts], dtype=int)
        scenes = features.features[:, 0].long()
        values = np.array([self.prompt_value(features.world, t, scenes[row_prompt == i]) for i, t in enumerate(texts)])
        return texts, values, row_prompt

    def prompt_value(self, world: ExactWorld, prompt: str, scenes: torch.Tensor) -> float:
        raise NotImplementedError

    def compute_from_features(self, features: SetFeatures) -> Mapping[str, SetMetricResult]:
        texts, values, _ = self.per_prompt(features)
        used = np.isfinite(values)
        warnings = self.warnings(texts, values)
        value = float(values[used].mean()) if used.any() else float("nan")
        return {self.name: SetMetricResult(value=value, n=len(features), warnings=warnings,
                                           details={"prompts_used": float(used.sum())})}

    def warnings(self, texts: list[str], values: np.ndarray) -> list[str]:
        return []

    def resampled(self, features: SetFeatures, weights: np.ndarray) -> Mapping[str, np.ndarray]:
        """The mean over prompts with each prompt weighted by its rows' weight (one weight per prompt).

        Weights must be equal within a prompt (the delete-one-prompt jackknife's are: 0 for the prompt
        left out, 1 elsewhere): a prompt's value comes from all its seeds together. A row of weights
        that changes no prompt with a value (it leaves out a prompt that has none, say a prompt that
        describes one scene for coverage) is not a replicate of this mean and gives NaN, so that the
        jackknife counts exactly the prompts the value averages.
        """
        _, values, row_prompt = self.per_prompt(features)
        w = np.asarray(weights, dtype=float)
        n_prompts = len(values)
        per_prompt = np.zeros((w.shape[0], n_prompts))
        for i in range(n_prompts):
            rows = w[:, row_prompt == i]
            if rows.size and not np.all(rows == rows[:, :1]):
                raise ValueError(f"{self.name}: resampling weights must be equal for all images of a prompt")
            per_prompt[:, i] = rows[:, 0] if rows.size else 0.0
        used = np.isfinite(values)
        v = np.where(used, values, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (per_prompt * used) @ v / (per_prompt * used).sum(1)
        unchanged = np.all(per_prompt[:, used] == 1.0, axis=1)
        return {self.name: np.where(unchanged, np.nan, out)}


_ATTRIBUTES = ("shape", "colour", "background", "position", "size")


@register_metric("world-faithfulness")
class WorldFaithfulness(_SceneSetMetric):
    """Share of a prompt's images whose decoded scene satisfies the prompt, averaged over prompts (higher is better).

    Param ``attribute`` (shape, colour, background, position or size) scores one attribute instead:
    the share of images whose decoded scene has the value the prompt names, over the prompts that name
    it. The exact sampler scores 1 up to its decoding error (below 10⁻⁴); a sampler that draws the
    wrong attribute loses in proportion.
    """

    upper_bound = 1.0  # a share

    def __init__(self, attribute: str | None = None, **params: Any):
        super().__init__(**params)
        if attribute is not None and attribute not in _ATTRIBUTES:
            raise ConfigError(f"world-faithfulness: attribute {attribute!r} is not one of {', '.join(_ATTRIBUTES)}")
        self.attribute = attribute
        if attribute is not None:
            self.params["attribute"] = attribute

    def prompt_value(self, world: ExactWorld, prompt: str, scenes: torch.Tensor) -> float:
        if not len(scenes):
            return float("nan")
        if self.attribute is None:
            return float(world.scene_set(prompt)[scenes].double().mean())
        named = world.grammar.parse(prompt).get(self.attribute)
        if named is None:
            return float("nan")  # nothing to be faithful to
        return float(np.mean([value == named for value in world.scene_attribute(scenes, self.attribute)]))


@register_metric("world-coverage")
class WorldCoverage(_SceneSetMetric):
    """How many of the scenes a prompt allows its seeds show, relative to the exact sampler (higher is better; 1 = exact).

    For a prompt c with K_c ≥ 2 scenes and n ≥ 2 images with decoded scenes s_1 … s_n:

        coverage_c = [ Σ_{i<j} 1{s_i ∈ S(c), s_j ∈ S(c), s_i ≠ s_j} / C(n, 2) ] / (1 − 1/K_c).

    The bracket is an unbiased estimate (a U-statistic, Hoeffding 1948) of the probability that two
    independent images show two *different* scenes *of the prompt*, whatever n; the exact sampler
    draws the scene uniformly from S(c), which gives 1 − 1/K_c, the largest value any sampler can
    reach. So coverage_c is 1 in expectation for the exact sampler at any number of seeds (its
    decoding error aside, below 10⁻⁴), below 1 for one that favours some scenes, 0 for one that
    shows the same scene for every seed (greedy decoding, collapse) and also for one that never
    shows an allowed scene (read it beside faithfulness: coverage ≤ faithfulness² / (1 − 1/K_c)
    in expectation). A single prompt's value is noisy and can exceed 1; the mean over prompts is
    what is read. Prompts that describe one scene (nothing to cover) and prompts with one image are
    left out.
    """

    def prompt_value(self, world: ExactWorld, prompt: str, scenes: torch.Tensor) -> float:
        allowed = world.scene_set(prompt)
        n_scenes, n = int(allowed.sum()), len(scenes)
        if n_scenes < 2 or n < 2:
            return float("nan")
        inside = allowed[scenes]
        s = scenes[inside]
        same = int((s[:, None] == s[None, :]).sum()) - len(s)  # ordered pairs i ≠ j, both inside, same scene
        different_inside = len(s) * (len(s) - 1) - same
        return different_inside / (n * (n - 1)) / (1.0 - 1.0 / n_scenes)

    def warnings(self, texts: list[str], values: np.ndarray) -> list[str]:
        if np.isfinite(values).any():
            return []  # prompts left out are expected (full prompts); `prompts_used` counts the others
        return [f"{self.name}: no prompt with at least 2 images and 2 allowed scenes: coverage needs 2 or more "
                "seeds per prompt and prompts that leave something open"]
