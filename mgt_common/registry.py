"""Named registries with decorators, wildcard listing, nearest-match errors and entry-point plugins.

The pattern follows timm (`@register_model`, `list_models('vit*')`) and lm-evaluation-harness (lazy
entry points). One `Registry` per kind of thing: sampler components (one per decision kind), metrics,
models, prompt sets. Third parties add to them through the entry-point groups
`mgt_bench.samplers`, `mgt_bench.metrics`, `mgt_bench.models` (an entry point names a module; importing
it runs its `@register` decorators) or through `--plugin FILE.py`.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import Generic, Iterator, TypeVar

from .errors import ConfigError, UserError

T = TypeVar("T")

ENTRY_POINT_GROUPS = ("mgt_bench.samplers", "mgt_bench.metrics", "mgt_bench.models")


class Registry(Generic[T]):
    """A name → object mapping for one kind of thing, e.g. ``Registry("reveal_schedule")``."""

    def __init__(self, kind: str, description: str = "", builtins: tuple[str, ...] = ()):
        """`builtins`: modules imported on first use, whose decorators register the built-in entries
        (lazily, so that importing a registry never pulls in heavy dependencies such as open_clip)."""
        self.kind = kind
        self.description = description
        self.builtins = builtins
        self._builtins_loaded = not builtins
        self._entries: dict[str, T] = {}

    def _load(self) -> None:
        load_plugins()
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self.builtins:
                importlib.import_module(module)

    def register(self, name: str, obj: T | None = None, *, override: bool = False):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def add(target: T) -> T:
            if not override and name in self._entries and self._entries[name] is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = target
            return target

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self._entries)) from None

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard (``list('power*')``)."""
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            yield n, self._entries[n]


def unknown_name_message(kind: str, name: str, known) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(known) or '(none)'}."


def first_line(text: str | None) -> str:
    """The first non-empty line of a docstring, for `--list`."""
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


_plugins_loaded = False
_plugin_files: set[Path] = set()


def load_plugins() -> None:
    """Import every module advertised under our entry-point groups, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for group in ENTRY_POINT_GROUPS:
        for ep in metadata.entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party plugin must name itself
                raise UserError(f"plugin entry point {ep.name!r} ({ep.value}) in group {group} failed to load: {exc}") from exc


def load_plugin_file(path: str | Path) -> None:
    """Import a plugin from a Python file (``--plugin FILE.py``); its decorators register its parts."""
    path = Path(path).expanduser().resolve()
    if path in _plugin_files:
        return
    if not path.is_file():
        raise UserError(f"--plugin {path}: no such file; pass the path of a Python file that registers components")
    module_name = f"mgt_bench_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"--plugin {path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except UserError:
        raise
    except Exception as exc:
        del sys.modules[module_name]
        raise UserError(f"--plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc
    _plugin_files.add(path)

