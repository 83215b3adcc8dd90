"""The registry of generation backends (`MODELS`) and `load_backend`, which builds one by name."""
from __future__ import annotations

from mgt_common.errors import ConfigError
from mgt_common.registry import Registry

from .base import Backend

#: Generation backends: name → factory(**model_args) returning a `bench.models.base.Backend`.
#: Backend modules import their heavy dependencies inside the factories.
MODELS = Registry("model", "generation backends", builtins=(
    "bench.models.synthetic.backend", "bench.models.meissonic", "bench.models.amused"))


def load_backend(name: str, **model_args) -> Backend:
    """The backend `name` built with `model_args`; a factory that returns anything but a `Backend` is refused."""
    model = MODELS.get(name)(**model_args)
    if not isinstance(model, Backend):
        raise ConfigError(f"model {name!r}: its factory returned a {type(model).__name__}, not a "
                          "bench.models.base.Backend; derive the class from Backend (docs/design.md, "
                          "'Adding a backend')")
    return model
