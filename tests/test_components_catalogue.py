"""The catalogue as a whole: everything is listed, every choice reduces to vanilla when its parameters
say so, combinations compose, nonsense fails with a clear message, and the synthetic world's physics."""
from __future__ import annotations

import pytest
import torch

from mgt_common.errors import ConfigError
from samplers.components import list_components
from samplers.variant import VARIANT_PRESETS, build_variant
from catalogue_fakes import MASK, FixedLogits, generate

CATALOGUE = {
    "guidance": {"constant", "linear", "linear-decreasing", "cosine", "power", "interval", "fixed", "apg", "cfg-zero-star"},
    "logits_processor": {"noise-regularization"},
    "probability_corrector": {"differential"},
    "token_sampler": {"multinomial", "gumbel-max-f64", "gumbel-max-scored", "top-k", "top-p", "greedy"},
    "confidence": {"gumbel", "random", "margin", "entropy", "halton", "draw-score"},
    "reveal_schedule": {"cosine", "linear", "power", "square", "cubic", "root", "arccos", "exponential",
                        "logarithmic", "sigmoid", "entropy-bounded", "confidence-threshold", "remdm-loop",
                        "halton-maskgit"},
    "remask": {"lowest-confidence", "remdm", "p2", "p2-confidence", "self-critic"},
    "loop": {"standard", "zigzag", "best-of-n", "smc"},
}
REQUIRED_PRESETS = ["vanilla", "noise-reg", "differential", "zigzag", "zigzag+noise-reg", "zigzag+differential",
                    "halton", "cfg-linear", "cfg-cosine", "remdm-cap", "eb-adaptive", "gumbel-max-f64", "top-k",
                    "top-p", "margin", "entropy", "remdm-rescale", "remdm-loop", "fast-dllm", "threshold-parallel", "p2",
                    "p2-remask", "self-critic", "apg", "cfg-zero-star", "halton-maskgit", "best-of-4", "smc-4", "differential-reference"]


def test_the_whole_catalogue_is_registered_and_documented():
    listed = list_components()
    for kind, names in CATALOGUE.items():
        assert names <= {name for name, _ in listed[kind]}, kind
        assert all(doc for _, doc in listed[kind]), f"{kind}: a component without a docstring"
    assert set(REQUIRED_PRESETS) <= set(VARIANT_PRESETS.names())


# Parameters under which a choice is the vanilla step, random stream included.
VANILLA_EQUIVALENTS = {
    "noise scale 0": {"logits_processors": [{"name": "noise-regularization", "scale": 0.0}]},
    "differential fraction 0": {"probability_correctors": [{"name": "differential", "fraction": 0.0}]},
    "sampling temperature 1": {"token_sampler": {"name": "multinomial", "temperature": 1.0, "temperature_end": 1.0,
                                                 "temperature_schedule": "cosine"}},
    "top-k with k = V": {"token_sampler": {"name": "top-k", "k": 8}},
    "cfg linear from w to w": {"guidance": {"name": "linear", "start": 3.0}},
    "cfg cosine from w to w": {"guidance": {"name": "cosine", "start": 3.0}},
    "cfg power from w to w": {"guidance": {"name": "power", "start": 3.0, "exponent": 3.0}},
    "cfg interval [0, 1)": {"guidance": {"name": "interval", "start": 0.0, "stop": 1.0}},
    "remdm eta 0": {"remask": {"name": "remdm", "eta": 0.0}},
    "threshold 1 never fires": {"reveal_schedule": {"name": "confidence-threshold", "threshold": 1.0}},
    "p2 eta 0": {"remask": {"name": "p2", "eta": 0.0}},
    "apg eta 1 without momentum": {"guidance": {"name": "apg", "eta": 1.0}},
    "cfg-zero-star without the optimized scale": {"guidance": {"name": "cfg-zero-star", "optimized_scale": False}},
}


@pytest.mark.parametrize("label", sorted(VANILLA_EQUIVALENTS))
def test_each_choice_reduces_to_the_vanilla_step(label):
    model = FixedLogits(8, 16, 8, seed=11)
    for seed in range(3):
        variant = generate(model, "v", [seed], tables={"v": VANILLA_EQUIVALENTS[label]})
        assert torch.equal(variant.tokens, generate(model, "vanilla", [seed]).tokens), label


