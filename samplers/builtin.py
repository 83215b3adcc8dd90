"""Imports every built-in component module so that their registrations run (see components._ensure_builtins)."""
from . import (  # noqa: F401
    adaptive,
    confidence,
    differential,
    guidance,
    guidance_projection,
    halton,
    loops,
    noise_regularization,
    planning,
    remasking,
    remdm,
    reveal,
    search,
    threshold,
    token_samplers,
    zigzag,
)
