"""The compiled transformer path of the real backends: ``compile``, ``compile_mode``, ``cuda_graphs``
(docs/scaling.md, "GPU throughput: compiled transformer and the fused step").

``[model] compile = true`` runs the transformer under `torch.compile` (Ansel et al. 2024, "PyTorch 2",
ASPLOS: TorchDynamo + Inductor), with static shapes: every distinct input shape (batch rows; CFG doubles
them) is compiled once, on its first call. ``compile_mode = "max-autotune"`` lets Inductor benchmark
matrix-multiply configurations; ``cuda_graphs = true`` also captures the fixed-shape forward as a CUDA
graph (Inductor's "reduce-overhead" / "max-autotune" modes), which removes the per-kernel launch gaps.

Compiled logits are not bit-identical to eager ones (fused kernels round differently; about 0.25 in
bf16 at Meissonic's size), so the settings are part of the backend's `describe()` and hence of every
unit key: a compiled run never reuses eager images or the other way round.

The first call of each shape is the compilation; its seconds are kept in `compile_seconds` (by shape)
so that the harness reports them apart from sampling time, and `warm_up` compiles ahead of timing.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any

import torch

from mgt_common.errors import ConfigError

COMPILE_MODES = ("default", "max-autotune")


class CompiledForward:
    """Eager by default; `configure` switches the compiled path on (one per backend instance)."""

    def __init__(self):
        self.enabled = False
        self.mode = "default"
        self.cuda_graphs = False
        #: seconds of the first call of each input shape (compilation + one forward), by shape
        self.compile_seconds: dict[str, float] = {}
        self._module = None
        self._source = None

    def configure(self, backend_name: str, compile: Any, compile_mode: Any, cuda_graphs: Any,
                  device: torch.device) -> None:
        """Check and keep the [model] settings; ConfigError names the bad one."""
        if not isinstance(compile, bool):
            raise ConfigError(f"model {backend_name!r}: compile must be true or false; got {compile!r}")
        if compile_mode not in COMPILE_MODES:
            raise ConfigError(f"model {backend_name!r}: compile_mode must be one of {', '.join(COMPILE_MODES)}; "
                              f"got {compile_mode!r}")
        if not isinstance(cuda_graphs, bool):
            raise ConfigError(f"model {backend_name!r}: cuda_graphs must be true or false; got {cuda_graphs!r}")
        if cuda_graphs and not compile:
            raise ConfigError(f"model {backend_name!r}: cuda_graphs = true needs compile = true (the graph is "
                              "captured from the compiled forward)")
        if cuda_graphs and device.type != "cuda":
            raise ConfigError(f"model {backend_name!r}: cuda_graphs = true needs a CUDA device; got {device}")
        if compile_mode != "default" and not compile:
            raise ConfigError(f"model {backend_name!r}: compile_mode is set but compile is false")
        self.enabled, self.mode, self.cuda_graphs = compile, compile_mode, cuda_graphs

    def torch_mode(self) -> str:
        """torch.compile's mode name for (compile_mode, cuda_graphs)."""
        if self.mode == "max-autotune":
            return "max-autotune" if self.cuda_graphs else "max-autotune-no-cudagraphs"
        return "reduce-overhead" if self.cuda_graphs else "default"

    def describe(self) -> dict[str, Any]:
        """The unit-key entry: absent when eager, so eager runs keep their keys."""
        if not self.enabled:
            return {}
        info = {"mode": self.mode, "cuda_graphs": self.cuda_graphs, "torch": torch.__version__}
        if compile_backend() != "inductor":
            info["backend"] = compile_backend()
        return {"compile": info}

    def module(self, transformer: torch.nn.Module):
        """The callable to run: the transformer itself, or its compiled wrapper (built once)."""
        if not self.enabled:
            return transformer
        if self._module is None or self._source is not transformer:
            backend = compile_backend()
            if backend == "inductor":
                self._module = torch.compile(transformer, mode=self.torch_mode(), dynamic=False)
            else:  # tests: graph capture without code generation (Inductor takes minutes on a small CPU)
                self._module = torch.compile(transformer, backend=backend, dynamic=False)
            self._source = transformer
        return self._module

    def forward(self, backend, grid, pooled, hidden, step, total_steps) -> torch.Tensor:
        """`backend._forward`, timing the first call of each shape as compilation."""
        if not self.enabled:
            return backend._forward(grid, pooled, hidden, step, total_steps)
        shape = "x".join(str(d) for d in grid.shape)
        first = shape not in self.compile_seconds
        if first and len(self.compile_seconds) == _recompile_limit():
            # TorchDynamo compiles at most this many shapes per code object and runs the rest eagerly,
            # without an error: say so, since the run's seconds per image would then mix both paths.
            warnings.warn(f"compile = true: input shape {shape} is the {len(self.compile_seconds) + 1}th of this "
                          f"run, past torch._dynamo.config.recompile_limit ({_recompile_limit()}); TorchDynamo "
                          "runs it uncompiled. Use fewer batch sizes (or raise that limit) for compiled timings.",
                          RuntimeWarning, stacklevel=2)
        if first:
            _sync(grid.device)
            started = time.perf_counter()
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = backend._forward(grid, pooled, hidden, step, total_steps)
        if self.cuda_graphs:
            # a graph's output lives in its memory pool and is overwritten by the next replay
            out = out.clone()
        if first:
            _sync(grid.device)
            self.compile_seconds[shape] = round(time.perf_counter() - started, 3)
        return out


def compile_backend() -> str:
    """torch.compile's backend: Inductor, unless ``MGT_BENCH_COMPILE_BACKEND`` names another (the CPU tests
    use ``aot_eager``: the same graph capture, no code generation)."""
    return os.environ.get("MGT_BENCH_COMPILE_BACKEND", "inductor")


def _recompile_limit() -> int:
    import torch._dynamo

    config = torch._dynamo.config
    return int(getattr(config, "recompile_limit", getattr(config, "cache_size_limit", 8)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
