"""The metric protocol: per-image scorers and per-set metrics, and their registry.

Per-image scorers (HPSv2, CLIP score, PickScore, the synthetic world's exact metrics) give one number
per generated image; the win-rate statistics pair those numbers across variants. Set metrics (FID, KID)
give one number per set of images (a variant, or a variant × prompt category).

A scorer is configured by keyword parameters (from the TOML config), loads its weights lazily in
`load()`, and scores a batch in `score()`. Its `cache_id` (name, version, weights, parameters) enters
the score-cache key, so that re-scoring a finished run costs nothing. A set metric extracts one row of
features per image once per set (`features`) and computes its values from them
(`compute_from_features`); categories and the jackknife's leave-one-prompt-out sets reuse those rows.

Following torchmetrics' split, the heavy state lives in the object and the maths in functions.
"""
from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch

from mgt_common.errors import UserError
from mgt_common.registry import Registry


@dataclass
class ScoreBatch:
    """What a scorer sees for a batch of generated images.

    images: float ``(B, 3, H, W)`` in [0, 1] (exactly what was saved as PNG, re-read).
    prompts: the prompt text of each image.
    tokens: the generated token grids ``(B, N)`` when the backend exposes them (else None).
    prompt_ids: the prompt ids in the prompt set (used by the synthetic world's exact metrics).
    world: the exact reference distribution, when the model is the synthetic world (else None).
    """

    images: torch.Tensor
    prompts: Sequence[str]
    tokens: torch.Tensor | None = None
    prompt_ids: Sequence[str] | None = None
    world: "ExactWorld | None" = None


