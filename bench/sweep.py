"""Sweeps: a config whose `steps`, `guidance` or variant parameters are lists becomes a grid of variants.

Papers report curves, not points: quality against the number of steps (Meissonic, arXiv 2410.08261,
and "Bag of Design Choices", arXiv 2411.10781, compare 8/16/32/64 steps) or against the CFG scale. A
sweep writes the grid in the config::

    steps = [8, 16, 32]
    guidance = [2.0, 3.0]
    variants.noise-reg.logits_processors.0.scale = [0.5, 1, 2, 4]   # a patch of a preset's parameter

and the harness runs every combination as a variant of its own, named readably after its swept values
(``noise-reg[scale=2]@steps=8,cfg=3``). The baseline is expanded over steps and guidance only, and
every point is paired with the baseline at the *same* steps and guidance. A config without lists is a
single point per variant with its own name and its own steps and guidance, so its unit keys do not
change.

Two ways to sweep a variant parameter:

* a list where a component's parameter takes one value, inside a full component table
  (``logits_processors = [{ name = "noise-regularization", scale = [0.5, 1] }]``);
* a *patch* of a variant's resolved components, written with TOML dotted keys:
  ``variants.NAME.KIND.PARAM = …`` for a single-component kind, ``variants.NAME.KIND.INDEX.PARAM = …``
  for the list kinds (``logits_processors``, ``probability_correctors``). A patch changes only that
  parameter of whatever ``NAME`` already is (a preset, or a table of its own).

A parameter whose type is itself a list (its component declares ``list[...]``) is not swept.
"""
from __future__ import annotations

import copy
import itertools
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mgt_common.errors import ConfigError

# The sampler names (kinds) are imported where used: bench.config imports this module for
# `check_run_axis`, and reading a config must not import torch.

#: The run-level keys that may be lists, with the short name they take in variant names.
RUN_AXES = {"steps": "steps", "guidance": "cfg"}


@dataclass(frozen=True)
class SweepPoint:
    """One variant at one point of the grid: what to build, at which steps and guidance, paired with whom."""

    name: str                      # the variant's name in the run (samples.csv's `variant`)
    variant: str                   # the config's variant name it expands
    steps: int
    guidance: float
    #: the swept values of this point, by axis label (e.g. {"steps": 8, "scale": 2.0}); empty when unswept
    values: dict[str, Any] = field(default_factory=dict)
    baseline: str = ""             # the expanded name of the baseline at the same steps and guidance
    #: the full variant table with scalar parameters (None: build `variant` from the config as it is)
    spec: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """What the manifest keeps about this point (the report's curves are drawn from it)."""
        return {"variant": self.variant, "steps": self.steps, "guidance": self.guidance,
                "values": dict(self.values), "baseline": self.baseline}


@dataclass
class Sweep:
    """The expanded grid: points in run order (the baseline's first) and the swept axes with their values."""

    points: list[SweepPoint]
    axes: dict[str, list[Any]]     # axis label → values, in the order the config lists them
    baseline: str                  # the config's baseline variant name

    @property
    def is_sweep(self) -> bool:
        return bool(self.axes)

    @property
    def reference_baseline(self) -> str:
        """The baseline of the first grid point: the run's single `baseline` (Bradley–Terry anchor, cost)."""
        return self.points[0].baseline

    def by_name(self) -> dict[str, SweepPoint]:
        return {p.name: p for p in self.points}

    def record(self) -> dict[str, Any]:
        return {"axes": {k: list(v) for k, v in self.axes.items()}, "baseline": self.baseline,
                "points": {p.name: p.record() for p in self.points}}


# -- run-level values ---------------------------------------------------------------------------


def as_values(value: Any) -> list[Any]:
    """A scalar or a list of values → the list (the grid of one run-level axis)."""
    return list(value) if isinstance(value, list) else [value]


def check_run_axis(key: str, value: Any, check_one, where: str) -> None:
    """`steps` / `guidance`: one value, or a non-empty list of distinct values each valid on its own."""
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: {key} is an empty list; give one value or a list of values to sweep")
        for item in value:
            if isinstance(item, list):
                raise ConfigError(f"{where}: {key} = {value!r}: a sweep is a flat list of values")
            check_one(item, f"{key} (in the sweep {value!r})")
        if len({float(v) for v in value}) != len(value):
            raise ConfigError(f"{where}: {key} sweeps a value twice: {value!r}")
    else:
        check_one(value, key)


# -- variant parameters -------------------------------------------------------------------------


def _kinds() -> tuple[tuple[str, ...], dict[str, str]]:
    from samplers.variant import LIST_KINDS, SINGLE_KINDS

    return SINGLE_KINDS, LIST_KINDS


