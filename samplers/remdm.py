"""ReMDM: re-masking committed tokens (Wang et al. 2025, "Remasking Discrete Diffusion Models with
Inference-Time Scaling", arXiv 2503.00307).

In the vanilla sampler a revealed token is final. ReMDM's backward step re-masks each committed token
with probability σ_t, bounded so that the marginals of the forward process are kept:
σ_t ≤ σ_max = min(1, (1 − α_s)/α_t), α the fraction of unmasked positions before (t) and after (s)
the step. For the MGT step we take α from the actual counts: α_t = 1 − m_i/N with m_i masked at the
start of step i, α_s = 1 − mask_len/N with mask_len the schedule's count after it, so
σ_max = min(1, mask_len / (N − m_i)). Strategies (the paper's ReMDM-cap, -rescale, -conf):

- cap:      σ = min(η, σ_max)                                  (ReMDM-cap)
- rescale:  σ = η · σ_max                                      (ReMDM-rescale)
- conf:     σ^(ℓ) = η_conf^(ℓ) · σ_max,  η_conf = softmax over committed ℓ of (−ψ^(ℓ)), ψ the token's
            probability when it was last revealed: less confident tokens are re-masked more (ReMDM-conf)
- loop:     σ = η, only while the reveal schedule `remdm-loop` holds α at α_on (ReMDM-loop; see
            `RemdmLoopReveal`): the masked count stays put, and the r re-opened tokens are replaced by
            r newly revealed ones, so the step "loops" over the same noise level

η of the official scripts (kuleshov-group/remdm, scripts/remdm-*.sh, 1024 steps on OpenWebText):
cap 0.008, rescale 0.015, loop 0.02 (t_on 0.55, t_off 0.05, α_on 0.9); conf has no η. Those are the
`remdm-cap`, `remdm-rescale` and `remdm-loop` presets, which leave out the scripts' nucleus draw
(p = 0.9) so that they differ from vanilla by the re-masking alone. The component's default η = 0.02 is the loop
script's value; for cap and rescale it is *not* an official setting.

Re-masking is on only for steps with start ≤ i/T < stop (the paper's t_on/t_off switch, in step
fractions). The total masked after the step stays at the schedule's mask_len: the r re-opened tokens
take r of its slots, and the masked positions keep the remaining mask_len − r (lowest confidence), so
the schedule's pace is kept. If more than mask_len tokens are drawn for re-masking, those with the
smallest uniform draws are kept.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch

from . import randomness
from .components import ConfigError, RemaskPolicy, RevealSchedule, clip_mask_len, register_component, require
from .remasking import lowest_confidence

STRATEGIES = ("cap", "rescale", "conf", "loop")


def sigma_max(masked_before: torch.Tensor, mask_len: torch.Tensor, seq_len: int) -> torch.Tensor:
    """min(1, (1 − α_s)/α_t) with α_t = 1 − m/N, α_s = 1 − mask_len/N; 0 where nothing is committed yet."""
    committed = (seq_len - masked_before).double()
    ratio = torch.where(committed > 0, mask_len.double() / committed.clamp(min=1), torch.zeros_like(committed))
    return ratio.clamp(max=1.0)


@register_component("remask", "remdm")
class ReMDM(RemaskPolicy):
    """Re-mask committed tokens with probability σ_t (ReMDM cap / rescale / conf; arXiv 2503.00307)."""

    strategy: str = "cap"
    eta: float = 0.02
    start: float = 0.0
    stop: float = 1.0

    def validate(self) -> None:
        require(self.strategy in STRATEGIES, self.kind, self.name,
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        require(0 <= self.eta <= 1, self.kind, self.name, f"eta must be in [0, 1], got {self.eta}")
        require(0 <= self.start < self.stop <= 1, self.kind, self.name,
                f"need 0 <= start < stop <= 1 (the on/off interval in step fractions), got {self.start}, {self.stop}")

    def check_composition(self, variant) -> None:
        holds = isinstance(variant.reveal_schedule, RemdmLoopReveal)
        if self.strategy == "loop":
            if not holds:
                raise ConfigError("remask 'remdm' strategy 'loop' re-masks only while α is held at α_on: use it with "
                                  "reveal_schedule 'remdm-loop' (or the 'remdm-loop' preset)")
            if (self.start, self.stop) != (0.0, 1.0):
                raise ConfigError("remask 'remdm' strategy 'loop' takes its interval from reveal_schedule 'remdm-loop' "
                                  "(t_on, t_off); leave start and stop at 0 and 1")
            self._loop_schedule = variant.reveal_schedule
        if variant.loop.name == "zigzag":
            raise ConfigError("remask 'remdm' with loop 'zigzag': both re-open committed tokens, and zig-zag sizes its "
                              "inversion from the tokens the step revealed, which ReMDM changes. Use one of them.")

    def active(self, ctx) -> bool:
        if self.strategy == "loop":
            schedule = getattr(self, "_loop_schedule", None)
            if schedule is None:
                raise ConfigError("remask 'remdm' strategy 'loop' needs reveal_schedule 'remdm-loop'; build the "
                                  "variant with build_variant")
            return self.eta > 0 and schedule.phase(ctx.step, ctx.total_steps) == "hold"
        fraction = ctx.step / ctx.total_steps
        return self.start <= fraction < self.stop and (self.strategy == "conf" or self.eta > 0)

    def sigma(self, ctx, mask_len: torch.Tensor) -> torch.Tensor:
        """σ per row ``(B, 1)`` (cap, rescale) or per position ``(B, N)`` (conf)."""
        unknown = ctx.unknown
        s_max = sigma_max(unknown.sum(dim=-1, keepdim=True), mask_len, ctx.seq_len)
        if self.strategy == "cap":
            return s_max.clamp(max=self.eta)
        if self.strategy == "rescale":
            return self.eta * s_max
        if self.strategy == "loop":
            # The reference's loop phase uses σ = η with no σ_max bound: α is held, not moved.
            return torch.full_like(s_max, self.eta)
        psi = ctx.state(self).get("psi")
        if psi is None:
            return torch.zeros(unknown.shape, dtype=torch.float64, device=unknown.device)
        logits = torch.where(unknown, torch.full_like(psi, -torch.inf), -psi)
        weights = torch.where(unknown.all(dim=-1, keepdim=True), torch.zeros_like(psi), logits.softmax(dim=-1))
        return weights * s_max

    def select(self, confidence, mask_len, ctx):
        unknown = ctx.unknown
        reopen = torch.zeros_like(unknown)
        if self.active(ctx):
            # The draw is made only when re-masking is on, so eta = 0 or an empty interval is the vanilla step.
            u = randomness.uniform(ctx.generators, (ctx.seq_len,), ctx.device, torch.float64)
            reopen = ~unknown & (u < self.sigma(ctx, mask_len))
            excess = reopen.sum(dim=-1, keepdim=True) - mask_len
            if bool((excess > 0).any()):
                reopen = lowest_confidence(torch.where(reopen, u, torch.ones_like(u)), reopen, mask_len)
        keep_masked = lowest_confidence(confidence, unknown, mask_len - reopen.sum(dim=-1, keepdim=True))
        remask = keep_masked | reopen
        self._remember_confidence(ctx, remask)
        return remask

    def _remember_confidence(self, ctx, remask: torch.Tensor) -> None:
        """ψ = p(token) at the step a position is revealed (the conf strategy's score)."""
        if self.strategy != "conf":
            return
        state = ctx.state(self)
        psi = state.get("psi")
        if psi is None:
            psi = torch.full(ctx.unknown.shape, torch.inf, dtype=torch.float64, device=ctx.device)
        revealed = ctx.unknown & ~remask
        chosen = torch.gather(ctx.probs, -1, ctx.sampled.unsqueeze(-1)).squeeze(-1).double()
        state["psi"] = torch.where(revealed, chosen, torch.where(remask, torch.inf, psi))


@register_component("reveal_schedule", "remdm-loop")
class RemdmLoopReveal(RevealSchedule):
    """ReMDM-loop's α schedule: rise to α_on, hold it inside [t_off, t_on] while remdm 'loop' re-masks, then finish (arXiv 2503.00307).

    The official sampler (kuleshov-group/remdm, `diffusion.py`, sampler "remdm-loop") runs time t from
    1 to 0; with t_i = 1 − i/T at the start of step i (the unmasked fraction α = 1 − masked/N):

    - t > t_on   (i/T < 1 − t_on):   α(t) = (1 − t)·α_on/(1 − t_on), MDLM steps (no re-masking);
    - t_off < t ≤ t_on:              α held at α_on; ReMDM with σ = η (strategy 'loop');
    - t ≤ t_off  (i/T ≥ 1 − t_off):   α(t) = 1 − t·(1 − α_on)/t_off, MDLM steps to the end.

    After step i the count floor(N·(1 − α_s)) stays masked, α_s = α(t_i − 1/T); times and parameters
    are compared and combined as exact fractions of their decimal values (t = 1 − i/T exactly), so a
    boundary such as t = 0.05 at i = 19 of 20 falls where the decimal says. The reference's time grid
    ends at 1e-5 instead of 0, which moves its phase boundaries by less than one step. The first phase is
    capped at α_on (the reference's last rising step can overshoot α_on by up to α_on/(T(1 − t_on))),
    so that the hold level is the one the phase reaches. While α is held the count stays at the
    current masked count (no forced reveal), so a step that re-opens r tokens reveals r others;
    outside the hold the vanilla clip [1, masked − 1] applies. Defaults: the official script's
    t_on = 0.55, t_off = 0.05, α_on = 0.9.
    """

    alpha_on: float = 0.9
    t_on: float = 0.55
    t_off: float = 0.05

    def validate(self) -> None:
        require(0 < self.alpha_on < 1, self.kind, self.name, f"alpha_on must be in (0, 1), got {self.alpha_on}")
        require(0 < self.t_off < self.t_on < 1, self.kind, self.name,
                f"need 0 < t_off < t_on < 1 (times run from 1 to 0), got t_on={self.t_on}, t_off={self.t_off}")

    def phase(self, step: int, total_steps: int) -> str:
        t = 1 - Fraction(step, total_steps)
        if t > _decimal(self.t_on):
            return "rise"
        return "finish" if t <= _decimal(self.t_off) else "hold"

    def masked_ratio(self, step: int, total_steps: int) -> Fraction:
        """1 − α_s after step i, as an exact fraction (so that floor(N·ratio) has no rounding surprises)."""
        s = 1 - Fraction(step + 1, total_steps)
        alpha_on, t_on, t_off = _decimal(self.alpha_on), _decimal(self.t_on), _decimal(self.t_off)
        phase = self.phase(step, total_steps)
        if phase == "rise":
            return 1 - min(alpha_on, (1 - s) * alpha_on / (1 - t_on))
        if phase == "hold":
            return 1 - alpha_on
        return max(Fraction(0), s) * (1 - alpha_on) / t_off

    def mask_len(self, ctx):
        count = torch.full((ctx.unknown.shape[0], 1), math.floor(ctx.seq_len * self.masked_ratio(ctx.step, ctx.total_steps)),
                           device=ctx.device)
        if self.phase(ctx.step, ctx.total_steps) == "hold":
            return torch.minimum(count, ctx.unknown.sum(dim=-1, keepdim=True)).long()
        return clip_mask_len(count, ctx.unknown)

    def fused(self):
        return self  # the count reads the step and the mask only


def _decimal(value: float) -> Fraction:
    """The exact fraction of a parameter's decimal spelling (0.05 → 1/20, not the nearest double)."""
    return Fraction(repr(float(value)))
