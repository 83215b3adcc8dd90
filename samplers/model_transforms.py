"""Model-side design choices: the `model_transform` decision kind (docs/catalogue.md, "Model-side choices").

Token merging, weight quantization and feature caching change the *network*, not the sampling step.
A variant lists them under ``model_transforms``::

    [variants.tome]
    model_transforms = [{ name = "tome", ratio = 0.25 }]

The harness applies the list to the backend's transformer before each of the variant's batches and
restores the untouched network after it (`apply_model_transforms`), so the next variant sees the
plain model. Transforms enter the unit key through `SamplerVariant.resolved()` like any component.

This module holds the application protocol (the kind's base class, `ModelTransform`, is defined with the
other kinds' in samplers/components.py): the implementations know Meissonic and aMUSEd blocks and live in
``bench/models/transforms/`` (samplers never import bench).

Every transform declares

- `neutral()`: True at the setting that must equal the plain model bit for bit (ratio 0, interval 1,
  no quantization); it is then not applied at all;
- `cost_effect`: one line on what it saves or costs (forward passes are unchanged: one network call
  stays one call; the harness measures FLOPs, seconds and memory per image: docs/rundir.md, "Cost columns");
- `block_patch` / `patched_blocks(model)`: which blocks' forwards it rewrites ("replace") or wraps
  ("wrap"), so that the harness refuses two rewrites of one block;
- `cost_note(model)`: None, or why its measured costs are not representative (a simulated layout);
- `check_model(model)`: raise `ConfigError` before anything is written when the backend cannot carry
  it (the exact synthetic world has no network; float8 on a CPU, …);
- `attach(model)` → a callable that undoes exactly what `attach` did.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

# The kind's base class lives with the other kinds' (samplers/components.py); re-exported here, its home in docs.
from .components import ModelTransform, Restore  # noqa: F401


@contextlib.contextmanager
def apply_model_transforms(model, transforms: Sequence[ModelTransform]) -> Iterator[None]:
    """Attach `transforms` in order (skipping neutral ones) and undo them in reverse order on exit."""
    undo: list[Restore] = []
    try:
        for transform in sorted(transforms, key=lambda t: t.order):
            if not transform.neutral():
                undo.append(transform.attach(model))
        yield
    finally:
        for restore in reversed(undo):
            restore()
