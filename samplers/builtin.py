"""Imports every built-in component module so that their registrations run (see components._ensure_builtins)."""
from . import confidence, guidance, loops, remasking, reveal, token_samplers  # noqa: F401