def _is_patch(kind: str, value: Any) -> bool:
    """A dotted-key patch (``KIND.PARAM = …`` / ``KIND.INDEX.PARAM = …``) rather than a component definition."""
    _, LIST_KINDS = _kinds()
    if not isinstance(value, Mapping):
        return False
    if kind in LIST_KINDS:
        return True  # a list kind is written as a list; a table can only be {index: {param: …}}
    return "name" not in value


def _as_table(component: Any) -> dict[str, Any]:
    return {"name": component} if isinstance(component, str) else dict(component)


def _apply_patch(name: str, spec: dict[str, Any], kind: str, patch: Mapping[str, Any]) -> None:
    where = f"variants.{name}.{kind}"
    _, LIST_KINDS = _kinds()
    if kind in LIST_KINDS:
        items = [_as_table(c) for c in spec.get(kind, [])]
        for index, params in patch.items():
            if not str(index).isdigit() or int(index) >= len(items):
                raise ConfigError(f"{where}.{index}: {name} has {len(items)} {kind} (indices 0 to "
                                  f"{len(items) - 1}); patch one of them, e.g. {where}.0.PARAM = …"
                                  if items else f"{where}.{index}: {name} has no {kind} to patch")
            if not isinstance(params, Mapping):
                raise ConfigError(f"{where}.{index}: expected parameters (e.g. {where}.{index}.scale = 2), got {params!r}")
            if "name" in params:
                raise ConfigError(f"{where}.{index}.name: a patch changes parameters, not the component; "
                                  f"write the whole list ({kind} = [...]) to replace it")
            items[int(index)].update(copy.deepcopy(dict(params)))
        spec[kind] = items
    else:
        table = _as_table(spec[kind])
        table.update(copy.deepcopy(dict(patch)))
        spec[kind] = table


