"""`--check`: build every variant of a config and run it on a tiny model, before any run starts.

A plugin's mistake (a wrong method signature, ``ctx.steps`` for ``ctx.total_steps``, a tensor of the
wrong shape) used to surface as a raw traceback in the middle of generation, after the run directory
existed. `check_config` resolves everything a run resolves first (config values, variants, prompt set,
metric names), then runs each variant's whole loop — every step, at its own step count and guidance
(a sweep's grid points included) — on a tiny random model with the sampler protocol's shape
(`TinyModel`), two images per variant, in milliseconds each. Nothing is written: no run directory, no cache.

A failure names the variant and, when the exception came from inside a component, that component's
kind, name, file and line, so the message points at the plugin rather than at the engine.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
import traceback
from dataclasses import dataclass

import torch

from mgt_common.errors import UserError
from samplers.engine import SamplerEngine
from samplers.output_checks import OutputError, checked_variant
from samplers.protocol import MaskedTokenModel
from samplers.variant import SamplerVariant

from .config import BenchConfig
from .resolve import resolve_config
from .rewards import reward_metric_name

#: The check's own seeds: two images per variant, so that per-image random streams are exercised too.
CHECK_SEEDS = (0, 1)


@dataclass
class CheckResult:
    variant: str
    forward_passes: int
    seconds: float


class TinyModel(MaskedTokenModel):
    """A masked-token model with the protocol's shape and no meaning: a fixed random bilinear map.

    Conditional logits at position n: ``bias[n] + mean_m embed[tokens_m] · W + text``, where the text row
    depends on the prompt's hash; the unconditional branch drops the text. Every number comes from a
    generator seeded 0, so a check is reproducible, and a step costs microseconds at any step count.

    The mean over all tokens is its one "attention": inside `perturbed_attention` (PAG) each position
    sees only its own token instead, ``embed[tokens_n] · W``, as identity self-attention does.
    """

    codebook_size = 16
    mask_token_id = 16

    def __init__(self, side: int):
        generator = torch.Generator().manual_seed(0)
        self.side = side
        n, v = side * side, self.codebook_size
        self.bias = torch.randn(n, v, generator=generator)
        self.embed = torch.randn(v + 1, 8, generator=generator)
        self.weight = torch.randn(8, v, generator=generator) / 4
        self.text = torch.randn(64, v, generator=generator)
        self._identity_attention = False

    def token_grid(self, height=None, width=None) -> tuple[int, int]:
        return self.side, self.side

    def encode(self, prompts: list[str], negative_prompt: str | None = None) -> dict[str, torch.Tensor]:
        rows = [sum(text.encode()) % self.text.shape[0] for text in prompts]
        return {"text": self.text[rows]}

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        if self._identity_attention:
            context = self.embed[tokens] @ self.weight  # (B, N, V): each position's own token only
        else:
            context = (self.embed[tokens].mean(dim=1) @ self.weight).unsqueeze(1)  # (B, 1, V): all visible tokens
        uncond = self.bias.unsqueeze(0) + context
        cond = uncond + conditioning["text"].unsqueeze(1)
        return cond, (uncond if with_uncond else None)

    def check_perturbed_attention(self, layers) -> None:
        """Any layer list: the tiny model has one attention, which every layer index stands for."""

    @contextlib.contextmanager
    def perturbed_attention(self, layers):
        self._identity_attention = True
        try:
            yield
        finally:
            self._identity_attention = False

    def decode(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        grey = tokens.float().reshape(-1, 1, *grid) / (self.codebook_size - 1)
        return grey.expand(-1, 3, -1, -1)


def tiny_model(steps: int) -> tuple[TinyModel, list[str]]:
    """A tiny model whose grid has at least `steps` + 1 tokens (so every step reveals one), and two prompts."""
    side = max(4, math.ceil(math.sqrt(steps + 1)))
    return TinyModel(side), ["a red circle on a blue background", "something purple"]


def culprit(exc: BaseException) -> str:
    """The innermost sampler component on the exception's stack, as "kind 'name' (file:line, in method)"."""
    from samplers.components import Component

    found = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, Component):
            code = frame.f_code
            found = f"{owner.kind} {owner.name!r} ({code.co_filename}:{line}, in {code.co_name})"
    return found


def stand_in_reward(tokens: torch.Tensor, rows) -> torch.Tensor:
    """``(R, N)`` tokens → ``(R,)`` float64, as `samplers.reward.Reward`: the mean token id (meaningless, cheap)."""
    return tokens.double().mean(dim=-1)


def run_variant(variant: SamplerVariant, model, prompts: list[str], steps: int, guidance: float) -> CheckResult:
    started = time.perf_counter()
    variant = checked_variant(variant)
    engine = SamplerEngine(model)
    grid = model.token_grid(None, None)
    conditioning = model.encode(prompts, None)
    # A search loop (best-of-n, SMC) scores candidates with a metric that needs the real model's images;
    # on the tiny model a stand-in reward of the same shape exercises the loop (the metric's name is
    # checked by `resolve_config`).
    reward = stand_in_reward if reward_metric_name(variant) else None
    generation = engine.generate(variant, conditioning, list(CHECK_SEEDS), grid, steps, guidance, device="cpu",
                                 reward=reward)
    tokens = generation.tokens
    if tokens.dtype != torch.long or bool(((tokens < 0) | (tokens >= model.codebook_size)).any()):
        raise ValueError(f"the finished image holds tokens outside the codebook [0, {model.codebook_size})")
    model.decode(tokens, grid)
    return CheckResult(variant.name, int(generation.forward_passes.max()), time.perf_counter() - started)


def check_config(config: BenchConfig, out=None) -> list[CheckResult]:
    """Resolve the whole config and run every variant on the tiny world; raise UserError on any failure."""
    out = out or sys.stdout
    # A sweep (lists of steps, guidance or parameters) expands into one variant per grid point, each run
    # at its own steps and guidance, exactly as the run would build them (bench/sweep.py).
    resolved = resolve_config(config, "cpu")
    variants, points = resolved.variants, resolved.sweep.by_name()
    model, texts = tiny_model(max(p.steps for p in resolved.sweep.points))
    print(f"mgt-bench: --check: {config.source}: config, {len(resolved.prompts)} prompts and {len(config.metrics)} "
          f"metric(s) resolve; running {len(variants)} variant(s) on a tiny random model "
          f"({'×'.join(map(str, model.token_grid()))} tokens), at each variant's steps and guidance", file=out)
    results, failures = [], []
    for name, variant in variants.items():
        try:
            point = points[name]
            result = run_variant(variant, model, texts, int(point.steps), float(point.guidance))
        except UserError as exc:  # the line already names the variant: say it once
            text = str(exc).removeprefix(f"sampler variant {name!r}: ").removesuffix("; nothing of this batch was kept")
            failures.append(f"variants.{name}: {text}")
            continue
        except Exception as exc:  # a plugin may raise anything; name it instead of a traceback
            # an OutputError already names the component that returned the bad value
            where = "" if isinstance(exc, OutputError) else culprit(exc)
            failures.append(f"variants.{name}: {where + ': ' if where else ''}{type(exc).__name__}: {exc}")
            continue
        results.append(result)
        print(f"  ok  {name}: {result.forward_passes} forward passes, {result.seconds:.2f} s", file=out)
    if failures:
        raise UserError(f"--check: {len(failures)} of {len(variants)} variant(s) failed:\n  " + "\n  ".join(failures))
    print(f"mgt-bench: --check: all {len(results)} variant(s) ran; nothing was written", file=out)
    return results
