"""Issue 15: a component whose methods cannot take the engine's arguments fails at registration, and a
context attribute that does not exist names the nearest one."""
from __future__ import annotations

import pytest

from mgt_common.errors import ConfigError
from samplers.components import (
    REGISTRIES,
    Confidence,
    Guidance,
    LogitsProcessor,
    Loop,
    RevealSchedule,
    register_component,
)
from samplers.contract import METHODS, PluginContractError


def test_every_kind_has_a_contract():
    assert set(METHODS) == set(REGISTRIES)


def test_scale_without_ctx_fails_at_registration():
    with pytest.raises(PluginContractError, match=r"scale\(self\) cannot be called as scale\(ctx\).*"
                                                  r"def scale\(self, ctx\)"):
        @register_component("guidance", "contract-no-ctx")
        class NoCtx(Guidance):
            def scale(self):
                return 2.0
    assert "contract-no-ctx" not in REGISTRIES["guidance"]


def test_extra_required_argument_fails():
    with pytest.raises(PluginContractError, match=r"score"):
        @register_component("confidence", "contract-extra")
        class Extra(Confidence):
            def score(self, probs, sampled, ctx, temperature):
                return probs


def test_missing_method_and_wrong_base_fail():
    with pytest.raises(PluginContractError, match=r"defines no __call__\(self, logits, ctx\)"):
        @register_component("logits_processor", "contract-empty")
        class Empty(LogitsProcessor):
            pass
    with pytest.raises(PluginContractError, match=r"must subclass samplers\.components\.Loop"):
        @register_component("loop", "contract-not-a-loop")
        class NotALoop:
            def run(self, engine, generation):
                pass
    with pytest.raises(PluginContractError, match=r"mask_ratio\(self, progress\) or mask_len\(self, ctx\)"):
        @register_component("reveal_schedule", "contract-no-schedule")
        class NoSchedule(RevealSchedule):
            pass


def test_a_good_plugin_registers_with_any_argument_names():
    @register_component("guidance", "contract-good")
    class Good(Guidance):
        def scale(self, context, *rest):
            return 1.0

    @register_component("loop", "contract-good-loop")
    class GoodLoop(Loop):
        def run(self, engine, generation, extra=None):
            pass

    assert REGISTRIES["guidance"].get("contract-good") is Good
    assert issubclass(PluginContractError, ConfigError)  # the CLI prints it as one line, exit code 2


def test_unknown_context_attribute_names_the_nearest():
    from samplers.engine import StepContext

    ctx = StepContext.__new__(StepContext)
    ctx.total_steps, ctx.step = 8, 0
    with pytest.raises(AttributeError, match=r"no attribute 'steps'\. Did you mean ctx\.(total_steps|step)\?"):
        ctx.steps


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    from bench.cli import main

    plugin = tmp_path / "bad_ramp.py"
    plugin.write_text("from samplers.components import Guidance, register_component\n\n\n"
                      "@register_component('guidance', 'contract-cli-ramp')\n"
                      "class Ramp(Guidance):\n"
                      "    def scale(self):\n"
                      "        return 2.0\n")
    assert main(["--plugin", str(plugin), "--list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mgt-bench: error: component 'contract-cli-ramp'") and err.count("\n") == 1
    assert "def scale(self, ctx)" in err and "Traceback" not in err
