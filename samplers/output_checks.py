"""Checks of what every sampler component returns: shape, type, and finite values (docs/plugins.md,
"What a component must return").

Two users. `--check` (bench/check.py) runs every variant through `checked_variant`, which checks each
component's output as it is returned, so that a message names the component that produced a bad
value and not the one that tripped over it later. A run cannot pay for that on every step (a logits
tensor is 128 MiB per image at Meissonic's shape), so the engine watches only two ``(B, N)`` tensors
per step, the confidence and the probability of each sampled token (`StepWatch`), where a NaN
anywhere upstream shows up; when one is found, the batch is generated again under `checked_variant`
and `CheckedModel` to find the first component whose output was not finite (`SamplerEngine.generate`).

Rules (what is legitimate): logits may hold −inf (a token ruled out) but no NaN or +inf; probabilities
neither NaN nor ±inf; a confidence no NaN at a masked position (±inf orders positions first or last);
tokens lie in [0, V) at masked positions; a guidance scale is a finite number, and so is a reveal
schedule's masked fraction (checked on every step by `RevealSchedule.mask_len` itself: one number,
which ``floor`` would otherwise turn into a count).
"""
from __future__ import annotations

import copy
import inspect
import math
from pathlib import Path

import torch

from mgt_common.errors import UserError


class OutputError(ValueError):
    """A component returned something of the wrong shape or type."""


class NonFiniteOutput(UserError):
    """A component (or the model) returned NaN or infinite values: named, exit code 2."""


def component_label(component) -> str:
    """``confidence 'far-confident'`` and, for a component defined outside the package, its file."""
    label = f"{component.kind} {component.name!r}"
    try:
        path = Path(inspect.getsourcefile(type(component)) or "")
    except TypeError:
        return label
    package = Path(__file__).resolve().parents[1]
    if path.name and package not in path.resolve().parents:
        label += f" ({path.name})"
    return label


def nonfinite_count(value: torch.Tensor, where: torch.Tensor | None = None, allow_negative_inf: bool = False) -> int:
    """How many entries of `value` (among `where`, broadcast over trailing dims) are NaN or infinite
    (+inf only, with `allow_negative_inf`)."""
    if not value.is_floating_point():
        return 0
    bad = torch.isnan(value) | (value == float("inf") if allow_negative_inf else torch.isinf(value))
    if where is not None:
        while where.dim() < bad.dim():
            where = where.unsqueeze(-1)
        bad = bad & where
    return int(bad.sum())


def _expect(component, method: str, value, shape=None, dtype=None) -> None:
    what = f"{component.kind} {component.name!r}: {method}() returned"
    if not isinstance(value, torch.Tensor):
        raise OutputError(f"{what} {type(value).__name__}, expected a tensor")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise OutputError(f"{what} shape {tuple(value.shape)}, expected {tuple(shape)} (see docs/plugins.md)")
    if dtype is not None and value.dtype != dtype:
        raise OutputError(f"{what} dtype {value.dtype}, expected {dtype}")


def _finite(component, method: str, value: torch.Tensor, ctx, logits: bool = False, what: str = "values") -> None:
    count = nonfinite_count(value, allow_negative_inf=logits)
    if count:
        kind = "NaN or +inf" if logits else "NaN or infinite"
        raise NonFiniteOutput(f"{component_label(component)}: {method}() returned {kind} {what} at step {ctx.step} "
                              f"of {ctx.total_steps} ({count} of {value.numel()}); a component must return finite "
                              "numbers (docs/plugins.md)")


class _CheckedList:
    """A logits processor or probability corrector whose output must keep its input's shape and be finite."""

    def __init__(self, component, logits: bool):
        self.component, self.logits = component, logits

    def __getattr__(self, name):
        return getattr(self.component, name)

    def __call__(self, tensor, ctx):
        value = self.component(tensor, ctx)
        _expect(self.component, "__call__", value, tensor.shape)
        _finite(self.component, "__call__", value, ctx, logits=self.logits,
                what="logits" if self.logits else "probabilities")
        return value


