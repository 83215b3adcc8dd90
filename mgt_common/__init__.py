"""Tiny shared pieces that `samplers`, `metrics` and `bench` all need: registries and user errors.

Kept separate so that `samplers` and `metrics` never import `bench` (docs/design.md, "The rooms").
"""
