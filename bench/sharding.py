"""Sharded runs: which process is which, which units each one generates, and what the merge collects
(docs/scaling.md).

A benchmark is spread over processes by giving each one a *shard* ``i`` of ``n``. The shard comes from
the first of these that is set:

1. ``--shard i/n`` on the command line (separate jobs on any scheduler; 0-based, ``0/2`` and ``1/2``);
2. ``RANK`` / ``WORLD_SIZE``, set by ``torchrun`` and ``accelerate launch`` (``LOCAL_RANK`` picks the GPU);
3. ``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT`` (a SLURM job array; ids need not start at 0,
   ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_STEP`` map them to 0 … n−1).

Otherwise the run is one shard of one. Every shard plans the *whole* benchmark (the plan is
deterministic), then keeps its share with `assign`: greedy longest-processing-time scheduling (Graham
1969, "Bounds on multiprocessing timing anomalies") with a unit's declared transformer calls
(`SamplerVariant.forward_passes`) as its cost, so that expensive variants (zig-zag, search) are spread
over all shards instead of landing on one. The assignment depends only on the set of units, never on
the order of the config lists, the machine or what is already done, so a re-run of one shard takes
the same units. A unit's image does not depend on its shard: sharding only chooses who makes it.

Each shard leaves a record, ``shards/<label>.json`` (`ShardRecords`): its host, device, units and
throughput. The merge reads them for the run's generation time (first start to last finish), its
merged throughput and, when shards are missing, which ones to re-run.
"""
from __future__ import annotations

import heapq
import json
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from mgt_common.errors import UserError

from .rundir.provenance import device_description
from .rundir.store import atomic_write_text

_SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based), and where that came from (for the manifest and messages)."""

    index: int = 0
    count: int = 1
    source: str = "single process"
    #: the GPU index of this process on its node (torchrun / accelerate ``LOCAL_RANK``), if the launcher set one.
    local_rank: int | None = None

    @property
    def is_sharded(self) -> bool:
        return self.count > 1

    @property
    def label(self) -> str:
        """The journal suffix of this shard ("0of2"); empty for an unsharded run, which keeps the plain names."""
        return f"{self.index}of{self.count}" if self.is_sharded else ""

    @property
    def launched_together(self) -> bool:
        """True when the launcher started every shard at once and can rendezvous them (torchrun, accelerate)."""
        return self.is_sharded and self.source == "torchrun"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/n"`` → `Shard` (0 ≤ i < n); a malformed value is a user error naming the flag."""
    match = _SHARD_PATTERN.match(str(text))
    if not match:
        raise UserError(f"--shard {text!r}: give it as INDEX/COUNT with a 0-based index, e.g. --shard 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: the index must be in 0 … COUNT−1 (COUNT ≥ 1), e.g. 0/{max(count, 2)} "
                        f"to {max(count, 2) - 1}/{max(count, 2)}")
    return Shard(index, count, "--shard")


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer; unset it or fix the launcher") from None


def detect_shard(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Shard:
    """This process's shard: ``--shard`` first, then the torchrun/accelerate variables, then a SLURM job array."""
    env = os.environ if environ is None else environ
    world_size = _int_env(env, "WORLD_SIZE")
    local_rank = _int_env(env, "LOCAL_RANK")
    if explicit is not None:
        shard = parse_shard(explicit)
        if world_size is not None and world_size > 1:
            # Every rank would get the same --shard and do the same work twice.
            raise UserError(f"--shard {explicit} under a launcher with WORLD_SIZE={world_size}: drop --shard, the "
                            "launcher's ranks already shard the run")
        return Shard(shard.index, shard.count, shard.source, local_rank)
    if world_size is not None:
        rank = _int_env(env, "RANK")
        if rank is None:
            raise UserError(f"WORLD_SIZE={world_size} is set but RANK is not; launch with torchrun or accelerate "
                            "launch, or pass --shard INDEX/COUNT")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"RANK={rank} / WORLD_SIZE={world_size} from the launcher are inconsistent")
        if world_size > 1:
            array_tasks = _int_env(env, "SLURM_ARRAY_TASK_COUNT")
            if array_tasks is not None and array_tasks > 1:
                # Each array task would shard the whole run again: the tasks would duplicate each other's work
                # and append to the same journals.
                raise UserError(f"torchrun/accelerate (WORLD_SIZE={world_size}) inside a SLURM job array of "
                                f"{array_tasks} tasks: use one of the two — a job array of single processes, or "
                                "one multi-node torchrun job (see docs/scaling.md)")
            return Shard(rank, world_size, "torchrun", local_rank)
        return Shard(0, 1, "single process", local_rank)
    task_id = _int_env(env, "SLURM_ARRAY_TASK_ID")
    task_count = _int_env(env, "SLURM_ARRAY_TASK_COUNT")
    if task_id is not None and task_count is not None:
        first = _int_env(env, "SLURM_ARRAY_TASK_MIN") or 0
        stride = _int_env(env, "SLURM_ARRAY_TASK_STEP") or 1
        index = (task_id - first) // stride
        if task_count < 1 or not 0 <= index < task_count or (task_id - first) % stride:
            raise UserError(f"SLURM_ARRAY_TASK_ID={task_id} does not fit an array of {task_count} tasks from "
                            f"{first} in steps of {stride}; use --array=0-{max(task_count - 1, 0)} or pass --shard")
        return Shard(index, task_count, "slurm-array", local_rank) if task_count > 1 else Shard(local_rank=local_rank)
    return Shard(local_rank=local_rank)


