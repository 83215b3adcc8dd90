"""Every built-in sampler variant ("preset") in one place: the vanilla sampler, one preset per design choice of
the catalogue (docs/catalogue.md), and the paper's combinations. Each is "vanilla with one change" unless its
name says otherwise, so that a comparison with "vanilla" isolates that change. Use them by name in a config,
``samplers = ["vanilla", "noise-reg"]``, or as the `base` of a variant table.

A preset is a spec in the format of a ``[variants.NAME]`` config table (samplers/variant.py resolves and
builds it). Plugins add their own with `register_variant`.
"""
from __future__ import annotations

from typing import Any, Mapping

from mgt_common.registry import Registry

#: Meissonic's vanilla sampler, which every other variant starts from unless its `base` says otherwise.
VANILLA_SPEC: dict[str, Any] = {
    "description": "Meissonic's vanilla sampler (= diffusers AmusedScheduler): constant CFG, cosine reveal, "
                   "multinomial tokens, Gumbel confidence with temperature 2 → 0",
    "guidance": "constant",
    "logits_processors": [],
    "probability_correctors": [],
    "token_sampler": "multinomial",
    "confidence": {"name": "gumbel", "start": 2.0, "end": 0.0},
    "reveal_schedule": "cosine",
    "remask": "lowest-confidence",
    "loop": "standard",
}

#: Built-in and plugin-registered named variants: name → spec (same format as a config table).
VARIANT_PRESETS: Registry[dict] = Registry("sampler variant", "built-in sampler variants")


def register_variant(name: str, spec: Mapping[str, Any]) -> None:
    """Register a named variant spec (plugins call this too, as ``samplers.variant.register_variant``)."""
    VARIANT_PRESETS.register(name, dict(spec))


register_variant("vanilla", VANILLA_SPEC)

