"""Model-side design choices for network backends (the `model_transform` kind, samplers/model_transforms.py).

Importing this package registers ``tome`` (token merging), ``quantize`` (torchao) and
``feature-cache`` (block-residual reuse across steps). See `network` for what a backend must expose.
"""
from . import feature_cache, quantize, tome  # noqa: F401
