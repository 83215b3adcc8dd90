"""Outer loops (loop kind). Zig-zag lives in `zigzag.py`."""
from __future__ import annotations

from .components import Loop, register_component


@register_component("loop", "standard")
class StandardLoop(Loop):
    """T steps, one guided forward each (MaskGIT / Meissonic); stops early once nothing is masked.

    Stopping early matters only for adaptive reveal counts (e.g. `entropy-bounded`), which may reveal
    everything before step T; with a fixed schedule the last step is always the one that ends it.
    """

    def run(self, engine, generation) -> None:
        for step in range(generation.total_steps):
            if step > 0 and not bool(generation.masked().any()):
                break
            engine.step(generation, step)
