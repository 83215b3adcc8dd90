"""What one transformer call costs each image: row evaluations by kind, and FLOPs (docs/rundir.md, "Cost columns").

A forward pass is one network call whatever its rows: a CFG call evaluates two rows per image (the
conditional and the unconditional one), a conditional-only call one (a self-critic's critic pass,
CFG-Zero*'s zero-init steps, a cfg-interval step outside its interval), and PAG's extra pass one row of
the *perturbed* network. The engine records, per image, the rows of each kind it took part in
(`ROW_KINDS`) and, when a meter measures them, the FLOPs of those rows.

The FLOPs of a call are measured by a `ForwardMeter` the harness gives the engine (bench/flops.py counts
them with torch's ``FlopCounterMode``); the sampler only asks it for a reading around each call, keyed by
where the call sits in the generation (`CallKey`), and adds ``flops_per_row × rows`` to every image that
took part. Without a meter (the base `ForwardMeter`, the default) FLOPs are not measured: NaN.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

#: Columns of `Generation.rows`: the kinds of row evaluation an image takes part in.
ROW_KINDS = ("conditional", "unconditional", "perturbed")


@dataclass(frozen=True)
class CallKey:
    """Where a transformer call sits in its generation: the step, its rank among the calls of that step
    (0 = the step's own forward, then a critic's or PAG's), which halves it computes, and whether the
    network's attention is perturbed. A call's cost per row is a function of this key for every built-in
    model transform (token merging merges a fixed count; feature caching refreshes by step and call)."""

    step: int
    ordinal: int
    unconditional: bool
    perturbed: bool


@dataclass
class ForwardReading:
    """Filled in by the meter when the call is over: FLOPs of one row of it (None: not measured)."""

    flops_per_row: float | None = None


class ForwardMeter:
    """Measures transformer calls; this base measures nothing (FLOPs stay unknown)."""

    @contextlib.contextmanager
    def measure(self, key: CallKey, rows: int) -> Iterator[ForwardReading]:
        """Context around one call of `rows` logical rows (batch × halves); the reading is complete on exit."""
        yield ForwardReading()