_PRESETS: dict[str, dict] = {
    "cfg-linear": {"guidance": {"name": "linear", "start": 1.0},
                   "description": "CFG rising linearly from 1 to the run's guidance scale"},
    "linear-reveal": {"reveal_schedule": "linear", "description": "the same number of tokens revealed at every step"},
    "random-order": {"confidence": "random", "description": "positions revealed in uniformly random order"},
    "no-gumbel": {"confidence": {"name": "gumbel", "start": 0.0, "end": 0.0},
                  "description": "pure confidence order: Gumbel temperature 0 throughout"},
    # -- the paper (arXiv 2411.10781) and the combinations its code release shows in its README gallery:
    #    noise regularization, differential sampling and zig-zag alone, zig-zag + each of the other two --
    "noise-reg": {"logits_processors": ["noise-regularization"],
                  "description": "noise regularization: Gaussian noise 2·|cos(π t/(T−1))| on the guided logits"},
    "noise-reg-constant": {"logits_processors": [{"name": "noise-regularization", "schedule": "constant", "scale": 1.0}],
                           "description": "noise regularization with constant σ = 1"},
    "noise-reg-linear": {"logits_processors": [{"name": "noise-regularization", "schedule": "linear"}],
                         "description": "noise regularization with σ falling linearly from 2 to 0"},
    "differential": {"probability_correctors": ["differential"],
                     "description": "differential sampling: lowest-KL 75% of masked tokens sample from (p_t − p_prev)+"},
    "differential-reference": {"probability_correctors": [{"name": "differential", "scope": "all", "kl": "reference"}],
                               "description": "differential sampling exactly as the reference: all N positions, its NaN/∞ KL order"},
    "differential-all": {"probability_correctors": [{"name": "differential", "scope": "all"}],
                         "description": "differential sampling ranked over all N positions, as the reference code"},
    "zigzag": {"loop": "zigzag",
               "description": "masked Z-sampling: denoise, re-mask under unconditional inversion, denoise again"},
    "zigzag+noise-reg": {"base": "zigzag", "logits_processors": ["noise-regularization"],
                         "description": "masked Z-sampling with noise regularization"},
    "zigzag+differential": {"base": "zigzag", "probability_correctors": ["differential"],
                            "description": "masked Z-sampling with differential sampling"},
    # -- reveal schedules (MaskGIT §3.3, open-muse) ---------------------------------------------------
    "reveal-square": {"reveal_schedule": "square", "description": "mask ratio 1 − r²"},
    "reveal-cubic": {"reveal_schedule": "cubic", "description": "mask ratio 1 − r³"},
    "reveal-root": {"reveal_schedule": "root", "description": "mask ratio 1 − √r"},
    "reveal-arccos": {"reveal_schedule": "arccos", "description": "mask ratio arccos(r)/(π/2)"},
    "reveal-exponential": {"reveal_schedule": "exponential", "description": "mask ratio 1 − N^(r−1)"},
    "reveal-logarithmic": {"reveal_schedule": "logarithmic", "description": "mask ratio −log2 r / log2 N"},
    "reveal-sigmoid": {"reveal_schedule": "sigmoid", "description": "open-muse's sigmoid mask ratio"},
    # -- which positions to reveal ----------------------------------------------------------------------
    "margin": {"confidence": "margin", "description": "reveal by top-1 − top-2 probability margin"},
    "entropy": {"confidence": "entropy", "description": "reveal the lowest-entropy positions first"},
    "halton": {"confidence": "halton", "description": "reveal in 2-D Halton low-discrepancy order (Halton-MaskGIT)"},
    "halton-shifted": {"confidence": {"name": "halton", "shift": True},
                       "description": "Halton order with a random toroidal shift per image"},
    # -- Gumbel (confidence) temperature schedules --------------------------------------------------------
    "gumbel-constant": {"confidence": {"name": "gumbel", "start": 1.0, "schedule": "constant"},
                        "description": "constant Gumbel temperature 1"},
    "gumbel-cosine": {"confidence": {"name": "gumbel", "start": 2.0, "end": 0.0, "schedule": "cosine"},
                      "description": "Gumbel temperature 2 → 0 along a cosine"},
    "gumbel-exponential": {"confidence": {"name": "gumbel", "start": 2.0, "end": 0.01, "schedule": "exponential"},
                           "description": "Gumbel temperature 2 → 0.01 geometrically"},
    "gumbel-maskgit": {"confidence": {"name": "gumbel", "start": 4.5, "schedule": "maskgit"},
                       "description": "MaskGIT's choice temperature 4.5·(1 − (i+1)/T)"},
    # -- token samplers and sampling temperature -----------------------------------------------------------
    "gumbel-max-f64": {"token_sampler": "gumbel-max-f64", "description": "Gumbel-max token draws in float64"},
    "top-k": {"token_sampler": {"name": "top-k", "k": 50}, "description": "top-k sampling, k = 50"},
    "top-p": {"token_sampler": {"name": "top-p", "p": 0.9}, "description": "nucleus sampling, p = 0.9"},
    "greedy": {"token_sampler": "greedy", "description": "argmax tokens (no sampling)"},
    "softmax-temp-0.8": {"token_sampler": {"name": "multinomial", "temperature": 0.8},
                         "description": "tokens drawn at softmax temperature 0.8"},
    "softmax-temp-linear": {"token_sampler": {"name": "multinomial", "temperature": 1.2, "temperature_end": 0.6,
                                              "temperature_schedule": "linear"},
                            "description": "softmax temperature 1.2 → 0.6 linearly"},
    "softmax-temp-cosine": {"token_sampler": {"name": "multinomial", "temperature": 1.2, "temperature_end": 0.6,
                                              "temperature_schedule": "cosine"},
                            "description": "softmax temperature 1.2 → 0.6 along a cosine"},
    # -- CFG schedules ------------------------------------------------------------------------------------
    "cfg-cosine": {"guidance": {"name": "cosine", "start": 1.0},
                   "description": "CFG rising from 1 to the run's scale along a cosine"},
    "cfg-linear-decreasing": {"guidance": "linear-decreasing",
                              "description": "CFG falling linearly from the run's scale to 1"},
    "cfg-power": {"guidance": {"name": "power", "exponent": 2.0},
                  "description": "CFG rising from 1 to the run's scale as (i/(T−1))²"},
    "cfg-interval": {"guidance": {"name": "interval", "start": 0.25, "stop": 0.75},
                     "description": "CFG only in the middle half of the steps"},
    # -- re-masking committed tokens (ReMDM) ---------------------------------------------------------------
    # η (and ReMDM-loop's t_on, t_off, α_on) from the official scripts (kuleshov-group/remdm
    # scripts/remdm-{cap,rescale,loop}.sh, 1024 steps on text). The scripts also draw the tokens with nucleus
    # p = 0.9 (sampling.nucleus_p); these presets keep vanilla's multinomial draw, so that each differs from
    # vanilla by its re-masking alone (add token_sampler = {name = "top-p", p = 0.9} for the scripts' draw).
    "remdm-cap": {"remask": {"name": "remdm", "strategy": "cap", "eta": 0.008},
                  "description": "ReMDM-cap: re-mask committed tokens with σ = min(0.008, σ_max) (the official "
                                 "script's η; its nucleus p = 0.9 not applied)"},
    "remdm-rescale": {"remask": {"name": "remdm", "strategy": "rescale", "eta": 0.015},
                      "description": "ReMDM-rescale: σ = 0.015 · σ_max (the official script's η; its nucleus p = 0.9 "
                                     "not applied)"},
    "remdm-loop": {"reveal_schedule": {"name": "remdm-loop", "alpha_on": 0.9, "t_on": 0.55, "t_off": 0.05},
                   "remask": {"name": "remdm", "strategy": "loop", "eta": 0.02},
                   "description": "ReMDM-loop: α rises to 0.9, is held for t in (0.05, 0.55] re-masking with σ = 0.02, "
                                  "then finishes (the official script's settings; its nucleus p = 0.9 not applied)"},
    "remdm-conf": {"remask": {"name": "remdm", "strategy": "conf"},
                   "description": "ReMDM-conf: σ_max spread over committed tokens by low confidence"},
    # -- re-scoring committed tokens: path planning and a self-critic ----------------------------------------
    # P2 as the authors' p2_sampling (pengzhangzhi/path_planning; its defaults τ = 1, η = 1, κ(t) = t): every
    # position scored by the log-softmax of its Gumbel-perturbed logits at its draw, committed ones × η
    "p2": {"token_sampler": "gumbel-max-scored", "confidence": "draw-score", "reveal_schedule": "linear",
           "remask": {"name": "p2-confidence", "eta": 1.0},
           "description": "P2 as published: Gumbel-max draws scored by their perturbed log-probability at every "
                          "position, committed ones × η = 1 compete for the masked slots, linear schedule"},
    "p2-remask": {"remask": {"name": "p2", "eta": 1.0},
                  "description": "vanilla with P2's re-planning: committed tokens, re-scored by η·log p of their token "
                                 "(noise-free), compete with the vanilla confidence for the masked slots"},
    "self-critic": {"remask": "self-critic",
                    "description": "Token-Critic with the MGT as critic: one extra forward re-scores the completed draw"},
    # -- guidance variants on logits --------------------------------------------------------------------------
    # APG's projection alone (η = 0). The paper's listing also defaults to momentum β = −0.75 and norm
    # threshold r = 2.5, an image-space norm that has no meaning for logits; both stay off here, so that the
    # preset isolates the projection ({name = "apg", momentum = -0.75} adds the listing's momentum).
    "apg": {"guidance": {"name": "apg", "eta": 0.0},
            "description": "APG on logits: the CFG update without its part parallel to the conditional logits "
                           "(η = 0; no momentum, no norm threshold)"},
    "cfg-zero-star": {"guidance": "cfg-zero-star",
                      "description": "CFG-Zero* on logits: CFG around the optimally scaled unconditional logits"},
    # -- Halton-MaskGIT as published ---------------------------------------------------------------------------
    "halton-maskgit": {"confidence": {"name": "halton", "first_index": 1, "roll": True},
                       "reveal_schedule": "halton-maskgit",
                       "description": "the Halton-MaskGIT sampler: Halton order from n = 1 rolled per image, its arccos count"},
    # -- reward-guided search (inference-time scaling) ----------------------------------------------------------
    "best-of-4": {"loop": {"name": "best-of-n", "n": 4, "reward": "world-loglik"},
                  "description": "best of 4 images by the world's exact log-likelihood (4× passes, 4 scorer calls)"},
    # SMC in FK steering's framework (arXiv 2501.06848: difference potential, K = 4 and λ = 10 as its configs),
    # not a transcription of its code: ESS-adaptive systematic resampling at every step but the last, with the
    # log-weights accumulated; its code resamples multinomially at scheduled steps and the last (docs/catalogue.md §14)
    "smc-4": {"loop": {"name": "smc", "particles": 4, "reward": "world-loglik", "strength": 10.0},
              "description": "SMC in FK steering's framework, 4 particles, λ = 10 on the world's log-likelihood "
                             "(systematic resampling when the ESS < K/2, none at the last step)"},
    # -- beyond the paper ------------------------------------------------------------------------------------
    # γ is in nats summed over the tokens revealed together; 16 lets a confident model reveal ~20 tokens
    # a step on the synthetic world (≈ 0.7 nats a token) and finish early; scale it with N × entropy.
    "eb-adaptive": {"reveal_schedule": {"name": "entropy-bounded", "gamma": 16.0},
                    "description": "entropy-bounded adaptive reveal count (EB-sampler, γ = 16 nats), at least cosine"},
    "threshold-parallel": {"reveal_schedule": {"name": "confidence-threshold", "threshold": 0.9},
                           "description": "Fast-dLLM count: reveal every token with p > 0.9, at least cosine (vanilla order)"},
    "fast-dllm": {"reveal_schedule": {"name": "confidence-threshold", "threshold": 0.9},
                  "confidence": {"name": "gumbel", "start": 0.0, "end": 0.0},
                  "description": "Fast-dLLM as published: reveal every token with p > 0.9 by pure confidence, at least cosine"},
    "eb-adaptive-entropy": {"reveal_schedule": {"name": "entropy-bounded", "gamma": 16.0}, "confidence": "entropy",
                            "description": "EB-sampler as published: entropy order and the entropy-bounded count"},
}

