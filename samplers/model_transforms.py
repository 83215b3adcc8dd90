"""Model-side design choices: the `model_transform` decision kind (DESIGN.md, "Model-side choices").

Token merging, weight quantization and feature caching change the *network*, not the sampling step.
A variant lists them under ``model_transforms``::

    [variants.tome]
    model_transforms = [{ name = "tome", ratio = 0.25 }]

The harness applies the list to the backend's transformer before the variant's first batch and
restores the untouched network afterwards (`apply_model_transforms`), so the next variant sees the
plain model. Transforms enter the unit key through `SamplerVariant.resolved()` like any component.

This module holds only the kind's base class and the application protocol: the implementations know
Meissonic and aMUSEd blocks and live in ``bench/models/transforms/`` (samplers never import bench).

Every transform declares

- `neutral()`: True at the setting that must equal the plain model bit for bit (ratio 0, interval 1,
  no quantization); it is then not applied at all;
- `cost_effect`: one line on what it saves or costs (forward passes are unchanged: one network call
  stays one call; the harness measures seconds and peak memory per image);
- `check_model(model)`: raise `ConfigError` before anything is written when the backend cannot carry
  it (the exact synthetic world has no network; float8 on a CPU, …);
- `attach(model)` → a callable that undoes exactly what `attach` did.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ClassVar, Iterator, Sequence

from .components import Component

#: What `ModelTransform.attach` returns: call it once to restore the model.
Restore = Callable[[], None]


class ModelTransform(Component):
    """Changes the backend's network while a variant runs (token merging, quantization, caching)."""

    kind = "model_transform"
    #: One line for docs and the manifest: what the transform saves or costs.
    cost_effect: ClassVar[str] = ""
    #: attach order (lower first, then list order): a transform that swaps the whole network for a
    #: changed copy (quantization) must come before those that patch blocks of the network in use.
    order: ClassVar[int] = 10

    def neutral(self) -> bool:
        """True when the transform leaves the network's outputs exactly as they are (then it is skipped)."""
        return False

    def check_model(self, model) -> None:
        """Raise ConfigError when `model` (a backend) cannot carry this transform."""

    def attach(self, model) -> Restore:
        """Change `model`'s network in place (or swap in a changed copy); return the undo."""
        raise NotImplementedError


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
