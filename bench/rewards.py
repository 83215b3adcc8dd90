"""The harness side of reward-guided search (samplers/search.py): a per-image metric as a reward.

A search loop names its reward metric (`reward = "hpsv2"`); samplers never import metrics, so the
harness builds that scorer here and hands the loop a callable through `SamplerEngine.generate(reward=)`
(the protocol in samplers/reward.py). The reward sees what the scoring stage will see: decoded images
rounded to 8 bits as the saved PNGs are, the prompts, the tokens and (for the synthetic world) the
world. Lower-is-better metrics are negated, so the loop always maximises.
"""
from __future__ import annotations

from typing import Sequence

import torch

from metrics.base import METRICS, PerImageMetric, ScoreBatch
from mgt_common.errors import ConfigError


def reward_metric_name(variant) -> str | None:
    """The metric a variant's loop steers by, or None for loops without a reward."""
    name = getattr(getattr(variant, "loop", None), "reward", None)
    return name if isinstance(name, str) and name else None


def check_reward_metrics(variants) -> None:
    """At config time: every search loop's reward names a registered per-image metric (else exit 2)."""
    for variant in variants:
        name = reward_metric_name(variant)
        if name is None:
            continue
        cls = METRICS.get(name)
        if not (isinstance(cls, type) and issubclass(cls, PerImageMetric)):
            raise ConfigError(f"variants.{variant.name}: loop reward {name!r} is a set metric; a reward must be a "
                              "per-image metric (e.g. hpsv2, clip-score, world-loglik)")


class RewardBuilder:
    """Builds (once per metric name) the scorers that variants' search loops steer by."""

    def __init__(self, model, grid: tuple[int, int], device: str):
        self.model, self.grid, self.device = model, grid, device
        self._metrics: dict[str, PerImageMetric] = {}

    def metric(self, name: str, variant: str = "") -> PerImageMetric:
        if name not in self._metrics:
            cls = METRICS.get(name)
            if not (isinstance(cls, type) and issubclass(cls, PerImageMetric)):
                raise ConfigError(f"variants.{variant}: loop reward {name!r} is a set metric; a reward must be a "
                                  "per-image metric (e.g. hpsv2, clip-score, world-loglik)")
            if "world" in cls.needs and self.model.world is None:
                raise ConfigError(f"variants.{variant}: loop reward {name!r} needs the synthetic world as model; "
                                  "use a per-image metric of this model (e.g. hpsv2)")
            self._metrics[name] = cls(device=self.device)
        return self._metrics[name]

    def engine_arguments(self, variant, units) -> dict:
        """``{"reward": ...}`` for `SamplerEngine.generate` when the variant searches, else nothing."""
        reward = self.for_batch(variant, [u.prompt.text for u in units], [u.prompt.id for u in units])
        return {} if reward is None else {"reward": reward}

    def for_batch(self, variant, prompts: Sequence[str], prompt_ids: Sequence[str]):
        """The reward callable for one batch of `variant` (None when its loop needs none)."""
        name = reward_metric_name(variant)
        if name is None:
            return None
        metric = self.metric(name, variant.name)
        metric.load()
        sign = 1.0 if metric.higher_is_better else -1.0
        world = self.model.world

        def reward(tokens: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
            images = self.model.decode(tokens, self.grid).detach().float().clamp(0, 1)
            images = (images * 255).round() / 255  # what the saved PNG holds
            batch = ScoreBatch(images=images.cpu(), prompts=[prompts[r] for r in rows], tokens=tokens.cpu(),
                               prompt_ids=[prompt_ids[r] for r in rows], world=world)
            return sign * metric.score(batch).double().cpu()

        return reward
