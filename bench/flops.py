"""Transformer FLOPs per image, counted by torch's own ``FlopCounterMode`` (docs/rundir.md, "Cost columns").

`FlopMeter` is the engine's meter (samplers/cost.py) in a run: around a transformer call it counts the
call's FLOPs with `torch.utils.flop_counter.FlopCounterMode` and the rows the network ran (a forward
pre-hook on the backend's ``transformer``), and hands back FLOPs per row. Per image the engine adds
``rows × FLOPs per row`` for every call the image took part in, so CFG's two rows, a conditional-only
critic pass, PAG's perturbed pass, token merging's shorter sequences and feature caching's skipped
blocks each count as what they cost. Rows a backend pads its calls with (the trained world's fixed-size
chunks, bench/models/synthetic/trained.py) are divided out: they are the backend's, not an image's.

Counting is not free (every aten call goes through Python), so it runs on the *untimed warm-up* of each
variant's first batch (bench/generate.py): that run visits the same calls (`samplers.cost.CallKey`) as
every later batch of the variant, and each key's FLOPs per row is kept; later (timed) batches look their
calls up. This is exact, not a sample: a call's FLOPs per row depend only on its key for every built-in
choice (the sequence length, the merged-token count r = ⌊ratio·N⌋, which blocks a cached step skips,
and the halves computed are fixed by step and call). A call whose key the warm-up did not see (a loop
whose number of calls depends on the images) is counted as it runs; with a compiled transformer it is
left unmeasured (NaN) rather than risk a different kernel in a timed batch.

torch 2.14 has no formula for the CPU attention kernel that ``F.scaled_dot_product_attention`` runs
(``aten._scaled_dot_product_flash_attention_for_cpu``: counted 0) nor for the integer and packed
low-precision matmuls torchao dispatches to; `register_missing_formulas` registers them with
``register_flop_formula``: the attention kernels with torch's own SDPA formula (`sdpa_flop`), the
matmuls as 2·M·K·N from the activation ``(…, K)`` and the output ``(…, N)``, as torch counts ``mm``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch.utils import flop_counter

from samplers.cost import CallKey, ForwardMeter, ForwardReading

aten = torch.ops.aten

#: CPU and other fused attention kernels without a formula in torch.utils.flop_counter (torch 2.14).
ATTENTION_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable",
                     "_scaled_dot_product_attention_math_for_mps")
#: Low-precision matmuls (int8 × int8, int8/int4 packed weights, float8 v2) without a formula.
MATMUL_KERNELS = ("_int_mm", "_weight_int8pack_mm", "_weight_int4pack_mm", "_weight_int4pack_mm_for_cpu",
                  "_weight_int4pack_mm_with_scales_and_zeros", "_dyn_quant_matmul_4bit", "_scaled_mm_v2")


def _attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's own formula for the fused SDPA kernels (QKᵀ and PV as two batched matmuls)."""
    return flop_counter.sdpa_flop(query_shape, key_shape, value_shape)


def _low_precision_matmul_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    """2·M·K·N for an activation ``(…, K)`` and an output ``(…, N)``, whatever the weight's packing."""
    return 2 * math.prod(a_shape[:-1]) * int(a_shape[-1]) * int(out_shape[-1])  # each returns one tensor


def register_missing_formulas() -> list[str]:
    """Register the kernels above that this torch has and counts nothing for; returns their names."""
    added = []
    for names, formula in ((ATTENTION_KERNELS, _attention_flop), (MATMUL_KERNELS, _low_precision_matmul_flop)):
        for name in names:
            op = getattr(aten, name, None)
            if op is None or op in flop_counter.flop_registry:
                continue
            flop_counter.register_flop_formula(op)(formula)
            added.append(name)
    return added


register_missing_formulas()


class _RowCounter:
    """Rows the backend's network ran during a call (a forward pre-hook on it; None without a network)."""

    def __init__(self, network):
        self.network = network if isinstance(network, torch.nn.Module) else None
        self.rows = 0
        self._handle = None

    def __enter__(self) -> "_RowCounter":
        if self.network is not None:
            self._handle = self.network.register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def _count(self, module, args, kwargs) -> None:
        first = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
        if isinstance(first, torch.Tensor) and first.dim() > 0:
            self.rows += int(first.shape[0])

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()


def count_flops(fn, network=None) -> tuple[int, int]:
    """(FLOPs, rows the network ran) of `fn()`, counted by ``FlopCounterMode``; for tests and benchmarks."""
    with flop_counter.FlopCounterMode(display=False) as counter, _RowCounter(network) as rows:
        fn()
    return int(counter.get_total_flops()), rows.rows


class FlopMeter(ForwardMeter):
    """The harness's meter: counts a call's FLOPs when `counting` (or when its key is new), else looks
    them up in the table of the current variant (see the module docstring).

    ``model``: the backend; its ``transformer`` (looked up at each call: quantization swaps it) is where
    rows are counted. A backend without a network (the exact synthetic world) has FLOPs of whatever its
    logits compute, per logical row.
    """

    def __init__(self, model):
        self.model = model
        self.tables: dict[str, dict[CallKey, float]] = {}
        self.table: dict[CallKey, float] = {}
        self.counting = False
        #: calls counted outside a counting run (keys the warm-up did not see), and calls left unmeasured
        self.live_counts = 0
        self.unmeasured = 0

    def use(self, variant: str, counting: bool) -> None:
        """Measure for `variant` from now on; ``counting``: count every call (the variant's warm-up)."""
        self.table = self.tables.setdefault(variant, {})
        self.counting = counting

    @contextlib.contextmanager
    def measure(self, key: CallKey, rows: int) -> Iterator[ForwardReading]:
        reading = ForwardReading()
        if not self.counting and key in self.table:
            reading.flops_per_row = self.table[key]
            yield reading
            return
        if not self.counting and self.model.compiled.enabled:
            self.unmeasured += 1  # counting would run another kernel than the compiled one in a timed batch
            yield reading
            return
        with flop_counter.FlopCounterMode(display=False) as counter, _RowCounter(self.model.transformer) as ran:
            yield reading
        network_rows = ran.rows or rows
        if network_rows:
            reading.flops_per_row = counter.get_total_flops() / network_rows
            self.table[key] = reading.flops_per_row
        if not self.counting:
            self.live_counts += 1
