"""The compiled transformer path (issue 12): it runs, agrees with eager, keys its units apart, and times
its compilation separately.

Inductor's code generation takes minutes on a small CPU, so these tests capture the graph with the
``eager`` backend (TorchDynamo's trace of the forward, run as traced); the GPU check
(`benchmarks/gpu_check.sh`) runs Inductor itself on the full-size model and compares it with eager.
"""
from __future__ import annotations

import pytest
import torch

from model_fixtures import tiny_checkpoint

from bench.models.amused import AmusedModel
from bench.models.meissonic import MeissonicModel
from mgt_common.errors import ConfigError

#: float32 tiny models: a traced graph may reorder reductions, nothing more
TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def _aot_eager(monkeypatch):
    monkeypatch.setenv("MGT_BENCH_COMPILE_BACKEND", "eager")


@pytest.mark.parametrize("kind", ["meissonic-512", "amused"])
def test_compiled_tiny_models_run_and_agree_with_eager(kind):
    build = AmusedModel if kind == "amused" else MeissonicModel
    extra = {} if kind == "amused" else {"height": 64}
    eager = build(path=str(tiny_checkpoint(kind)), device="cpu", **extra)
    compiled = build(path=str(tiny_checkpoint(kind)), device="cpu", compile=True, **extra)
    assert compiled.warm_up(2) > 0  # compiles outside any image's passes (the engine counts those)
    assert list(compiled.compiled.compile_seconds) == ["4x4x4"]
    tokens = torch.full((2, 16), eager.mask_token_id)
    tokens[:, :5] = 3
    for step in (0, 2):  # a second step reuses the compiled graph (the timestep is a tensor input)
        a = eager.logits(tokens, eager.encode(["a cat", "a dog"]), step, 4)
        b = compiled.logits(tokens, compiled.encode(["a cat", "a dog"]), step, 4)
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, atol=TOLERANCE, rtol=TOLERANCE)
    assert list(compiled.compiled.compile_seconds) == ["4x4x4"]  # no recompilation
    assert "compile" not in eager.identity()
    assert compiled.identity()["compile"]["mode"] == "default"
    assert compiled.identity() != eager.identity()  # compiled images never reuse eager ones


@pytest.mark.parametrize("args,message", [
    ({"compile": "yes"}, "compile must be true or false"),
    ({"compile": True, "compile_mode": "fastest"}, "compile_mode must be one of default, max-autotune"),
    ({"compile_mode": "max-autotune"}, "compile_mode is set but compile is false"),
    ({"cuda_graphs": True}, "cuda_graphs = true needs compile = true"),
    ({"compile": True, "cuda_graphs": True}, "cuda_graphs = true needs a CUDA device"),
])
def test_bad_compile_settings_are_config_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), device="cpu", **args)


def test_a_shape_past_dynamos_recompile_limit_is_announced():
    """TorchDynamo runs shapes past its recompile limit uncompiled, silently: the backend warns instead."""
    import torch._dynamo

    model = MeissonicModel(path=str(tiny_checkpoint("meissonic-512")), device="cpu", height=64, compile=True)
    tokens = torch.full((2, 16), model.mask_token_id)
    limit = torch._dynamo.config.recompile_limit
    # config.patch, not monkeypatch: undoing a monkeypatch deletes the entry from dynamo's config module
    with torch._dynamo.config.patch(recompile_limit=1):
        model.logits(tokens, model.encode(["a cat", "a dog"]), 0, 4)  # 4 rows (CFG): the one compiled shape
        with pytest.warns(RuntimeWarning, match="past torch._dynamo.config.recompile_limit"):
            model.logits(tokens[:1], model.encode(["a cat"]), 0, 4)
    assert torch._dynamo.config.recompile_limit == limit
