"""Generation backends behind the backend contract (`base.Backend`), registered in `registry.MODELS`."""

from . import transforms as _transforms  # noqa: E402,F401  (registers the model_transform kind's implementations)
