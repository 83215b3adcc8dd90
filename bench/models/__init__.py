"""Generation backends behind the model protocol (samplers/protocol.py), registered in `registry.MODELS`."""

from . import transforms as _transforms  # noqa: E402,F401  (registers the model_transform kind's implementations)
