"""The embedded synthetic world: a text-to-image world whose token distribution is known exactly.

- `grammar`: scenes (shape, colours, position, size), prompts in plain English, scene prototypes.
- `world`: the exact distribution, denoiser and metrics (log-likelihood, prompt posterior, features).
- `backend`: the world behind the model protocol, with knobs that simulate a trained network's faults.
"""
from .backend import SyntheticModel
from .grammar import SceneGrammar
from .world import TokenWorld

__all__ = ["SceneGrammar", "SyntheticModel", "TokenWorld"]
