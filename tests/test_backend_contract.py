"""The backend contract (bench/models/base.py, samplers/protocol.py): a backend is one file, its optional
members have working defaults, and anything that is not a `Backend` is refused before a file is written."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.models.base import Backend
from bench.models.registry import MODELS
from bench.models.synthetic import SyntheticModel
from mgt_common.errors import ConfigError
from samplers.protocol import MaskedTokenModel

#: A newcomer's backend, exactly as docs/design.md ("Adding a backend") describes it: one file, one class
#: with the abstract members only, one registered factory. It is the synthetic world's exact denoiser,
#: so the world's exact metric can score it.
PLUGIN = '''
from bench.models.base import Backend
from bench.models.registry import MODELS
from bench.models.synthetic.grammar import SceneGrammar
from bench.models.synthetic.world import TokenWorld


class ExactWorld(Backend):
    name = "contract-world"

    def __init__(self, grid=8, device="cpu", dtype="float32"):
        super().__init__()
        self.world = TokenWorld(SceneGrammar(grid=grid), epsilon=0.05, patch=4)
        self.codebook_size = self.world.codebook_size
        self.mask_token_id = self.codebook_size
        self.side = grid

    def token_grid(self, height=None, width=None):
        return self.world.grid

    def encode(self, prompts, negative_prompt=None):
        return {"log_prior": self.world.log_priors(prompts)}

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        loglik = self.world.scene_loglik(tokens, self.mask_token_id)
        cond = self.world.token_marginals(loglik + conditioning["log_prior"]).log().float()
        uncond = self.world.token_marginals(loglik + self.world.log_prior(None)).log().float() if with_uncond else None
        return cond, uncond

    def decode(self, tokens, grid=None):
        return self.world.render(tokens)

    def describe(self):
        return {"backend": self.name, "grid": self.side}


@MODELS.register("contract-world")
def contract_world(**model_args):
    """The exact world, written as a plugin backend."""
    return ExactWorld(**model_args)
'''

CONFIG = """
limit = 2
seeds = [0, 1]
steps = 3
guidance = 3.0
samplers = ["vanilla"]
metrics = ["world-loglik"]
batch_size = 2

[model]
name = "{model}"

[prompts]
source = "synthetic-world"
n = 12
"""


@pytest.fixture
def scratch_registry(scratch_registry, monkeypatch):
    """The registry copy of tests/conftest.py, and a stub report."""
    import bench.runner

    def render(run_dir):  # the report is not what these tests are about (tests/test_report.py is)
        path = Path(run_dir) / "report.md"
        path.write_text("stub\n")
        return {"markdown": path}

    monkeypatch.setattr(bench.runner, "render", render)


def test_a_backend_written_in_one_file_runs_end_to_end(tmp_path, capsys, scratch_registry):
    plugin = tmp_path / "contract_backend.py"
    plugin.write_text(PLUGIN)
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(model="contract-world"))
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out), "--plugin", str(plugin)]) == 0
    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == 4 and set(samples["forward_passes"]) == {3}  # counted by the engine, one per step
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 4 and scores["value"].notna().all()  # `world` reached the exact metric
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == {"name": "contract-world", "backend": "contract-world", "grid": 8}
    assert manifest["negative_prompt"] is None  # the contract's default_negative_prompt
    # the default identity() (= describe()) keys the units: the same command reuses every image
    assert main(["--config", str(config), "--out", str(out), "--plugin", str(plugin)]) == 0
    assert "0 images generated, 4 reused" in capsys.readouterr().out


def test_a_factory_that_returns_no_backend_is_refused_before_anything_is_written(tmp_path, capsys, scratch_registry):
    MODELS.register("not-a-backend", lambda **args: SimpleNamespace(mask_token_id=0, codebook_size=1))
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(model="not-a-backend"))
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "returned a SimpleNamespace, not a bench.models.base.Backend" in err and "Traceback" not in err
    assert not out.exists()


def test_the_optional_members_default_to_a_model_without_a_network():
    model = SyntheticModel(grid=4)
    assert isinstance(model, Backend) and isinstance(model, MaskedTokenModel)
    assert model.transformer is None and not model.compiled.enabled and model.current_step == 0
    assert model.identity() == model.describe() and model.warm_up(2) == 0.0
    assert model.default_negative_prompt is None and model.world is not None
    assert model.post_model_dtype == torch.float32
    tokens = torch.full((1, model.world.seq_len), model.mask_token_id)
    conditioning = model.encode(["a red circle"])
    for raw, full in zip(model.raw_logits(tokens, conditioning, 0, 4), model.logits(tokens, conditioning, 0, 4)):
        assert torch.equal(raw, full)  # raw_logits defaults to logits
    with pytest.raises(ConfigError, match="model 'SyntheticModel' has no attention to perturb"):
        model.check_perturbed_attention([0])


def test_a_backend_missing_an_abstract_member_cannot_be_built():
    class NoDecode(Backend):
        mask_token_id, codebook_size = 4, 4

        def token_grid(self, height=None, width=None):
            return 2, 2

        def encode(self, prompts, negative_prompt=None):
            return {}

        def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
            return torch.zeros(1, 4, 4), None

        def describe(self):
            return {}

    with pytest.raises(TypeError, match="decode"):
        NoDecode()
