"""Experiment configuration: a TOML file whose keys equal the CLI flags (``batch_size`` ↔ ``--batch-size``).

The default run is `bench/configs/default.toml`, shipped in the package. Every key is documented there
and in the README's config reference. `load_config` merges file, then CLI overrides, then checks every
value, so that a bad value fails before anything is written.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

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
}
KNOWN_KEYS = set(DEFAULTS)
#: Keys that take one value: a list there is a mistake, not a sweep (steps and guidance may be lists).
SCALAR_KEYS = ("name", "description", "limit", "height", "width", "negative_prompt", "baseline", "batch_size",
               "device", "dtype", "out", "bootstrap")


@dataclass
class BenchConfig:
    """The resolved configuration of one benchmark run."""

    values: dict[str, Any]
    source: str = "<defaults>"
    plugins: list[str] = field(default_factory=list)

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


def load_config(source: str | None = None, overrides: Mapping[str, Any] | None = None) -> BenchConfig:
    """Defaults ← the config file (default: the shipped `default`) ← CLI overrides; then validated."""
    data, where = read_toml(source or "default")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(KNOWN_KEYS))}")
    values = copy.deepcopy(DEFAULTS)
    values.update(copy.deepcopy(data))
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    if isinstance(values["model"], str):
        values["model"] = {"name": values["model"]}
    validate(values, where)
    if values["device"] == "auto":
        import torch

        values["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return BenchConfig(values=values, source=where)


def validate(values: dict[str, Any], where: str) -> None:
    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{where}: {key} {message}")

    for key in SCALAR_KEYS:
        if isinstance(values[key], list):
            fail(key, f"cannot be a list ({values[key]!r}): only steps, guidance and variant parameters can be swept")
    model = values["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        fail("model", "must be a model name or a table with 'name' (e.g. [model] name = \"synthetic\")")
    prompts = values["prompts"]
    if not (isinstance(prompts, str) and prompts.strip()) and not (isinstance(prompts, dict) and "source" in prompts):
        fail("prompts", "must be a prompt-set name, a file path, or a table with 'source'")
    if values["limit"] is not None and (not _is_int(values["limit"]) or values["limit"] < 1):
        fail("limit", f"must be a positive integer, got {values['limit']!r}")
    seeds = values["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
        fail("seeds", f"must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"has duplicates: {seeds!r}")
    def check_steps(value: Any, key: str) -> None:
        if not _is_int(value) or value < 1:
            fail(key, f"must be an integer >= 1, got {value!r}")

    def check_guidance(value: Any, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            fail(key, f"must be a finite number >= 0, got {value!r}")

    # steps and guidance may be lists: a sweep (bench/sweep.py, docs/sweeps.md)
    check_run_axis("steps", values["steps"], check_steps, where)
    check_run_axis("guidance", values["guidance"], check_guidance, where)
    for key in ("height", "width"):
        if values[key] is not None and (not _is_int(values[key]) or values[key] < 1):
            fail(key, f"must be a positive integer, got {values[key]!r}")
    if values["negative_prompt"] is not None and not isinstance(values["negative_prompt"], str):
        fail("negative_prompt", "must be a string")
    samplers = values["samplers"]
    if isinstance(samplers, str):
        samplers = values["samplers"] = [s.strip() for s in samplers.split(",") if s.strip()]
    if not isinstance(samplers, list) or not samplers or not all(isinstance(s, str) for s in samplers):
        fail("samplers", "must be a non-empty list of variant names")
    if len(set(samplers)) != len(samplers):
        fail("samplers", f"lists a variant twice: {samplers!r}")
    if values["baseline"] not in samplers:
        samplers.insert(0, values["baseline"])  # the baseline is always generated: every comparison needs it
    if not isinstance(values["variants"], dict) or not all(isinstance(v, dict) for v in values["variants"].values()):
        fail("variants", "must be tables: [variants.NAME] with component keys")
    metrics = values["metrics"]
    if isinstance(metrics, str):
        metrics = values["metrics"] = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list) or not all(isinstance(m, (str, dict)) for m in metrics):
        fail("metrics", "must be a list of metric names or tables with 'name'")
    if not _is_int(values["batch_size"]) or values["batch_size"] < 1:
        fail("batch_size", f"must be an integer >= 1, got {values['batch_size']!r}")
    if values["dtype"] not in ("float32", "bfloat16", "float16"):
        fail("dtype", f"must be float32, bfloat16 or float16, got {values['dtype']!r}")
    if not isinstance(values["device"], str) or not values["device"].split(":")[0] in ("cpu", "cuda", "mps", "auto"):
        fail("device", f"must be cpu, cuda, cuda:N, mps or auto, got {values['device']!r}")
    if not _is_int(values["bootstrap"]) or values["bootstrap"] < 100:
        fail("bootstrap", f"must be an integer >= 100 (bootstrap resamples), got {values['bootstrap']!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
