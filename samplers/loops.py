"""Outer loops (loop kind)."""
from __future__ import annotations

from .components import Loop, register_component


@register_component("loop", "standard")
class StandardLoop(Loop):
    """T steps, one guided forward each (MaskGIT / Meissonic)."""

    def run(self, engine, generation) -> None:
        for step in range(generation.total_steps):
            engine.step(generation, step)