def assign(units: Sequence, count: int, cost) -> list[list]:
    """Split `units` into `count` shares of near-equal total cost (greedy LPT, deterministic).

    Units are taken by decreasing cost, ties broken by variant name then unit key (so the result depends
    only on the set of units, and each variant's units are dealt out in turn, which also keeps every
    shard's batches full), and each goes to the share with the least cost so far, ties to the lowest
    index. LPT's makespan is within 4/3 of the optimum; for equal-cost units it is a round robin. Each
    share is returned in the order of `units` (the plan order), so that a share's units of one variant
    stay consecutive and batch together.
    """
    if count < 1:
        raise ValueError(f"need at least one shard, got {count}")
    order = {id(unit): position for position, unit in enumerate(units)}
    ranked = sorted(units, key=lambda u: (-cost(u), u.variant, u.key))
    loads = [(0, index) for index in range(count)]  # a heap of (cost so far, shard index)
    shares: list[list] = [[] for _ in range(count)]
    for unit in ranked:
        load, index = heapq.heappop(loads)
        shares[index].append(unit)
        heapq.heappush(loads, (load + cost(unit), index))
    return [sorted(share, key=lambda u: order[id(u)]) for share in shares]


def unit_cost(variants: Mapping, steps: int | Mapping[str, int]):
    """A unit's cost: the transformer calls its variant declares for one image (`SamplerVariant.forward_passes`).

    `steps`: the run's step count, or each variant's own (a sweep, bench/sweep.py).
    """
    per_variant = {name: max(int(variant.forward_passes(steps[name] if isinstance(steps, Mapping) else steps)), 1)
                   for name, variant in variants.items()}
    return lambda unit: per_variant[unit.variant]


def shard_units(units: Sequence, shard: Shard, variants: Mapping, steps: int | Mapping[str, int]) -> list:
    """The units that `shard` generates (all of them for an unsharded run)."""
    if not shard.is_sharded:
        return list(units)
    return assign(units, shard.count, unit_cost(variants, steps))[shard.index]


class ShardRecords:
    """``shards/<label>.json`` in a run directory: what each shard did, where and how fast (informative only:
    the journals decide which units are done)."""

    def __init__(self, root: Path | str):
        self.folder = Path(root) / "shards"

    def write(self, shard: Shard, device: str, assigned: int, generated: int, started: float, seconds: float,
              throughput: dict[str, Any] | None) -> None:
        """This shard's record: `assigned` units, `generated` of them now, from `started` (epoch seconds)."""
        record = {
            "shard": str(shard), "label": shard.label, "source": shard.source,
            "host": platform.node(), "pid": os.getpid(), "device": device_description(device),
            "units": assigned, "generated": generated, "reused": assigned - generated,
            "started": started, "finished": time.time(), "generate_seconds": seconds, "throughput": throughput,
        }
        atomic_write_text(self.folder / f"{shard.label}.json", json.dumps(record, indent=2, sort_keys=True) + "\n")

    def read(self) -> dict[str, dict[str, Any]]:
        """Every readable record by label ("0of2"); a damaged one is skipped."""
        records = {}
        for path in sorted(self.folder.glob("*.json")) if self.folder.exists() else []:
            try:
                records[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
        return records

    def counts(self) -> list[int]:
        """The shard counts the run was launched with (normally one), from the records' labels."""
        return sorted({int(label.split("of")[1]) for label in self.read()})

    def summary(self) -> dict[str, Any] | None:
        """The manifest's ``shards`` entry: the shard count (a list if layouts were mixed) and every record."""
        records = self.read()
        if not records:
            return None
        counts = sorted({int(label.split("of")[1]) for label in records})
        return {"count": counts[-1] if len(counts) == 1 else counts, "records": records}

    def span(self) -> float | None:
        """Wall-clock seconds from the first shard's start to the last shard's end (the sharded generate time)."""
        records = [r for r in self.read().values() if r.get("generated")]
        if not records:
            return None
        return round(max(r["finished"] for r in records) - min(r["started"] for r in records), 3)

    def merged_throughput(self) -> dict[str, Any] | None:
        """The run's throughput: all shards' images over the span; peak memory of the worst shard."""
        records = [r for r in self.read().values() if r.get("throughput")]
        if not records:
            return None
        images = sum(r["throughput"]["images"] for r in records)
        span = self.span()
        merged = {"images": images, "seconds": span, "shards": len(records),
                  "images_per_second": round(images / span, 4) if span else None}
        for key in ("peak_memory_gib", "peak_memory_per_image_gib", "peak_rss_gib"):
            values = [r["throughput"][key] for r in records if r["throughput"].get(key) is not None]
            if values:
                merged[key] = max(values)  # the worst shard: what one device must hold
        return merged

    def missing_by_shard(self, missing: Sequence, units: Sequence, cost) -> str:
        """'shard 1/2: 12 images' for the shard layout the run was launched with (`cost` as in `assign`)."""
        count = (self.counts() or [1])[-1]
        shares = assign(units, count, cost) if count > 1 else [list(units)]
        wanted = {f"{u.variant}/{u.key}" for u in missing}
        parts = [f"shard {index}/{count}: {sum(f'{u.variant}/{u.key}' in wanted for u in share)} images"
                 for index, share in enumerate(shares) if any(f"{u.variant}/{u.key}" in wanted for u in share)]
        return "; ".join(parts)


def check_complete(finished: Mapping[str, Any], units: Sequence, records: ShardRecords, cost, who: str) -> None:
    """Refuse to merge while any unit of the plan is not in the journals (`finished`), naming the shards to re-run."""
    missing = [u for u in units if f"{u.variant}/{u.key}" not in finished]
    if missing:
        raise UserError(f"{who}: {len(missing)} of {len(units)} images are not generated yet "
                        f"({records.missing_by_shard(missing, units, cost)}); re-run those shards with the same "
                        "command (they resume where they stopped), then merge with --merge RUN_DIR")
