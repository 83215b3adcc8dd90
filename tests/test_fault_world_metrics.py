"""Fault-matrix rows for the world's metrics: asked of a model without the synthetic world, or with a bad
parameter, a run stops before the first image with exit code 2, one line naming the fix, nothing written."""
from __future__ import annotations

import pytest

from bench.cli import main

#: A backend that draws like the world but, as any real model, has no exact world to score it with.
PLUGIN = '''
from bench.models.base import Backend
from bench.models.registry import MODELS
from bench.models.synthetic.grammar import SceneGrammar
from bench.models.synthetic.world import TokenWorld


class NoWorld(Backend):
    name = "no-world"

    def __init__(self, device="cpu", dtype="float32"):
        super().__init__()
        self._inner = TokenWorld(SceneGrammar(grid=8), epsilon=0.05, patch=4)
        self.codebook_size = self._inner.codebook_size
        self.mask_token_id = self.codebook_size
        self.device, self.dtype = device, dtype

    def token_grid(self, height=None, width=None):
        return self._inner.grid

    def encode(self, prompts, negative_prompt=None):
        return {"log_prior": self._inner.log_priors(prompts)}

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        loglik = self._inner.scene_loglik(tokens, self.mask_token_id)
        cond = self._inner.token_marginals(loglik + conditioning["log_prior"]).log().float()
        return cond, (cond if with_uncond else None)

    def decode(self, tokens, grid=None):
        return self._inner.render(tokens)

    def describe(self):
        return {"backend": self.name}


@MODELS.register("no-world")
def no_world(**model_args):
    return NoWorld(**model_args)
'''

CONFIG = """
limit = 2
seeds = [0, 1]
steps = 3
samplers = ["vanilla"]
metrics = [{metrics}]
batch_size = 2

[model]
name = "{model}"

[prompts]
source = "synthetic-world"
n = 12
"""


@pytest.mark.parametrize("metric", ["world-typicality", "world-coverage", "world-faithfulness", "world-loglik"])
def test_a_world_metric_on_a_model_without_the_world_fails_before_the_first_image(tmp_path, capsys, metric,
                                                                                   scratch_registry):
    plugin = tmp_path / "no_world.py"
    plugin.write_text(PLUGIN)
    config = tmp_path / "c.toml"
    # a per-image metric after it: a run needs one (set metrics alone are refused first for that reason)
    companion = "world-loglik" if metric == "world-typicality" else "world-typicality"
    config.write_text(CONFIG.format(model="no-world", metrics=f'"{metric}", "{companion}"'))
    code = main(["--config", str(config), "--out", str(tmp_path / "run"), "--plugin", str(plugin)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mgt-bench: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert f"metric {metric!r} needs the synthetic world as model" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("entry, message", [
    ('{ name = "world-typicality", mass = 1.5 }', "mass must be between 0 and 1"),
    ('{ name = "world-faithfulness", attribute = "hue" }', "attribute 'hue' is not one of shape, colour"),
])
def test_a_bad_world_metric_parameter_is_one_line_and_exit_2(tmp_path, capsys, entry, message):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(model="synthetic", metrics=entry))
    code = main(["--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mgt-bench: error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "run").exists()
