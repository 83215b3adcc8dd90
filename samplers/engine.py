"""The MaskGIT-family sampling loop with pluggable decisions (docs/design.md, "The sampler: one loop,
pluggable decisions").

One step (Chang et al. 2022, MaskGIT §3.2; Meissonic's pipeline and scheduler, whose step is diffusers'
AmusedScheduler.step: one forward of the CFG batch [uncond; cond] at timestep T − 1 − i, CFG on the raw
logits when w > 1, a softmax at temperature 1, a multinomial draw kept at masked positions, and on every
step but the last floor(N·cos(π(i+1)/2T)), clipped to [1, masked − 1], positions re-masked: those with the
lowest Gumbel-noised log p(token)):

1. one batched forward → conditional and unconditional logits;
2. guidance combines them (CFG schedule);
3. logits processors (e.g. noise regularization);
4. softmax, in float32;
5. probability correctors (e.g. differential sampling);
6. the token sampler draws a token for every position; committed tokens are kept;
7. on the last step, everything is revealed; otherwise the reveal schedule gives how many stay masked,
   the confidence scores positions, and the re-mask policy picks which.

The loop component drives the steps (T plain steps, or zig-zag's extra passes). State lives in a
`Generation` (one batch of images); components keep per-generation state through `StepContext.state`.
Every transformer call is counted, per image, by `Generation.count_forward_pass`; what a variant
declares beforehand is `SamplerVariant.forward_passes`, and the two agree for every fixed schedule.

Every step is watched for non-finite values, cheaply (samplers/output_checks.py, `StepWatch`): the
confidence at masked positions and the probability of each sampled token, two ``(B, N)`` reads that a
NaN anywhere upstream reaches. A generation with one is generated again with every output checked, and
fails with a `NonFiniteOutput` (exit code 2) naming the first component, or the model, that produced it.
Each call also records its rows by kind (conditional, unconditional, perturbed) and, when the engine has
a meter (samplers/cost.py), its FLOPs, per image: `Generation.rows` and `Generation.flops`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from mgt_common.errors import UserError

from .components import Guidance
from .cost import CallKey, ForwardMeter, ROW_KINDS
from .fast_step import fast_step
from .output_checks import CheckedModel, NonFiniteOutput, OutputError, StepWatch, checked_variant
from .protocol import Conditioning, MaskedTokenModel
from .randomness import make_generator
from .variant import SamplerVariant

#: Called after every step with (generation, step index); e.g. to record a decoding trajectory.
StepCallback = Callable[["Generation", int], None]


@dataclass
class Generation:
    """The state of one batch of images being generated with one variant."""

    model: MaskedTokenModel
    variant: SamplerVariant
    conditioning: Conditioning
    generators: list[torch.Generator]
    tokens: torch.Tensor
    total_steps: int
    guidance_scale: float
    #: transformer calls that each image took part in.
    forward_passes: torch.Tensor
    #: masked-token count per image after each step (the decoding trajectory).
    trajectory: list[list[int]] = field(default_factory=list)
    component_state: dict[int, dict[str, Any]] = field(default_factory=dict)
    callback: StepCallback | None = None
    #: (rows, columns) of the token grid, for components with a spatial order (e.g. Halton).
    grid: tuple[int, int] | None = None
    #: what a search loop steers by (samplers/reward.py); None unless the harness provides one.
    reward: Any = None
    #: reward (scorer) evaluations that each image cost, next to `forward_passes`.
    scorer_calls: torch.Tensor | None = None
    #: the last step's full prediction x̂ (committed tokens kept, every masked position drawn).
    prediction: torch.Tensor | None = None
    #: row evaluations per image by kind, ``(B, 3)`` int64, columns `samplers.cost.ROW_KINDS`.
    rows: torch.Tensor | None = None
    #: transformer FLOPs per image (float64): the rows it took part in × each call's FLOPs per row; NaN
    #: once one of its calls was not measured (no meter, or a plugin that counts a call of its own).
    flops: torch.Tensor | None = None
    #: calls made so far at each step (a call's `CallKey.ordinal`).
    step_calls: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        batch = self.tokens.shape[0]
        if self.rows is None:
            self.rows = torch.zeros(batch, len(ROW_KINDS), dtype=torch.long)
        if self.flops is None:
            self.flops = torch.zeros(batch, dtype=torch.float64)

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[1]

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    def masked(self) -> torch.Tensor:
        return self.tokens == self.model.mask_token_id

    def count_forward_pass(self, images: torch.Tensor, unconditional: bool = False, perturbed: bool = False,
                           flops_per_row: float | None = None) -> None:
        """One transformer call that the images where `images` ``(B,)`` is True took part in: the one place
        where `forward_passes` grows (the engine's forwards, the fused step's, a component's extra ones).

        Each such image evaluated one conditional row (or, with `perturbed`, one row of the perturbed
        network) and, with `unconditional`, one unconditional row too; `flops_per_row` (None: not
        measured) times those rows is added to its FLOPs.
        """
        taking = images.cpu().long()
        self.forward_passes += taking
        self.rows[:, ROW_KINDS.index("perturbed" if perturbed else "conditional")] += taking
        if unconditional:
            self.rows[:, ROW_KINDS.index("unconditional")] += taking
        per_image = (2 if unconditional else 1) * (math.nan if flops_per_row is None else float(flops_per_row))
        # only the images that took part pay (an image left out of a call keeps its FLOPs, even when unmeasured)
        self.flops += torch.where(taking > 0, taking.double() * per_image, torch.zeros((), dtype=torch.float64))

    def absorb_costs(self, child: "Generation", per_image: int) -> None:
        """Add the costs of `child`, whose rows are `per_image` consecutive rows per image of this batch (a
        search loop's particles, samplers/search.py): passes, rows by kind and FLOPs, summed per image."""
        batch = self.batch_size
        self.forward_passes += child.forward_passes.view(batch, per_image).sum(dim=-1)
        self.rows += child.rows.view(batch, per_image, -1).sum(dim=1)
        self.flops += child.flops.view(batch, per_image).sum(dim=-1)

    def call_key(self, step: int, unconditional: bool, perturbed: bool) -> CallKey:
        """The key of the next transformer call at `step` (advances the step's call count)."""
        ordinal = self.step_calls.get(step, 0)
        self.step_calls[step] = ordinal + 1
        return CallKey(int(step), ordinal, bool(unconditional), bool(perturbed))


class StepContext:
    """What a component sees at step i: the step, the batch's random streams, its own state."""

    def __init__(self, generation: Generation, step: int, unknown: torch.Tensor):
        self.generation = generation
        self.step = step
        self.total_steps = generation.total_steps
        self.guidance_scale = generation.guidance_scale
        self.generators = generation.generators
        self.device = generation.device
        self.seq_len = generation.seq_len
        self.tokens = generation.tokens
        #: True where the position was masked at the start of this step.
        self.unknown = unknown
        self.mask_token_id = generation.model.mask_token_id
        self.grid = generation.grid
        #: Filled in by `SamplerEngine.step` as the step proceeds, for components that need them (an
        #: adaptive reveal count reads the probabilities and the confidence; ReMDM the sampled tokens).
        self.probs: torch.Tensor | None = None
        self.sampled: torch.Tensor | None = None
        self.confidence: torch.Tensor | None = None

    @property
    def is_last(self) -> bool:
        return self.step == self.total_steps - 1

    def __getattr__(self, name: str):
        # Only reached for a name the context lacks (e.g. ``ctx.steps`` for ``ctx.total_steps``): name the
        # nearest attribute instead of a bare AttributeError deep in a plugin.
        if name.startswith("__"):
            raise AttributeError(name)
        import difflib

        known = sorted([*vars(self), "is_last", "state"])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean ctx.{close[0]}?" if close else ""
        raise AttributeError(f"StepContext has no attribute {name!r}.{hint} It holds: {', '.join(known)} "
                             "(see docs/plugins.md)")

    def state(self, component) -> dict[str, Any]:
        """Per-generation scratch space of one component (never shared across batches or runs)."""
        return self.generation.component_state.setdefault(id(component), {})


def softmax_float32(logits: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None,
                    fresh: bool) -> torch.Tensor:
    """softmax(logits) in float32, written over `logits` when nothing else can hold that tensor.

    At Meissonic's size a logits tensor is 128 MiB per image; overwriting the guided logits (which only
    the engine holds once guidance has made them) saves allocating and faulting in another one. The
    kernel is the same, so the probabilities are bit-identical. Not done when `logits` may be the
    model's own output (no guidance: it *is* ``cond``) or a logits processor's tensor (`fresh` False),
    which a component might keep.
    """
    logits = logits.float()
    owned = fresh and logits.is_contiguous() and all(
        other is None or other.untyped_storage().data_ptr() != logits.untyped_storage().data_ptr()
        for other in (cond, uncond))
    if owned:
        return torch.softmax(logits, dim=-1, out=logits)
    return logits.softmax(dim=-1)


#: entries per chunk of `guided_softmax_float32` on the CPU: 2^18, 1 MiB of float32, so that a chunk's
#: guidance and softmax stay in the CPU's cache between their passes.
_GUIDED_CHUNK_ENTRIES = 1 << 18


def guided_softmax_float32(cond: torch.Tensor, uncond: torch.Tensor | None, w: float) -> torch.Tensor:
    """softmax(ℓ_u + w (ℓ_c − ℓ_u)) in float32 (softmax(ℓ_c) when w = 1 or there is no ℓ_u), built (on the
    CPU one chunk of positions at a time) into the one float32 tensor it returns.

    Bit-identical to `Guidance.combine` followed by `softmax_float32`: the guidance is the same three
    roundings in the logits' dtype, the cast to float32 is exact, and every softmax row is the same
    kernel on the same numbers. Only the temporaries differ: neither the guided logits nor (for half
    precision logits) their float32 copy ever exist at full size, and a chunk is read from cache
    rather than memory by the passes after its first. On the CPU at Meissonic's shape this takes the
    guidance and softmax of bf16 logits from 195 to 153 ms; for float32 logits (150 → 140 ms) the first
    touch of the one output tensor's pages is most of what is left.
    """
    guided = uncond is not None and w != 1.0
    shape = cond.shape
    out = torch.empty(shape, dtype=torch.float32, device=cond.device)
    vocab = shape[-1]
    flat_out, flat_cond = out.view(-1, vocab), cond.reshape(-1, vocab)
    flat_uncond = uncond.reshape(-1, vocab) if guided else None
    rows = flat_out.shape[0]
    # chunks on the CPU (cache); one piece elsewhere: on a GPU, 128 chunks a step would be 640 kernel
    # launches where the whole tensor takes 4, and its memory bandwidth does not need the cache
    step = max(1, _GUIDED_CHUNK_ENTRIES // vocab) if cond.device.type == "cpu" else rows
    scratch = None if cond.dtype == torch.float32 else torch.empty((min(step, rows), vocab), dtype=cond.dtype,
                                                                   device=cond.device)
    for start in range(0, rows, step):
        target = flat_out[start:start + step]
        if guided:
            combined = target if scratch is None else scratch[: target.shape[0]]
            torch.sub(flat_cond[start:start + step], flat_uncond[start:start + step], out=combined)
            combined.mul_(w).add_(flat_uncond[start:start + step])
            if combined is not target:
                target.copy_(combined)
        else:
            target.copy_(flat_cond[start:start + step])
        torch.softmax(target, dim=-1, out=target)
    return out


def undiagnosed(variant: SamplerVariant, step: int, what: str, total_steps: int) -> NonFiniteOutput:
    """The error for a flagged step whose re-run with every output checked found no culprit (it did not
    come back: a component that is not deterministic)."""
    source = (f"confidence {variant.confidence.name!r}" if what == "confidence"
              else "the model or a component before the token sampler")
    return NonFiniteOutput(f"sampler variant {variant.name!r}: NaN {what} at step {step} of {total_steps}, from "
                           f"{source}; nothing of this batch was kept")


class SamplerEngine:
    """Runs a `SamplerVariant` against a `MaskedTokenModel`; `meter` measures each transformer call's FLOPs
    (samplers/cost.py; the default measures nothing)."""

    def __init__(self, model: MaskedTokenModel, meter: ForwardMeter | None = None):
        self.model = model
        #: the cheap per-step checks of the generation in progress (samplers/output_checks.py); None outside one
        self.watch: StepWatch | None = None
        #: True while a batch is generated again to find the component behind a non-finite value
        self.diagnosing = False
        self.meter = meter if meter is not None else ForwardMeter()

    def generate(
        self,
        variant: SamplerVariant,
        conditioning: Conditioning,
        seeds: Sequence[int],
        grid: tuple[int, int],
        total_steps: int,
        guidance_scale: float,
        device: torch.device | str = "cpu",
        callback: StepCallback | None = None,
        reward=None,
    ) -> Generation:
        """Generate one image per seed (row of `conditioning`); returns the finished `Generation`."""
        device = torch.device(device)
        batch = len(seeds)
        seq_len = grid[0] * grid[1]
        generation = Generation(
            model=self.model,
            variant=variant,
            conditioning=conditioning,
            generators=[make_generator(seed, device) for seed in seeds],
            tokens=torch.full((batch, seq_len), self.model.mask_token_id, dtype=torch.long, device=device),
            total_steps=total_steps,
            guidance_scale=guidance_scale,
            forward_passes=torch.zeros(batch, dtype=torch.long),
            callback=callback,
            grid=(int(grid[0]), int(grid[1])),
            reward=reward,
            scorer_calls=torch.zeros(batch, dtype=torch.long),
        )
        watch, self.watch = self.watch, StepWatch()
        try:
            variant.loop.run(self, generation)
            flagged = self.watch.first()
        except NonFiniteOutput as exc:  # a component's own check (a reveal schedule's NaN fraction)
            if self.diagnosing:
                raise
            raise NonFiniteOutput(f"sampler variant {variant.name!r}: {exc}; nothing of this batch was kept") from None
        except (RuntimeError, ValueError) as exc:
            # torch.multinomial refuses NaN probabilities: find the component that made them
            text = str(exc).lower()
            if isinstance(exc, (UserError, OutputError)) or self.diagnosing or not ("nan" in text or "inf" in text):
                raise
            diagnosis = self.diagnose(variant, conditioning, seeds, grid, total_steps, guidance_scale, device, reward)
            if diagnosis is None:
                raise
            raise diagnosis from exc
        finally:
            self.watch = watch
        if flagged is not None:
            diagnosis = None if self.diagnosing else self.diagnose(variant, conditioning, seeds, grid, total_steps,
                                                                   guidance_scale, device, reward)
            raise diagnosis or undiagnosed(variant, *flagged, total_steps)
        if bool(generation.masked().any()):
            raise RuntimeError(f"sampler variant {variant.name!r} ended with masked tokens left; its loop or "
                               "reveal schedule must reveal every position by the last step")
        return generation

    def diagnose(self, variant: SamplerVariant, conditioning: Conditioning, seeds: Sequence[int], grid: tuple[int, int],
                 total_steps: int, guidance_scale: float, device, reward) -> NonFiniteOutput | None:
        """Generate the batch again with every component's output and the model's logits checked
        (samplers/output_checks.py), and return the error naming the first one that was not finite.

        Same seeds, same steps: the first non-finite value comes back at the same step. Only a batch
        whose cheap checks failed pays for this.
        """
        engine = SamplerEngine(CheckedModel(self.model))
        engine.diagnosing = True
        try:
            engine.generate(checked_variant(variant), conditioning, seeds, grid, total_steps, guidance_scale,
                            device=device, reward=reward)
        except NonFiniteOutput as exc:
            return NonFiniteOutput(f"sampler variant {variant.name!r}: {exc}; nothing of this batch was kept")
        except Exception:  # noqa: BLE001 - the original failure is reported instead
            return None
        return None

    # -- the pieces a loop composes -------------------------------------------------------------

    def model_logits(self, generation: Generation, step: int, tokens: torch.Tensor | None = None,
                     with_uncond: bool = True, images: torch.Tensor | None = None, perturbed: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward pass for the whole batch, counted for `images` ``(B,)`` bool: by default every image
        still being generated (a masked position in `tokens`). ``perturbed``: the call runs inside the
        model's perturbed attention (PAG), so its rows are counted as perturbed ones."""
        tokens = generation.tokens if tokens is None else tokens
        return self.counted_forward(
            generation, step, tokens, with_uncond, images, perturbed,
            lambda: self.model.logits(tokens, generation.conditioning, step, generation.total_steps, with_uncond))

    def counted_forward(self, generation: Generation, step: int, tokens: torch.Tensor, with_uncond: bool,
                        images: torch.Tensor | None, perturbed: bool, forward):
        """Run `forward()` (one transformer call on `tokens`) under the meter, then count it per image."""
        key = generation.call_key(step, with_uncond, perturbed)
        with self.meter.measure(key, tokens.shape[0] * (2 if with_uncond else 1)) as reading:
            cond, uncond = forward()
        generation.count_forward_pass((tokens == self.model.mask_token_id).any(dim=-1) if images is None else images,
                                      unconditional=uncond is not None, perturbed=perturbed,
                                      flops_per_row=reading.flops_per_row)
        return cond, uncond

    def guided_probs(self, generation: Generation, ctx: StepContext, guidance=None,
                     tokens: torch.Tensor | None = None, processors: bool = True) -> torch.Tensor:
        """Steps 1–5: forward, guidance, logits processors, softmax (float32), probability correctors.

        ``processors=False`` skips the variant's logits processors and probability correctors (an
        auxiliary pass such as zig-zag's inversion, which the reference runs without them).
        """
        variant = generation.variant
        guidance = variant.guidance if guidance is None else guidance
        cond, uncond = self.model_logits(generation, ctx.step, tokens, with_uncond=guidance.needs_uncond(ctx))
        # for guidance that needs another forward of the same tokens (PAG, samplers/pag.py)
        ctx.engine, ctx.forward_tokens = self, (generation.tokens if tokens is None else tokens)
        float32_after_model = self.model.post_model_dtype == torch.float32
        if float32_after_model and not (processors and variant.logits_processors) \
                and type(guidance).combine is Guidance.combine and cond.dim() >= 2:
            # the standard CFG line straight into the softmax, chunk by chunk: the same numbers, less memory
            probs = guided_softmax_float32(cond, uncond, guidance.scale(ctx))
            for corrector in (variant.probability_correctors if processors else ()):
                probs = corrector(probs, ctx)
            return probs
        logits = guidance.combine(cond, uncond, ctx)
        for processor in (variant.logits_processors if processors else ()):
            logits = processor(logits, ctx)
        processed = bool(processors and variant.logits_processors)
        if not float32_after_model:
            probs = logits.softmax(dim=-1)  # the model dtype, as the official half-precision scripts do
        else:
            probs = softmax_float32(logits, cond, uncond, fresh=not processed or logits.dtype != torch.float32)
        for corrector in (variant.probability_correctors if processors else ()):
            probs = corrector(probs, ctx)
        return probs

    def step(self, generation: Generation, step: int, guidance=None, notify: bool = True) -> None:
        """One denoising step (all seven parts), updating `generation.tokens` in place.

        ``notify=False`` leaves out `after_step` (trajectory and callback), for a loop whose step is
        several engine steps (zig-zag records once, after its re-denoise).
        """
        variant = generation.variant
        unknown = generation.masked()
        ctx = StepContext(generation, step, unknown)
        if variant.mode == "fast":  # one fused pass over the logits (samplers/fast_step.py)
            return fast_step(self, generation, ctx, guidance, notify)
        probs = self.guided_probs(generation, ctx, guidance)
        sampled = torch.where(unknown, variant.token_sampler.sample(probs, ctx), generation.tokens)
        if self.watch is not None:
            self.watch.sampled(step, probs, sampled, unknown)
        ctx.probs, ctx.sampled = probs, sampled
        self.commit(generation, ctx, sampled, lambda: variant.confidence.score(probs, sampled, ctx), step, notify)

    def commit(self, generation: Generation, ctx: "StepContext", sampled: torch.Tensor,
               confidence: Callable[[], torch.Tensor], step: int, notify: bool) -> None:
        """The step's last parts, shared by the exact step and the fused one (samplers/fast_step.py):
        keep the prediction, then reveal everything on the last step, or score the positions with
        `confidence()` and re-mask the ones the reveal schedule and the re-mask policy pick."""
        variant = generation.variant
        generation.prediction = sampled
        if ctx.is_last:
            generation.tokens = sampled
        else:
            # The confidence comes before the reveal count so that an adaptive count can read it; reveal
            # schedules draw no random numbers, so the random stream is consumed as in the reference.
            ctx.confidence = confidence()
            if self.watch is not None:  # a NaN confidence would reveal every position at once
                self.watch.confidence(step, ctx.confidence, ctx.unknown)
            mask_len = variant.reveal_schedule.mask_len(ctx)
            remask = variant.remask.select(ctx.confidence, mask_len, ctx)
            generation.tokens = torch.where(remask, self.model.mask_token_id, sampled)
        if notify:
            self.after_step(generation, step)

    def after_step(self, generation: Generation, step: int) -> None:
        generation.trajectory.append(generation.masked().sum(dim=-1).tolist())
        if generation.callback is not None:
            generation.callback(generation, step)
