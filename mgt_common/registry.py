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
import hashlib
import importlib
import importlib.util
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Generic, Iterator, TypeVar

from .errors import ConfigError, UserError

T = TypeVar("T")

ENTRY_POINT_GROUPS = ("mgt_bench.samplers", "mgt_bench.metrics", "mgt_bench.models")


class Registry(Generic[T]):
    """A name → object mapping for one kind of thing, e.g. ``Registry("reveal_schedule")``.

    Lookups load the built-in entries first and the installed entry points only for a name the built-ins
    do not have (`load_plugins`), so that a broken third-party package stops only the runs that name
    something it might provide; listing every name (`names`) loads them all.
    """

    def __init__(self, kind: str, description: str = "", builtins: tuple[str, ...] = ()):
        """`builtins`: modules imported on first use, whose decorators register the built-in entries
        (lazily, so that importing a registry never pulls in heavy dependencies such as open_clip)."""
        self.kind = kind
        self.description = description
        self.builtins = builtins
        self._builtins_loaded = not builtins
        self._entries: dict[str, T] = {}

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self.builtins:
                importlib.import_module(module)

    def _load(self) -> None:
        self._load_builtins()
        load_plugins()

    def register(self, name: str, obj: T | None = None, *, override: bool = False):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def add(target: T) -> T:
            if not override and name in self._entries and self._entries[name] is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = target
            return target

        return add if obj is None else add(obj)

    def _find(self, name: str) -> bool:
        """Is `name` registered: built-ins first, then (only if it is not one) the entry points."""
        self._load_builtins()
        if name not in self._entries:
            load_plugins()
        return name in self._entries

    def get(self, name: str) -> T:
        if not self._find(name):
            raise ConfigError(unknown_name_message(self.kind, name, self._entries) + broken_plugins_note(name))
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return self._find(name)

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


# -- plugins: entry points and --plugin files ------------------------------------------------------
#
# A plugin is arbitrary Python code run with the user's rights (docs/plugins.md, "Plugins run code").
# What is kept about each one: where its code lives (to name the plugin when its code fails at run
# time, `plugin_failure`) and what it was (path and content hash, recorded in manifest.json).


class PluginError(UserError):
    """A plugin's code failed (on import, or in a method the harness called): named, exit code 2."""


_plugins_loaded = False
#: entry points that were imported: {"group", "name", "value", "distribution", "version"} each
_entry_points: list[dict[str, str]] = []
#: entry points that failed to import: (label, message)
_broken: list[tuple[str, str]] = []
#: --plugin files by resolved path: {"path", "sha256"}
_plugin_files: dict[Path, dict[str, str]] = {}
#: where each plugin's code lives (a file, or an entry point's package folder) → the plugin's label
_code_roots: dict[Path, str] = {}


def load_plugins() -> None:
    """Import every module advertised under our entry-point groups, once, each on its own.

    One that fails is remembered, not raised: a run that never names what it might provide goes on
    (`broken_plugins_note` adds the failure to the message of an unknown name, `--list` shows it).
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for group in ENTRY_POINT_GROUPS:
        for ep in metadata.entry_points(group=group):
            label = f"entry point {ep.name!r} ({ep.value}, group {group})"
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a plugin must not end the run by itself
                _broken.append((label, describe_exception(exc)))
                continue
            dist = getattr(ep, "dist", None)
            _entry_points.append({"group": group, "name": ep.name, "value": ep.value,
                                  "distribution": getattr(dist, "name", "") or "",
                                  "version": getattr(dist, "version", "") or ""})
            root = _module_root(module)
            if root is not None:
                _code_roots[root] = label


def broken_plugins() -> list[tuple[str, str]]:
    """Entry points that failed to import: (label, what went wrong)."""
    return list(_broken)


def broken_plugins_note(name: str) -> str:
    """For an unknown name: the installed plugins that failed to load, one of which may have provided it."""
    if not _broken:
        return ""
    failures = "; ".join(f"{label} failed to load: {message}" for label, message in _broken)
    return f" ({failures}; if {name!r} comes from that package, fix or uninstall it)"


def load_plugin_file(path: str | Path) -> dict[str, str]:
    """Import a plugin from a Python file (``--plugin FILE.py``, ``plugins = [...]``); its decorators register
    its parts. Returns its record (resolved path and the sha256 of the bytes that were run)."""
    path = Path(path).expanduser().resolve()
    if path in _plugin_files:
        return _plugin_files[path]
    if not path.is_file():
        raise UserError(f"plugin {path}: no such file; pass the path of a Python file that registers components "
                        "(--plugin FILE.py or plugins = [\"FILE.py\"])")
    source = path.read_bytes()
    module_name = f"mgt_bench_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plugin {path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _code_roots[path] = f"{path.name}"
    try:
        spec.loader.exec_module(module)
    except UserError:
        del sys.modules[module_name]
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too
        del sys.modules[module_name]
        raise PluginError(f"plugin {path} failed to import: {describe_exception(exc)}") from None
    record = {"path": str(path), "sha256": hashlib.sha256(source).hexdigest()}
    _plugin_files[path] = record
    return record


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def loaded_plugins() -> dict[str, list[dict[str, str]]]:
    """What manifest.json records: every plugin file (path, sha256) and imported entry point."""
    return {"files": [dict(r) for r in _plugin_files.values()], "entry_points": [dict(e) for e in _entry_points]}


def _module_root(module) -> Path | None:
    """The folder of the top-level package a module belongs to (its whole code), or the module's own file."""
    top = sys.modules.get(getattr(module, "__name__", "").partition(".")[0], module)
    if getattr(top, "__path__", None):
        return Path(list(top.__path__)[0]).resolve()
    file = getattr(top, "__file__", None)
    return Path(file).resolve() if file else None


def plugin_of(filename: str) -> str | None:
    """The label of the plugin whose code is in `filename`, or None for code that is not a plugin's."""
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return None
    for root, label in _code_roots.items():
        if path == root or root in path.parents:
            return label
    return None


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` on one line; ``sys.exit(3)`` for a SystemExit."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _owner_label(frame) -> str:
    """What a plugin frame belongs to: ``confidence 'far'.score``, ``metric 'x'.score`` or ``helper()``."""
    owner = frame.f_locals.get("self")
    method = frame.f_code.co_name
    if owner is not None:
        kind, name = getattr(owner, "kind", None), getattr(owner, "name", None)
        if isinstance(kind, str) and kind and isinstance(name, str):
            return f"{kind.replace('_', ' ')} {name!r}.{method}"
        if isinstance(name, str) and name and (hasattr(owner, "score") or hasattr(owner, "compute_from_features")):
            return f"metric {name!r}.{method}"
        return f"{type(owner).__name__}.{method}"
    return f"{method}()"


def plugin_failure(exc: BaseException) -> PluginError | None:
    """``plugin X failed in Y (file:line): Type: message`` when `exc` came out of a plugin's code, else None.

    Y is where our code called into the plugin (the outermost plugin frame: a component's or metric's
    method), the line the innermost plugin frame. Exceptions that never passed through plugin code are
    the harness's own and keep their traceback.
    """
    frames = [(frame, line, plugin_of(frame.f_code.co_filename)) for frame, line in traceback.walk_tb(exc.__traceback__)]
    mine = [(frame, line, label) for frame, line, label in frames if label is not None]
    if not mine:
        return None
    outer, (inner, line, _) = mine[0], mine[-1]
    where = f"{Path(inner.f_code.co_filename).name}:{line}"
    return PluginError(f"plugin {outer[2]} failed in {_owner_label(outer[0])} ({where}): {describe_exception(exc)}")