class ExactWorld(Protocol):
    """What exact metrics need from a world whose image distribution is known (the synthetic world)."""

    def log_likelihood(self, tokens: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """log p(x | prompt) per image, in nats per token, float64 ``(B,)``."""

    def prompt_posterior(self, tokens: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """P(the image shows a scene its prompt describes | x) under the world's scene prior, ``(B,)``."""

    def typical_loglik_range(self, prompt: str, mass: float = 0.99) -> tuple[float, float]:
        """The central range of log p(x | prompt) / N that holds ``mass`` of the exact sampler's images."""

    def scene_set(self, prompt: str) -> torch.Tensor:
        """Boolean ``(K,)``: the scenes the prompt describes."""

    def decode_scenes(self, tokens: torch.Tensor) -> torch.Tensor:
        """The scene each image shows ``(B,)`` (maximum a posteriori under a uniform scene prior)."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Feature vectors ``(B, D)`` of images for Fréchet distances (the world's 'Inception')."""

    def exact_samples(self, prompts: Sequence[str], n_per_prompt: int, seed: int) -> torch.Tensor:
        """Images ``(len(prompts)·n, 3, H, W)`` drawn exactly from p(x | prompt): FID's reference set."""


class PerImageMetric(ABC):
    """One score per image. Subclasses set the class attributes and implement `score`."""

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    version: ClassVar[str] = "1"
    #: what `ScoreBatch` fields it needs beyond images and prompts ("tokens", "world").
    needs: ClassVar[frozenset[str]] = frozenset()
    #: paired differences with |Δ| at most this are ties in win rates (count half).
    tie_tolerance: ClassVar[float] = 1e-9
    #: what one score measures, shown beside means and mean differences in the report ("nats/token").
    unit: ClassVar[str] = ""
    #: a diagnostic is reported (means, differences, win rates) but its direction is not a verdict on
    #: quality, so it is in no multiple-testing family and never starred (docs/report.md, "Families").
    diagnostic: ClassVar[bool] = False

    def __init__(self, **params: Any):
        self.params = params
        self.device = torch.device(params.pop("device", "cpu"))
        self.batch_size = int(params.pop("batch_size", 16))

    @property
    def cache_id(self) -> str:
        """Identifies the scorer, its version, weights and parameters (enters the score-cache key)."""
        blob = json.dumps({"name": self.name, "version": self.version, "params": self.params, "weights": self.weights_id()},
                          sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def weights_id(self) -> str:
        """The resolved weights (file hash or hub revision); empty for weight-free metrics."""
        return ""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this scorer."""
        info = {"name": self.name, "version": self.version, "higher_is_better": self.higher_is_better,
                "tie_tolerance": self.tie_tolerance, "params": self.params, "weights": self.weights_id(),
                "kind": "per-image", **({"unit": self.unit} if self.unit else {})}
        if self.diagnostic:
            info["role"] = "diagnostic"
        return info

    def check_weights(self, world: ExactWorld | None = None) -> None:
        """Find the weights `load` will need (raising `MissingWeightsError`), before any image is generated."""

    def load(self) -> None:
        """Load weights (once); called before the first `score`."""

    def unload(self) -> None:
        """Free weights (models are freed before the next big scorer is loaded)."""

    @abstractmethod
    def score(self, batch: ScoreBatch) -> torch.Tensor:
        """Scores ``(B,)`` as float64, one per image of the batch."""


@dataclass
class SetMetricResult:
    value: float
    std: float | None = None
    n: int = 0
    warnings: list[str] = field(default_factory=list)
    #: further numbers about the set, written as columns of set_metrics.csv (e.g. ``feature_trace``).
    details: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # tensors: identity, not element-wise equality
class SetFeatures:
    """One set of generated images as a set metric holds it after extraction: a row of features per image.

    Extracted once per variant (`SetMetric.features`); a prompt category is a selection of rows
    (`select`) and an interval re-weights the rows (`SetMetric.resampled`), so no image is read or
    passed through the feature network twice. ``prompts`` (and ``prompt_ids``) give each row's prompt,
    in row order; ``world`` is the synthetic world when the model is one (its exact samples are then
    the reference set).
    """

    features: torch.Tensor
    prompts: tuple[str, ...]
    prompt_ids: tuple[str, ...] | None = None
    world: ExactWorld | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def select(self, rows: Sequence[int]) -> "SetFeatures":
        """The subset of these rows, in the order given (e.g. the images of one prompt category)."""
        rows = [int(r) for r in rows]
        return SetFeatures(self.features[rows], tuple(self.prompts[r] for r in rows),
                           None if self.prompt_ids is None else tuple(self.prompt_ids[r] for r in rows), self.world)


class SetMetric(ABC):
    """One number per set of images (FID, KID). Lower is better unless declared otherwise.

    The lifecycle, as the scoring stage drives it (bench/scoring.py), one metric at a time:
    `check_weights` before anything is generated; `load`; `features` of each variant's images, once;
    `compute_from_features` on the variant's rows and on each prompt category's; `resampled` on the
    same rows re-weighted, for the leave-one-prompt-out jackknife (bench/set_intervals.py); `unload`
    before the next metric loads. `compute` is the one-call form for a single set.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    version: ClassVar[str] = "1"
    needs: ClassVar[frozenset[str]] = frozenset()
    #: the least value the metric can take (FID ≥ 0): interval bounds below it are moved up to it.
    lower_bound: ClassVar[float | None] = None
    #: the largest value it can take (a share: 1); interval bounds above it are moved down to it.
    upper_bound: ClassVar[float | None] = None
    #: True when the estimate's expectation does not depend on the set's size (KID's unbiased MMD², a
    #: mean over prompts): the paired difference then needs no small-sample bias correction. FID is
    #: biased upward by an amount that depends on each set's covariance, so its difference is
    #: bias-corrected by the jackknife (bench/set_intervals.py).
    unbiased: ClassVar[bool] = False

    def __init__(self, **params: Any):
        self.params = params
        self.device = torch.device(params.pop("device", "cpu"))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "higher_is_better": self.higher_is_better,
                "params": self.params, "kind": "set"}

    def check_weights(self, world: ExactWorld | None = None) -> None:
        """Find the weights and reference data `features` will need, before any image is generated."""

    def load(self) -> None:
        """Load weights (once); called before the first `features`. A metric may load lazily there instead."""

    def unload(self) -> None:
        """Free weights and cached reference data (the next metric's are loaded after this)."""

    @abstractmethod
    def features(self, images: torch.Tensor | Iterable[torch.Tensor], prompts: Sequence[str],
                 world: ExactWorld | None = None, prompt_ids: Sequence[str] | None = None) -> SetFeatures:
        """One row per image of `images` (a tensor, or an iterable of batches ``(B, 3, H, W)`` in [0, 1])."""

    @abstractmethod
    def compute_from_features(self, features: SetFeatures) -> Mapping[str, SetMetricResult]:
        """Metric values for the set; keys are the reported metric names (e.g. ``{"fid": …}``)."""

    def resampled(self, features: SetFeatures, weights: np.ndarray) -> Mapping[str, np.ndarray]:
        """Each reported value recomputed on the set re-weighted by each row of `weights` ``(B, N)``.

        Weights are non-negative integer counts per image (0 leaves an image out, 2 counts it twice):
        the delete-one-prompt jackknife passes one row per prompt left out. Returns ``(B,)`` per
        reported name; a name left out (the default: all of them) gets no interval.
        """
        return {}

    def compute(self, images: torch.Tensor | Iterable[torch.Tensor], prompts: Sequence[str],
                world: ExactWorld | None = None, prompt_ids: Sequence[str] | None = None) -> Mapping[str, SetMetricResult]:
        """`compute_from_features` of `features`: the metric of one set in one call."""
        return self.compute_from_features(self.features(images, prompts, world, prompt_ids))


class MetricOutputError(UserError):
    """A metric returned something other than its contract's values (named, exit code 2)."""


def checked_scores(metric: PerImageMetric, value: Any, prompts: Sequence[str]) -> torch.Tensor:
    """`PerImageMetric.score`'s return value as float64 ``(B,)`` on the CPU, or a `MetricOutputError`.

    A NaN or infinite score is an error, not a failed image left out: leaving it out would drop that
    pair from the comparison, so a variant whose images a metric cannot score would be judged on the
    others only (a selection bias in its favour), and counting it as a loss would invent a score. The
    metric must give every image a number, or the run stops and says which image (docs/plugins.md,
    "Metrics").
    """
    name, count = getattr(metric, "name", "") or type(metric).__name__, len(prompts)
    contract = f"score() must return a tensor of shape ({count},), one float per image (docs/plugins.md, \"Metrics\")"
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise MetricOutputError(f"metric {name!r}: score() returned {type(value).__name__}; {contract}")
    if tuple(value.shape) != (count,):
        raise MetricOutputError(f"metric {name!r}: score() returned shape {tuple(value.shape)} for {count} images; {contract}")
    if value.is_complex() or value.dtype == torch.bool:
        raise MetricOutputError(f"metric {name!r}: score() returned dtype {value.dtype}; {contract}")
    value = value.detach().to(device="cpu", dtype=torch.float64)
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise MetricOutputError(
            f"metric {name!r} returned {value[first].item()} for {int(bad.sum())} of {count} images (the first: "
            f"prompt {str(prompts[first])[:80]!r}); a score must be a finite number for every image — a metric "
            "that cannot score an image must say why by raising an error, not return NaN")
    return value


def checked_set_results(metric: SetMetric, results: Any) -> dict[str, SetMetricResult]:
    """`SetMetric.compute_from_features`'s return value checked: a mapping of names to `SetMetricResult`s whose
    value is a number. NaN is how a set metric says "not defined for this set" (FID of one image) and is
    shown as such, with the metric's warning; infinity and anything else are errors."""
    name = getattr(metric, "name", "") or type(metric).__name__
    contract = ("compute_from_features() must return {name: SetMetricResult(value=float, ...)} "
                "(docs/plugins.md, \"Metrics\")")
    if not isinstance(results, Mapping) or not results:
        raise MetricOutputError(f"metric {name!r}: {contract}, got {type(results).__name__}")
    checked = {}
    for key, result in results.items():
        value = getattr(result, "value", None)
        if not isinstance(result, SetMetricResult) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MetricOutputError(f"metric {name!r}: {contract}; {key!r} is {result!r}")
        if math.isinf(value):
            raise MetricOutputError(f"metric {name!r}: {key!r} is {value}; a set metric's value must be finite, or "
                                    "NaN with a warning saying why it is not defined for the set")
        if math.isnan(value) and not result.warnings:
            result = SetMetricResult(value=float("nan"), std=result.std, n=result.n,
                                     warnings=[f"{name}: not defined for this set (the metric gave no reason)"])
        checked[str(key)] = result
    return checked


METRICS: Registry[type] = Registry("metric", "per-image scorers and set metrics", builtins=(
    "metrics.world", "metrics.fid", "metrics.hpsv2", "metrics.clip_score", "metrics.pickscore"))


def register_metric(name: str):
    """Class decorator: ``@register_metric("hpsv2")`` on a `PerImageMetric` or `SetMetric` subclass."""

    def add(cls):
        cls.name = name
        METRICS.register(name, cls)
        return cls

    return add
