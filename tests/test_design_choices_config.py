"""The shipped design-choices configs load, and every variant they name builds (no generation: cheap)."""
from __future__ import annotations

import pytest

from bench.config import load_config
from samplers.variant import build_variant


@pytest.mark.parametrize("name, steps", [("design-choices", 16), ("design-choices-sweep", [8, 16, 32])])
def test_design_choices_configs_build(name, steps):
    config = load_config(name)
    assert config.steps == steps and config.baseline == "vanilla"
    names = list(config.samplers)
    for required in ("vanilla", "noise-reg", "differential", "zigzag", "zigzag+noise-reg", "zigzag+differential"):
        assert required in names
    for variant in names:
        build_variant(variant, config.variants)