def resolved_table(name: str, tables: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The full spec of variant `name` with dotted-key patches applied (lists still in place)."""
    from samplers.variant import resolve_spec

    SINGLE_KINDS, LIST_KINDS = _kinds()
    own = tables.get(name)
    if own is None:
        return resolve_spec(name, tables)
    patches = {k: v for k, v in own.items() if k in (*SINGLE_KINDS, *LIST_KINDS) and _is_patch(k, v)}
    if not patches:
        return resolve_spec(name, tables)
    rest = {k: v for k, v in own.items() if k not in patches}
    others = {k: v for k, v in tables.items() if k != name}
    if set(rest) - {"description"}:
        others[name] = rest            # a table of its own plus patches of it
    spec = resolve_spec(name, others)  # a preset patched: the preset itself
    if "description" in rest:
        spec["description"] = rest["description"]
    for kind, patch in patches.items():
        _apply_patch(name, spec, kind, patch)
    return spec


def _list_typed(kind: str, component: str, param: str) -> bool:
    """True when the component declares `param` as a list (a list value is then one value, not a sweep)."""
    from samplers.components import component_class

    try:
        cls = component_class(kind, component)
        hint = typing.get_type_hints(cls).get(param)
    except Exception:  # unknown names are reported by build_variant with the known ones
        return False
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        origin = next((typing.get_origin(a) for a in typing.get_args(hint) if a is not type(None)), None)
    return origin in (list, tuple)


def parameter_axes(name: str, spec: Mapping[str, Any]) -> list[tuple[tuple, list[Any]]]:
    """The swept parameters of a resolved spec: ``[((kind, index|None, param), values), …]`` in spec order."""
    SINGLE_KINDS, LIST_KINDS = _kinds()
    axes = []
    for kind in (*SINGLE_KINDS, *LIST_KINDS):
        if kind not in spec:
            continue
        entries = list(enumerate(spec[kind])) if kind in LIST_KINDS else [(None, spec[kind])]
        for index, component in entries:
            if not isinstance(component, Mapping):
                continue
            cname = component.get("name")
            for param, value in component.items():
                if param == "name" or not isinstance(value, list) or _list_typed(
                        LIST_KINDS.get(kind, kind), str(cname), param):
                    continue
                path = f"variants.{name}.{kind}" + (f".{index}" if index is not None else "") + f".{param}"
                if not value:
                    raise ConfigError(f"{path} is an empty list; give one value or a list of values to sweep")
                if any(isinstance(v, (list, dict)) for v in value):
                    raise ConfigError(f"{path} = {value!r}: a sweep is a flat list of values")
                if len({repr(v) for v in value}) != len(value):
                    raise ConfigError(f"{path} sweeps a value twice: {value!r}")
                axes.append(((kind, index, param), list(value)))
    return axes


def _labels(name: str, axes: Sequence[tuple[tuple, list]]) -> list[str]:
    """Short labels of a variant's swept parameters: the parameter name, the full path where two share it."""
    short = [param for (_, _, param), _ in axes]
    return [s if short.count(s) == 1 else ".".join(str(x) for x in path if x is not None)
            for s, (path, _) in zip(short, axes)]


def _with_value(spec: Mapping[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    kind, index, param = path
    out = copy.deepcopy(dict(spec))
    if index is None:
        out[kind] = {**_as_table(out[kind]), param: value}
    else:
        items = [_as_table(c) for c in out[kind]]
        items[index] = {**items[index], param: value}
        out[kind] = items
    return out


def format_value(value: Any) -> str:
    """Values in names: 2.0 → "2", 0.5 → "0.5", strings as they are."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def point_name(variant: str, params: Mapping[str, Any], run_values: Mapping[str, Any]) -> str:
    """``noise-reg[scale=2]@steps=8,cfg=3``: only swept values appear; an unswept variant keeps its name."""
    name = variant
    if params:
        name += "[" + ",".join(f"{k}={format_value(v)}" for k, v in params.items()) + "]"
    if run_values:
        name += "@" + ",".join(f"{RUN_AXES[k]}={format_value(v)}" for k, v in run_values.items())
    return name


# -- the grid -----------------------------------------------------------------------------------


def expand(values: Mapping[str, Any], where: str = "config") -> Sweep:
    """Expand a validated config's `steps`, `guidance` and variant parameter lists into sweep points.

    Order: the config's `samplers` (as an unswept run orders them), then steps, guidance and the
    variant's own parameters, each in the order listed. Raises ConfigError (exit 2) for a swept baseline parameter and for
    names that collide.
    """
    samplers = list(values["samplers"])
    baseline = values["baseline"]
    tables = values.get("variants") or {}
    run_axes = {k: as_values(values[k]) for k in RUN_AXES}
    swept_run = [k for k in RUN_AXES if isinstance(values[k], list) and len(values[k]) > 1]
    axes: dict[str, list[Any]] = {k: run_axes[k] for k in swept_run}
    grid = list(itertools.product(*run_axes.values()))

    def run_point(combo) -> tuple[int, float, dict[str, Any]]:
        steps, guidance = combo  # as written (3 stays 3): an unswept run's unit keys hash them that way
        return steps, guidance, {k: v for k, v in zip(RUN_AXES, combo) if k in swept_run}

    SINGLE_KINDS, LIST_KINDS = _kinds()
    points: list[SweepPoint] = []
    for variant in samplers:  # the config's order, as an unswept run has always used
        spec = resolved_table(variant, tables)
        params = parameter_axes(variant, spec)
        if params and variant == baseline:
            paths = ", ".join(".".join(str(x) for x in p if x is not None) for p, _ in params)
            raise ConfigError(f"{where}: the baseline {variant!r} sweeps {paths}; every point needs one baseline "
                              f"to be paired with, so sweep a copy instead: [variants.{variant}-sweep] "
                              f"base = \"{variant}\" with the list, and add it to samplers")
        labels = _labels(variant, params)
        for label, (_, vals) in zip(labels, params):
            axes.setdefault(label, [])
            axes[label].extend(v for v in vals if v not in axes[label])
        patched = variant in tables and any(
            _is_patch(k, v) for k, v in tables[variant].items() if k in (*SINGLE_KINDS, *LIST_KINDS))
        for combo in grid:
            steps, guidance, shown = run_point(combo)
            base_name = point_name(baseline, {}, shown)
            for param_combo in itertools.product(*(vals for _, vals in params)):
                own = dict(zip(labels, param_combo))
                table = spec
                for (path, _), value in zip(params, param_combo):
                    table = _with_value(table, path, value)
                name = point_name(variant, own, shown)
                full = None
                if params or patched:
                    full = {k: v for k, v in table.items() if k != "base"}
                    swept = ", ".join(f"{k} = {format_value(v)}" for k, v in own.items())
                    full["description"] = f"{table.get('description', variant)}" + (f"; {swept}" if swept else "")
                points.append(SweepPoint(name=name, variant=variant, steps=steps, guidance=guidance,
                                         values={**shown, **own}, baseline=base_name, spec=full))
    seen: dict[str, str] = {}
    for p in points:
        if p.name in seen:
            raise ConfigError(f"{where}: the sweep names two variants {p.name!r}; rename one of the variants")
        seen[p.name] = p.variant
    return Sweep(points=points, axes=axes, baseline=baseline)


def build_variants(sweep: Sweep, tables: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Every point's ready-to-run `SamplerVariant`, named as the point (errors name the config's variant)."""
    from samplers.variant import build_variant

    tables = dict(tables or {})
    variants = {}
    for point in sweep.points:
        if point.spec is None:
            variant = build_variant(point.variant, tables)
        else:
            # the point's own scalar table, under the config's name so that an error names what the user wrote
            variant = build_variant(point.variant, {**tables, point.variant: point.spec})
        variant.name = point.name
        variants[point.name] = variant
    return variants


def steps_by_variant(sweep: Sweep) -> dict[str, int]:
    """Each point's step count (what its declared forward passes and shard cost are computed at)."""
    return {p.name: int(p.steps) for p in sweep.points}
