"""Issue 15: `--check` runs every variant of a config on a tiny model and names a broken plugin's
variant and component, exit code 2, before anything is written."""
from __future__ import annotations

from bench.cli import main
from helpers import write_tiny_config

TYPO_PLUGIN = '''
from samplers.components import Guidance, register_component
from samplers.variant import register_variant


@register_component("guidance", "check-ramp-typo")
class RampTypo(Guidance):
    """A CFG ramp written with ctx.steps instead of ctx.total_steps."""

    def scale(self, ctx):
        return 1.0 + (ctx.guidance_scale - 1.0) * ctx.step / ctx.steps


register_variant("check-ramp-typo", {"base": "vanilla", "guidance": "check-ramp-typo"})
'''

SHAPE_PLUGIN = '''
import torch
from samplers.components import Confidence, register_component
from samplers.variant import register_variant


@register_component("confidence", "check-flat")
class Flat(Confidence):
    """Returns one score per image instead of one per position."""

    def score(self, probs, sampled, ctx):
        return torch.zeros(probs.shape[0])


register_variant("check-flat", {"base": "vanilla", "confidence": "check-flat"})
'''


def test_check_runs_every_variant_and_writes_nothing(tmp_path, capsys):
    names = ("vanilla", "zigzag", "halton", "differential", "smc-4")  # smc-4: a search loop, needs a reward
    config = write_tiny_config(tmp_path / "c.toml", steps=12, samplers=names)
    out = tmp_path / "run"
    assert main(["--check", "--config", str(config), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in names:
        assert f"ok  {name}:" in text
    assert "all 5 variant(s) ran" in text
    assert not out.exists()


def test_check_names_the_variant_and_the_component(tmp_path, capsys):
    for name, source in (("typo", TYPO_PLUGIN), ("shape", SHAPE_PLUGIN)):
        (tmp_path / f"{name}.py").write_text(source)
    config = write_tiny_config(tmp_path / "c.toml", steps=6, samplers=("vanilla", "check-ramp-typo", "check-flat"))
    out = tmp_path / "run"
    code = main(["--plugin", str(tmp_path / "typo.py"), "--plugin", str(tmp_path / "shape.py"), "--check",
                 "--config", str(config), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert "2 of 3 variant(s) failed" in captured.err
    assert "variants.check-ramp-typo: guidance 'check-ramp-typo' (" in captured.err
    assert "typo.py:11, in scale): AttributeError: StepContext has no attribute 'steps'" in captured.err
    assert "total_steps" in captured.err
    assert ("variants.check-flat: OutputError: confidence 'check-flat': score() returned shape (2,), "
            "expected (2, 16)") in captured.err
    assert "Traceback" not in captured.err
    assert "ok  vanilla:" in captured.out
    assert not out.exists()


def test_check_runs_perturbed_attention_guidance(tmp_path, capsys):
    """PAG needs the model's perturbed attention: the tiny model has one (its mean over tokens becomes each
    token alone), so a config with PAG passes --check as it passes a run; one extra pass per step."""
    config = write_tiny_config(tmp_path / "c.toml", steps=6, samplers=("vanilla", "pag"))
    assert main(["--check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ok  vanilla: 6 forward passes" in out and "ok  pag: 12 forward passes" in out


def test_check_rejects_a_bad_config_first(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "c.toml", samplers=("vanilla", "no-such-variant"))
    assert main(["--check", "--config", str(config)]) == 2
    assert "unknown sampler variant 'no-such-variant'" in capsys.readouterr().err


def test_check_runs_every_point_of_a_sweep(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "c.toml", samplers=("vanilla", "noise-reg"))
    text = config.read_text().replace("steps = 6", "steps = [3, 5]")
    config.write_text(text)
    assert main(["--check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    for name in ("vanilla@steps=3", "vanilla@steps=5", "noise-reg@steps=3", "noise-reg@steps=5"):
        assert f"ok  {name}:" in out
    assert "ok  vanilla@steps=5: 5 forward passes" in out  # each point at its own step count
