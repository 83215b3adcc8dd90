"""The embedded synthetic world: a text-to-image world whose token distribution is known exactly.

- `grammar`: scenes (shape, colours, position, size), prompts in plain English, scene prototypes.
- `world`: the exact distribution, denoiser and metrics (log-likelihood, prompt posterior, features).
- `backend`: the exact denoiser behind the model protocol (``synthetic-exact``, alias ``synthetic``), with
  knobs that imitate a trained network's faults.
- `network`, `train`, `trained`: a tiny Meissonic transformer trained on the world with the MaskGIT
  objective, behind the model protocol (``synthetic-trained``, the default run's model).
"""
from .backend import SyntheticModel
from .grammar import SceneGrammar
from .trained import TrainedWorldModel
from .world import TokenWorld

__all__ = ["SceneGrammar", "SyntheticModel", "TokenWorld", "TrainedWorldModel"]