def checked_variant(variant):
    """A copy of `variant` whose components' outputs are checked for shape, type and finite values at every step.

    Without it a wrong shape or a NaN surfaces one component later (a (B,) confidence fails inside the
    re-mask policy, NaN probabilities inside the token sampler), so the message would name the wrong
    component. Only `--check` and the engine's diagnosis of a non-finite step pay for the checks.
    """
    checked = copy.copy(variant)
    checked.logits_processors = [_CheckedList(c, logits=True) for c in variant.logits_processors]
    checked.probability_correctors = [_CheckedList(c, logits=False) for c in variant.probability_correctors]

    def wrap(component, method, check):
        original = getattr(component, method)

        def wrapped(*args):
            value = original(*args)
            check(value, *args)
            return value

        setattr(component, method, wrapped)  # an instance attribute: the class stays untouched

    def scalar(component, method):
        def check(value, ctx):
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise (NonFiniteOutput if isinstance(value, float) else OutputError)(
                    f"{component_label(component)}: {method}() returned {value!r} at step {ctx.step}, "
                    "expected a finite number")
        return check

    copies = {}
    for kind in ("guidance", "token_sampler", "confidence", "reveal_schedule", "remask"):
        copies[kind] = copy.copy(getattr(variant, kind))
        setattr(checked, kind, copies[kind])
    g, t, c, r, m = (copies[k] for k in ("guidance", "token_sampler", "confidence", "reveal_schedule", "remask"))
    last_logits = (variant.logits_processors or [g])[-1]

    def combine(value, cond, uncond, ctx):
        _expect(g, "combine", value, cond.shape)
        _finite(g, "combine", value, ctx, logits=True, what="logits")

    def sample(value, probs, ctx):
        # the probabilities reach the sampler from the engine's softmax: after checked logits and
        # correctors, a NaN here is a row whose logits were all −inf
        count = nonfinite_count(probs, ctx.unknown)
        if count:
            raise NonFiniteOutput(f"{component_label(last_logits)}: left {count} masked positions at step "
                                  f"{ctx.step} with no finite logit (every token −inf), so their probabilities "
                                  "are NaN (docs/plugins.md)")
        _expect(t, "sample", value, probs.shape[:2], torch.long)
        vocab = probs.shape[-1]
        outside = int((((value < 0) | (value >= vocab)) & ctx.unknown).sum())
        if outside:
            raise OutputError(f"{component_label(t)}: sample() returned {outside} tokens outside [0, {vocab}) at "
                              f"step {ctx.step}")

    def score(value, probs, sampled, ctx):
        _expect(c, "score", value, sampled.shape)
        count = int((torch.isnan(value) & ctx.unknown).sum()) if value.is_floating_point() else 0
        if count:
            raise NonFiniteOutput(f"{component_label(c)}: score() returned NaN at {count} of "
                                  f"{int(ctx.unknown.sum())} masked positions at step {ctx.step} of "
                                  f"{ctx.total_steps}; a confidence must be a number at every masked position, "
                                  "or every position would be revealed at once (docs/plugins.md)")

    wrap(g, "scale", scalar(g, "scale"))
    wrap(g, "combine", combine)
    wrap(t, "sample", sample)
    wrap(c, "score", score)
    wrap(r, "mask_len", lambda v, ctx: _expect(r, "mask_len", v, (ctx.tokens.shape[0], 1)))
    wrap(m, "select", lambda v, conf, mask_len, ctx: _expect(m, "select", v, conf.shape, torch.bool))
    return checked


class CheckedModel:
    """The model, with its logits checked for NaN and +inf (a half-precision overflow shows up here)."""

    def __init__(self, model, name: str = "the model"):
        self._model, self._name = model, name

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _check(self, outputs, step):
        for branch, value in zip(("conditional", "unconditional"), outputs):
            if value is not None and nonfinite_count(value, allow_negative_inf=True):
                raise NonFiniteOutput(f"{self._name} returned NaN or +inf {branch} logits at step {step} "
                                      f"({nonfinite_count(value, allow_negative_inf=True)} of {value.numel()}); "
                                      "with float16 weights this is usually an overflow: try dtype bfloat16 or float32")
        return outputs

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        return self._check(self._model.logits(tokens, conditioning, step, total_steps, with_uncond), step)

    def raw_logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        return self._check(self._model.raw_logits(tokens, conditioning, step, total_steps, with_uncond), step)


class StepWatch:
    """What the engine records on every step of a generation, cheaply: whether the confidence had a NaN at
    a masked position, or a sampled token was outside the codebook or had a NaN probability. Only
    ``(B, N)`` tensors are read, and the flags stay on the device until the generation ends (one
    transfer, no synchronisation per step)."""

    def __init__(self):
        self.flags: list[tuple[int, str, torch.Tensor]] = []

    def confidence(self, step: int, confidence: torch.Tensor, unknown: torch.Tensor) -> None:
        if isinstance(confidence, torch.Tensor) and confidence.is_floating_point() and confidence.shape == unknown.shape:
            self.flags.append((step, "confidence", (torch.isnan(confidence) & unknown).any()))

    def sampled(self, step: int, probs: torch.Tensor, sampled: torch.Tensor, unknown: torch.Tensor) -> None:
        if sampled.dtype != torch.long or probs.dim() != 3:
            return  # a wrong token dtype or shape fails where it is used, with its own message
        vocab = probs.shape[-1]
        outside = (sampled < 0) | (sampled >= vocab)
        chosen = probs.gather(-1, sampled.clamp(0, vocab - 1).unsqueeze(-1)).squeeze(-1)
        self.flags.append((step, "probabilities", ((torch.isnan(chosen) | outside) & unknown).any()))

    def first(self) -> tuple[int, str] | None:
        """(step, what) of the first flagged check, or None."""
        if not self.flags:
            return None
        raised = torch.stack([flag for _, _, flag in self.flags]).cpu()
        if not bool(raised.any()):
            return None
        index = int(raised.nonzero()[0, 0])
        return self.flags[index][0], self.flags[index][1]