for _name, _spec in _PRESETS.items():
    register_variant(_name, {"base": "vanilla", **_spec})

#: The paper's choices and combinations, for configs that want "the catalogue's core".
PAPER_PRESETS = ("vanilla", "noise-reg", "differential", "zigzag", "zigzag+noise-reg", "zigzag+differential")

# -- model-side choices (the model_transform kind, samplers/model_transforms.py; implementations in
#    bench/models/transforms; docs/catalogue.md, "Model-side choices") --
# Network backends only (meissonic, amused, and Meissonic-structured networks); the exact world refuses them.
_MODEL_SIDE_PRESETS: dict[str, dict] = {
    "tome": {"model_transforms": [{"name": "tome", "ratio": 0.25}],
             "description": "ToMe-MGT: 25 % of the image tokens merged in the MM blocks (arXiv 2411.10781 demo)"},
    "tome-0.5": {"model_transforms": [{"name": "tome", "ratio": 0.5}],
                 "description": "ToMe-MGT: 50 % of the image tokens merged in the MM blocks"},
    "quant-int8": {"model_transforms": [{"name": "quantize", "scheme": "int8-weight-only"}],
                   "description": "int8 weight-only quantization of every linear layer (torchao)"},
    "quant-w8a8": {"model_transforms": [{"name": "quantize", "scheme": "int8-dynamic"}],
                   "description": "W8A8: int8 weights and dynamic int8 activations (torchao)"},
    "quant-int4": {"model_transforms": [{"name": "quantize", "scheme": "int4-weight-only"}],
                   "description": "int4 weight-only quantization, groups of 128 (torchao's tile-packed CUDA layout, bf16)"},
    "quant-w4a8": {"model_transforms": [{"name": "quantize", "scheme": "w4a8-dynamic"}],
                   "description": "W4A8 as the paper's bit widths: int4 weights, dynamic int8 activations (no calibration, "
                                  "no QAT); simulated (int4 in int8 bytes) where torchao has no packed kernel"},
    "quant-fp8": {"model_transforms": [{"name": "quantize", "scheme": "float8-weight-only"}],
                  "description": "float8 (e4m3) weight-only quantization (torchao)"},
    "cache-2": {"model_transforms": [{"name": "feature-cache", "interval": 2}],
                "description": "FORA/ToCa feature caching: the single-stream blocks reuse their attention and MLP "
                               "outputs every other step, under the current step's gates"},
    "cache-3": {"model_transforms": [{"name": "feature-cache", "interval": 3}],
                "description": "FORA/ToCa feature caching: the single-stream blocks refresh every third step"},
    "residual-cache-2": {"model_transforms": [{"name": "residual-cache", "interval": 2}],
                         "description": "residual caching (Δ-DiT-like): the single-stream blocks reuse their whole "
                                        "residual update, refresh step's gates included, every other step"},
    "pag": {"guidance": {"name": "pag", "pag_scale": 3.0, "layers": [1]},
            "description": "perturbed-attention guidance, s = 3, identity attention in MM block 1 (one extra pass a step)"},
}
for _name, _spec in _MODEL_SIDE_PRESETS.items():
    register_variant(_name, {"base": "vanilla", **_spec})