def test_power_one_is_the_linear_schedule():
    model = FixedLogits(8, 16, 8, seed=11)
    tables = {"p1": {"reveal_schedule": {"name": "power", "exponent": 1.0}}}
    assert torch.equal(generate(model, "p1", [0], tables=tables).tokens, generate(model, "linear-reveal", [0]).tokens)


def test_noise_regularization_changes_the_samples_and_is_seeded_per_image():
    model = FixedLogits(8, 16, 8, seed=11)
    runs = [generate(model, "noise-reg", [4]).tokens for _ in range(2)]
    assert torch.equal(runs[0], runs[1])  # own generator: reproducible without a global seed
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(generate(model, "noise-reg", [4]).tokens, runs[0])
    assert any(not torch.equal(generate(model, "noise-reg", [s]).tokens, generate(model, "vanilla", [s]).tokens)
               for s in range(3))


@pytest.mark.parametrize("combination", [
    {"base": "zigzag", "logits_processors": ["noise-regularization"], "probability_correctors": ["differential"]},
    {"probability_correctors": ["differential"], "guidance": "cosine"},
    {"guidance": {"name": "interval", "start": 0.2, "stop": 0.8}, "confidence": "halton", "token_sampler": "top-p"},
    {"remask": {"name": "remdm", "strategy": "conf"}, "confidence": "margin",
     "token_sampler": {"name": "gumbel-max-f64", "temperature": 0.9}},
    {"reveal_schedule": {"name": "entropy-bounded", "base": "arccos"}, "remask": {"name": "remdm", "eta": 0.5},
     "logits_processors": [{"name": "noise-regularization", "schedule": "linear"}]},
    {"base": "zigzag", "reveal_schedule": "sigmoid", "confidence": {"name": "gumbel", "schedule": "maskgit",
                                                                       "start": 4.5}},
])
def test_combinations_compose_without_special_cases(combination):
    model = FixedLogits(6, 16, 8, seed=2)
    variant = build_variant("combo", {"combo": combination})
    generation = generate(model, variant, seeds=[0, 1, 2])
    assert not bool((generation.tokens == MASK).any())
    assert int(generation.forward_passes.max()) <= variant.forward_passes(6)
    alone = generate(FixedLogits(6, 16, 8, seed=2), build_variant("combo", {"combo": combination}), seeds=[1])
    assert torch.equal(alone.tokens[0], generation.tokens[1])


@pytest.mark.parametrize("table, message", [
    ({"base": "zigzag", "remask": "remdm"}, "Use one of them"),
    ({"probability_correctors": ["differential", "differential"]}, "Keep one"),
    ({"guidance": {"name": "interval", "start": 0.8, "stop": 0.2}}, "start < stop"),
    ({"confidence": {"name": "gumbel", "schedule": "exponential", "end": 0.0}}, "start > 0 and end > 0"),
    ({"token_sampler": {"name": "top-p", "p": 0.0}}, "p must be in"),
    ({"token_sampler": {"name": "multinomial", "temperature": 0.0}}, "greedy"),
    ({"reveal_schedule": {"name": "entropy-bounded", "base": "cosnie"}}, "Did you mean 'cosine'"),
    ({"logits_processors": [{"name": "noise-regularization", "schedule": "sine"}]}, "cosine, constant, linear"),
    ({"remask": {"name": "remdm", "strategy": "sloop"}}, "cap, rescale, conf, loop"),
    ({"remask": {"name": "remdm", "strategy": "loop"}}, "reveal_schedule 'remdm-loop'"),
    ({"remask": {"name": "remdm", "strategy": "loop", "start": 0.5}, "reveal_schedule": "remdm-loop"}, "leave start"),
    ({"reveal_schedule": {"name": "remdm-loop", "t_on": 0.05, "t_off": 0.5}}, "t_off < t_on"),
    ({"confidence": {"name": "halton", "roll": True, "shift": True}}, "choose one"),
    ({"guidance": {"name": "apg", "over": "pixel"}}, "image, position"),
    ({"loop": {"name": "best-of-n", "inner": "smc"}}, "plain loop"),
    ({"loop": {"name": "smc", "select": "worst"}}, "best, sample"),
    ({"probability_correctors": [{"name": "differential", "kl": "exact"}]}, "clamped, reference"),
])
def test_nonsense_fails_with_a_clear_message(table, message):
    with pytest.raises(ConfigError, match=message):
        build_variant("bad", {"bad": table})
