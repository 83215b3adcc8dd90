"""`--list`: every registered component, variant, model, metric, prompt set and shipped config."""
from __future__ import annotations

from metrics.base import METRICS
from mgt_common.registry import first_line
from samplers.components import list_components
from samplers.variant import VARIANT_PRESETS

from .config import shipped_configs
from .models.registry import MODELS
from .prompts import PROMPT_SETS


def print_listing() -> None:
    def section(title: str, rows) -> None:
        rows = list(rows)
        print(f"\n{title}")
        width = max((len(name) for name, _ in rows), default=0)
        for name, text in rows:
            print(f"  {name:<{width}}  {text}")

    for kind, rows in list_components().items():
        section(f"sampler components: {kind}", rows)
    section("sampler variants (use in `samplers`)",
            ((name, spec.get("description", "")) for name, spec in VARIANT_PRESETS.items()))
    section("models", ((name, first_line(factory.__doc__)) for name, factory in MODELS.items()))
    section("metrics", ((name, ("[set] " if getattr(cls, "compute", None) and not hasattr(cls, "score") else "")
                         + first_line(cls.__doc__)) for name, cls in METRICS.items()))
    section("prompt sets (use in `prompts`)", ((name, first_line(fn.__doc__)) for name, fn in PROMPT_SETS.items()))
    section("shipped configs (use with --config)", shipped_configs().items())
