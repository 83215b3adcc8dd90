"""What the synthetic world makes of the standard sets' free text: it maps any text to the scenes whose
attributes it names (none named: every scene), and refuses, with exit code 2, a text that describes no
scene rather than dividing by zero."""
from __future__ import annotations

import math

import pytest
import torch

from bench.cli import main
from bench.models.synthetic.grammar import SceneGrammar
from bench.models.synthetic.world import TokenWorld
from mgt_common.errors import ConfigError


@pytest.fixture(scope="module")
def world():
    return TokenWorld(SceneGrammar(grid=8))


def test_free_text_maps_to_the_scenes_it_names(world):
    grammar = world.grammar
    red = torch.from_numpy(grammar.scene_mask("A red colored car."))
    assert red.sum() == 4 * 7 * 5 * 2  # red shapes: shapes x other backgrounds x positions x sizes
    assert all(grammar.scenes[i].colour == "red" for i in red.nonzero()[:, 0].tolist())
    prior = world.log_prior("A pink colored car.")  # names nothing the world knows: every scene, uniformly
    assert torch.allclose(prior, torch.full_like(prior, -math.log(world.num_scenes)))
    prior = world.log_prior("A red colored car.")
    assert torch.isclose(torch.logsumexp(prior, 0), torch.zeros((), dtype=prior.dtype))


def test_a_text_that_describes_no_scene_is_refused(world):
    with pytest.raises(ConfigError, match=r"'a red circle on a red background' describes no scene .* rephrase or remove it"):
        world.log_prior("a red circle on a red background")


def test_the_cli_refuses_it_with_exit_2(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on a red background\n")
    code = main(["--prompts", str(prompts), "--model", "synthetic", "--samplers", "vanilla", "--metrics", "world-loglik",
                 "--steps", "3", "--seeds", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "describes no scene of the synthetic world" in err
