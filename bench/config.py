"""Experiment configuration: a TOML file whose keys equal the CLI flags (``batch_size`` ↔ ``--batch-size``).

The default run is `bench/configs/default.toml`, shipped in the package. Every key is documented there
and in the README's config reference. `load_config` merges file, then CLI overrides, then checks every
value, so that a bad value fails before anything is written.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mgt_common.errors import ConfigError

from .sweep import check_run_axis

CONFIG_DIR = resources.files("bench") / "configs"

#: Keys that define what is generated; a run directory made with other values is refused.
GENERATION_KEYS = ("model", "prompts", "limit", "seeds", "steps", "guidance", "height", "width",
                   "negative_prompt", "baseline", "samplers", "variants", "device", "dtype")

DEFAULTS: dict[str, Any] = {
    "name": "",
    "description": "",
    "model": {"name": "synthetic"},
    "prompts": "synthetic-world",
    "limit": None,
    "seeds": [0],
    "steps": 16,
    "guidance": 2.5,
    "height": None,
    "width": None,
    "negative_prompt": None,
    "baseline": "vanilla",
    "samplers": ["vanilla"],
    "variants": {},
    "metrics": ["world-loglik", "world-alignment", "fid"],
    "batch_size": 8,
    "device": "cpu",
    "dtype": "float32",
    "out": None,
    "bootstrap": 1000,
    "report": {},
    "plugins": [],
}
KNOWN_KEYS = set(DEFAULTS)
#: Keys that take one value: a list there is a mistake, not a sweep (steps and guidance may be lists).
SCALAR_KEYS = ("name", "description", "limit", "height", "width", "negative_prompt", "baseline", "batch_size",
               "device", "dtype", "out", "bootstrap")

#: Upper limits of the numeric keys. Each is far beyond any sensible run, and catches a typo
#: (``steps = 1000000000``) or an overflow (``guidance = 1e308``) at config time, before anything is
#: written, instead of a traceback hours into generation.
MAX_STEPS = 10_000           # every step is a transformer call per image; Meissonic uses 64
MAX_GUIDANCE = 100.0         # w · (ℓ_c − ℓ_u) past this saturates every softmax (and overflows float16)
MAX_SIDE = 16_384            # pixels
MAX_BATCH = 4_096
MAX_BOOTSTRAP = 100_000      # resamples × prompts floats are held at once
MAX_SEED = 2**63 - 1         # seeds are int64 in samples.csv and in torch's generators


@dataclass
class BenchConfig:
    """The resolved configuration of one benchmark run."""

    values: dict[str, Any]
    source: str = "<defaults>"

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def model_name(self) -> str:
        return self.values["model"]["name"]

    @property
    def model_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.values["model"].items() if k != "name"}

    @property
    def prompt_source(self) -> tuple[str, dict[str, Any]]:
        prompts = self.values["prompts"]
        if isinstance(prompts, str):
            return prompts, {}
        params = dict(prompts)
        return params.pop("source"), params

    def sweep(self):
        """The grid of variants this config runs (one point per variant when nothing is swept; bench/sweep.py)."""
        from .sweep import expand

        return expand(self.values, self.source)

    def generation_hash(self) -> str:
        """Hash of everything that decides which images exist and what they look like."""
        subset = {key: self.values[key] for key in GENERATION_KEYS}
        # Only the device *type* changes random streams (a CUDA generator differs from a CPU one).
        subset["device"] = str(subset["device"]).split(":")[0]
        return stable_hash(subset)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.values)


def stable_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def shipped_configs() -> dict[str, str]:
    """Shipped config names → first comment line (for --list)."""
    out = {}
    for item in sorted(CONFIG_DIR.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            first = next((line.lstrip("# ").strip() for line in item.read_text().splitlines() if line.startswith("#")), "")
            out[item.name[:-5]] = first
    return out


def read_toml(source: str) -> tuple[dict[str, Any], str]:
    """A config by path, or a shipped config by name (``design-choices`` → bench/configs/design-choices.toml)."""
    path = Path(source).expanduser()
    if not path.exists():
        shipped = CONFIG_DIR / f"{source.removesuffix('.toml')}.toml"
        if not shipped.is_file():
            names = ", ".join(shipped_configs())
            raise ConfigError(f"--config {source}: no such file and no shipped config of that name (shipped: {names})")
        text, where = shipped.read_text(encoding="utf-8"), f"shipped config {source!r}"
    else:
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {source}: cannot read it ({exc})") from None
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {where}: not valid TOML ({exc}); fix the file or pass another") from None


def load_config(source: str | None = None, overrides: Mapping[str, Any] | None = None,
                assignments: Sequence[tuple[str, Any]] = ()) -> BenchConfig:
    """Defaults ← the config file (default: the shipped `default`) ← CLI overrides; then validated.

    `assignments` are ``--set KEY.PATH=VALUE`` pairs, applied last (``model.compile``, ``prompts.n``).
    Plugin files (the ``plugins`` key and ``--plugin``) are imported once their paths check out and
    before the variants are checked, since they register the names variants use.
    """
    data, where = read_toml(source or "default")
    check_keys(data, where)
    values = copy.deepcopy(DEFAULTS)
    values.update(copy.deepcopy(data))
    if isinstance(values["plugins"], list):  # relative to the file that names them
        base = Path(where).parent if Path(where).is_file() else Path.cwd()
        values["plugins"] = [str((base / p).expanduser()) if isinstance(p, str) else p for p in values["plugins"]]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "plugins":  # --plugin adds to the file's list
            values["plugins"] = [*values["plugins"], *value] if isinstance(values["plugins"], list) else value
        elif key == "report" and isinstance(values["report"], dict):
            values["report"] = {**values["report"], **value}
        else:
            values[key] = value
    for path, value in assignments:
        assign(values, path, value, where)
    if isinstance(values["model"], str):
        values["model"] = {"name": values["model"]}
    validate(values, where)
    values["plugins"] = load_plugin_files(values["plugins"])
    if values["device"] == "auto":
        import torch

        values["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return BenchConfig(values=values, source=where)


def check_keys(data: Mapping[str, Any], where: str) -> None:
    """Unknown top-level keys are errors, with the nearest known key."""
    for key in data:
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}.{did_you_mean(key, KNOWN_KEYS)} "
                              f"Valid keys: {', '.join(sorted(KNOWN_KEYS))}")


def did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


#: tables whose keys `--set` may assign (``--set model.compile=true``, ``--set report.alpha=0.01``)
SET_TABLES = ("model", "prompts", "report", "variants")


def assign(values: dict[str, Any], path: str, value: Any, where: str) -> None:
    """``--set TABLE.KEY=VALUE``: set one key of a table (``variants.NAME.KIND`` for a variant)."""
    parts = path.split(".")
    if len(parts) < 2 or parts[0] not in SET_TABLES or not all(parts):
        raise ConfigError(f"--set {path}: give TABLE.KEY=VALUE with TABLE one of {', '.join(SET_TABLES)} "
                          "(top-level keys have their own flags, e.g. --steps)")
    table = values
    for depth, part in enumerate(parts[:-1]):
        current = table.get(part)
        if isinstance(current, str) and depth == 0 and part in ("model", "prompts"):
            current = {"name" if part == "model" else "source": current}
        if current is None:
            current = {}
        if not isinstance(current, dict):
            raise ConfigError(f"--set {path}: {'.'.join(parts[:depth + 1])} is not a table")
        table[part] = current
        table = current
    table[parts[-1]] = value


def load_plugin_files(paths: Sequence[str]) -> list[str]:
    """Import each plugin file once (bench and --plugin may name the same file); their resolved paths."""
    from mgt_common.registry import load_plugin_file

    resolved = []
    for path in paths:
        record = load_plugin_file(path)
        if record["path"] not in resolved:
            resolved.append(record["path"])
    return resolved


# -- validation ---------------------------------------------------------------------------------------

def validate(values: dict[str, Any], where: str) -> None:
    """Every key's type and range; raises ConfigError (exit 2) naming the key and the rule."""
    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{where}: {key} {message}")

    for key in SCALAR_KEYS:
        if isinstance(values[key], list):
            fail(key, f"cannot be a list ({values[key]!r}): only steps, guidance and variant parameters can be swept")
    for key in ("name", "description"):
        if not isinstance(values[key], str):
            fail(key, f"must be a string, got {values[key]!r}")
    check_name(values["name"], fail)
    if values["out"] is not None and not (isinstance(values["out"], str) and values["out"].strip()):
        fail("out", f"must be a directory path (a string), got {values['out']!r}")
    model = values["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"].strip():
        fail("model", "must be a model name or a table with 'name' (e.g. [model] name = \"synthetic\")")
    prompts = values["prompts"]
    if isinstance(prompts, dict):
        if not isinstance(prompts.get("source"), str) or not prompts["source"].strip():
            fail("prompts", "table needs 'source', a prompt-set name or a file path (e.g. [prompts] source = \"drawbench\")")
    elif not (isinstance(prompts, str) and prompts.strip()):
        fail("prompts", f"must be a prompt-set name, a file path, or a table with 'source', got {prompts!r}")
    if values["limit"] is not None and (not _is_int(values["limit"]) or values["limit"] < 1):
        fail("limit", f"must be a positive integer, got {values['limit']!r}")
    seeds = values["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and 0 <= s <= MAX_SEED for s in seeds):
        fail("seeds", f"must be a non-empty list of integers in [0, 2^63 − 1], got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"has duplicates: {seeds!r}")

    def check_steps(value: Any, key: str) -> None:
        if not _is_int(value) or value < 1:
            fail(key, f"must be an integer >= 1, got {value!r}")
        if value > MAX_STEPS:
            fail(key, f"must be at most {MAX_STEPS} (each step is a transformer call per image), got {value!r}")

    def check_guidance(value: Any, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            fail(key, f"must be a finite number >= 0, got {value!r}")
        if value > MAX_GUIDANCE:
            fail(key, f"must be at most {MAX_GUIDANCE:g} (a larger CFG scale saturates every softmax), got {value!r}")

    # steps and guidance may be lists: a sweep (bench/sweep.py, docs/sweeps.md)
    check_run_axis("steps", values["steps"], check_steps, where)
    check_run_axis("guidance", values["guidance"], check_guidance, where)
    for key in ("height", "width"):
        if values[key] is not None and (not _is_int(values[key]) or not 1 <= values[key] <= MAX_SIDE):
            fail(key, f"must be a positive integer of at most {MAX_SIDE} pixels, got {values[key]!r}")
    if values["negative_prompt"] is not None and not isinstance(values["negative_prompt"], str):
        fail("negative_prompt", f"must be a string, got {values['negative_prompt']!r}")
    if not isinstance(values["baseline"], str) or not values["baseline"].strip():
        fail("baseline", f"must be a variant name, got {values['baseline']!r}")
    samplers = values["samplers"]
    if isinstance(samplers, str):
        samplers = values["samplers"] = [s.strip() for s in samplers.split(",") if s.strip()]
    if not isinstance(samplers, list) or not samplers or not all(isinstance(s, str) and s for s in samplers):
        fail("samplers", f"must be a non-empty list of variant names, got {samplers!r}")
    if len(set(samplers)) != len(samplers):
        fail("samplers", f"lists a variant twice: {samplers!r}")
    if values["baseline"] not in samplers:
        samplers.insert(0, values["baseline"])  # the baseline is always generated: every comparison needs it
    variants = values["variants"]
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        fail("variants", "must be tables: [variants.NAME] with component keys")
    check_dotted_variant_names(variants, where)
    metrics = values["metrics"]
    if isinstance(metrics, str):
        metrics = values["metrics"] = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list) or not all(isinstance(m, str) or (isinstance(m, dict) and isinstance(m.get("name"), str))
                                                for m in metrics):
        fail("metrics", f"must be a list of metric names or tables with 'name', got {metrics!r}")
    if not _is_int(values["batch_size"]) or not 1 <= values["batch_size"] <= MAX_BATCH:
        fail("batch_size", f"must be an integer >= 1 (at most {MAX_BATCH}), got {values['batch_size']!r}")
    if values["dtype"] not in ("float32", "bfloat16", "float16"):
        fail("dtype", f"must be float32, bfloat16 or float16, got {values['dtype']!r}")
    if not isinstance(values["device"], str) or not values["device"].split(":")[0] in ("cpu", "cuda", "mps", "auto"):
        fail("device", f"must be cpu, cuda, cuda:N, mps or auto, got {values['device']!r}")
    if not _is_int(values["bootstrap"]) or not 100 <= values["bootstrap"] <= MAX_BOOTSTRAP:
        fail("bootstrap", f"must be an integer in [100, {MAX_BOOTSTRAP}] (bootstrap resamples), got {values['bootstrap']!r}")
    plugins = values["plugins"]
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        fail("plugins", f"must be a list of plugin file paths, got {plugins!r}")
    validate_report(values["report"], metric_labels(metrics), fail)


def check_name(name: str, fail) -> None:
    """A run's name names a folder under results/: never a path (``../../x`` would write outside it)."""
    if name in (".", "..") or any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        fail("name", f"must be a plain name, not a path ({name!r}): it names the folder results/<name>; "
                     "to write elsewhere, set out (or --out)")


def check_dotted_variant_names(variants: Mapping[str, Any], where: str) -> None:
    """``[variants.tri-peak-0.3]`` is, to TOML, variant ``tri-peak-0`` holding a table ``3``: say to quote it."""
    from samplers.variant import VARIANT_KEYS

    def dotted(name: str, table: Mapping[str, Any]):
        for key, value in table.items():
            if key not in VARIANT_KEYS and isinstance(value, dict):
                inner = f"{name}.{key}"
                if not value or any(k in VARIANT_KEYS for k in value):
                    yield inner
                yield from dotted(inner, value)

    for name, table in variants.items():
        for full in dotted(name, table):
            raise ConfigError(f"{where}: [variants.{full}] is read by TOML as variant {name!r} holding a table "
                              f"{full[len(name) + 1:]!r} (a dot separates keys); quote the name: "
                              f"[variants.\"{full}\"], and samplers = [\"{full}\"]")


def metric_labels(metrics: Sequence[Any]) -> list[str]:
    """The labels the configured metrics are reported under (a table's `label`, else its name)."""
    return [m if isinstance(m, str) else str(m.get("label", m.get("name"))) for m in metrics]


#: [report] keys with their checks (bench/report/rundir.py ReportSettings holds the defaults); a key the
#: report learns without a rule here gets the type of its default.
REPORT_RULES: dict[str, tuple[str, Any]] = {
    "n_boot": ("an integer in [100, 100000] (bootstrap resamples)",
               lambda v: _is_int(v) and 100 <= v <= MAX_BOOTSTRAP),
    "bootstrap_seed": ("an integer in [0, 2^63 − 1]", lambda v: _is_int(v) and 0 <= v <= MAX_SEED),
    "confidence": ("a number in [0.5, 1), the interval level (e.g. 0.95)",
                   lambda v: _is_number(v) and 0.5 <= v < 1),
    "correction": ("one of holm, bh, none", lambda v: v in ("holm", "bh", "none")),
    "alpha": ("a number in (0, 1), the level at which an adjusted p-value survives (e.g. 0.05)",
              lambda v: _is_number(v) and 0 < v < 1),
    "test_unit": ("prompt or pair", lambda v: v in ("prompt", "pair")),
    "primary_metric": ("the label of a configured metric", lambda v: isinstance(v, str)),
    "grid_rows": ("an integer in [0, 50] (best and worst pairs shown, each)", lambda v: _is_int(v) and 0 <= v <= 50),
    "gallery_mib": ("a number in (0, 1024] (MiB of gallery thumbnails in report.html)",
                    lambda v: _is_number(v) and 0 < v <= 1024),
}


def report_settings_fields() -> dict[str, Any]:
    """The report's settings and their defaults (bench/report/rundir.py `ReportSettings`)."""
    import dataclasses

    from .report.rundir import ReportSettings

    return {f.name: f.default for f in dataclasses.fields(ReportSettings)}


def validate_report(report: Any, labels: Sequence[str], fail) -> None:
    if not isinstance(report, dict):
        fail("report", f"must be a table ([report] with keys such as primary_metric), got {report!r}")
    fields = report_settings_fields()
    for key, value in report.items():
        if key not in fields:
            fail(f"report.{key}", f"is not a report setting.{did_you_mean(key, fields)} "
                                  f"Valid: {', '.join(sorted(fields))}")
        rule, ok = REPORT_RULES.get(key, (None, None))
        if ok is None:
            rule, ok = f"a {type(fields[key]).__name__}", lambda v, d=fields[key]: _same_type(v, d)
        if not ok(value):
            fail(f"report.{key}", f"must be {rule}, got {value!r}")
    primary = report.get("primary_metric")
    if primary is not None and primary not in labels:
        fail("report.primary_metric", f"{primary!r} is not one of the configured metrics "
                                      f"({', '.join(labels) or 'none'}).{did_you_mean(primary, labels)} "
                                      "Pass --primary-metric (or set [report] primary_metric) to one of them")


def _same_type(value: Any, default: Any) -> bool:
    """`value` has the type of a setting's `default` (any value when the default is None)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return _is_int(value)
    if isinstance(default, float):
        return _is_number(value)
    return isinstance(value, type(default))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
