"""A component whose methods cannot take the engine's arguments fails at registration, and a context
attribute that does not exist names the nearest one. The contract is read off the kinds' base classes."""
from __future__ import annotations

import dataclasses

import pytest

from mgt_common.errors import ConfigError
from samplers.components import (
    KIND_BASES,
    REGISTRIES,
    Component,
    Confidence,
    Guidance,
    LogitsProcessor,
    Loop,
    RevealSchedule,
    register_component,
)
from samplers.contract import PluginContractError, check_component_class, engine_methods


def test_every_kind_has_a_base_class_and_a_registry():
    assert set(KIND_BASES) == set(REGISTRIES)
    assert all(issubclass(base, Component) and base.kind == kind for kind, base in KIND_BASES.items())


def test_the_contract_is_the_base_class_signatures():
    """A method added to a base class is part of the contract with the arguments it declares, without
    being listed anywhere else; private helpers and non-methods are not."""

    @dataclasses.dataclass
    class Base(Component):
        kind = "made-up"
        required_methods = ("draw",)
        limit = 3

        def draw(self, probs, ctx):
            raise NotImplementedError

        def _helper(self, anything):
            pass

    methods = engine_methods(Base)
    assert methods["draw"] == ("probs", "ctx")
    assert methods["check_composition"] == ("variant",) and methods["validate"] == ()
    assert "_helper" not in methods and "limit" not in methods

    class Wrong(Base):
        def draw(self, probs):
            return probs

    with pytest.raises(PluginContractError, match=r"draw\(self, probs\) cannot be called as draw\(probs, ctx\)"):
        check_component_class("made-up", "wrong", Wrong, Base)
    with pytest.raises(PluginContractError, match=r"defines no draw\(self, probs, ctx\)"):
        check_component_class("made-up", "empty", type("Empty", (Base,), {}), Base)


CONTRACT = [(kind, method, args) for kind, base in sorted(KIND_BASES.items())
            for method, args in sorted(engine_methods(base).items())]


@pytest.mark.parametrize("kind, method, args", CONTRACT, ids=[f"{k}.{m}" for k, m, _ in CONTRACT])
def test_every_method_of_every_kind_is_checked(kind, method, args):
    """For each kind and each method its base class defines: one argument too many fails at registration,
    the right number under other names registers."""
    base = KIND_BASES[kind]
    name = f"contract-{kind}-{method}".replace("_", "-")

    def make(arity: int, suffix: str) -> type:
        namespace: dict = {}
        exec(f"def {method}({', '.join(['self', *(f'a{i}' for i in range(arity))])}):\n    return None", namespace)
        members = {"__doc__": "a test component"}
        members.update({other: (lambda self, *anything: None) for other in base.required_methods[:1]})
        members[method] = namespace[method]
        return register_component(kind, name + suffix)(type(f"Made{suffix}", (base,), members))

    with pytest.raises(PluginContractError, match=rf"{method}\(self, .*\) cannot be called as"):
        make(len(args) + 1, "-extra")
    assert name + "-extra" not in REGISTRIES[kind]
    made = make(len(args), "-ok")
    assert REGISTRIES[kind].get(name + "-ok") is made


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
