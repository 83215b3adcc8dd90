"""Imports every built-in component module so that their registrations run (see components._ensure_builtins)."""
from . import (  # noqa: F401
    adaptive,
    confidence,
    differential,
    guidance,
    halton,
    loops,
    noise_regularization,
    pag,
    remasking,
    remdm,
    reveal,
    token_samplers,
    zigzag,
)
