"""What a run directory records about the plugins it was made with, and what a later command does with it.

manifest.json keeps every plugin file's resolved path and sha256 and every imported entry point
(`mgt_common.registry.loaded_plugins`). A plugin is code, so nothing here imports a plugin the user
did not name: resuming without it says which file to pass (`plugin_hint`), a plugin file that
changed since the run is pointed out (`warn_changed_plugins`), and ``--merge`` imports the files of
the run's own config only when their content is what the run recorded (`load_recorded_plugins`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mgt_common.errors import UserError
from mgt_common.registry import file_sha256, load_plugin_file, loaded_plugins


def recorded_plugins(run_dir: Path) -> dict[str, list[dict[str, str]]]:
    """The plugins a run directory's manifest records (none for a folder that is not a run)."""
    from .rundir.store import RunDirectory

    try:
        manifest = RunDirectory(run_dir).read_manifest() if Path(run_dir).is_dir() else None
    except (OSError, ValueError, UserError):
        return {"files": [], "entry_points": []}
    record = (manifest or {}).get("plugins") or {}
    return {"files": list(record.get("files") or []), "entry_points": list(record.get("entry_points") or [])}


def plugin_hint(run_dir: Path, message: str) -> str:
    """For an unknown name while resuming `run_dir`: the plugins it was made with that are not loaded now."""
    if "unknown" not in message:
        return ""
    recorded = recorded_plugins(run_dir)
    loaded = loaded_plugins()
    files = {r["path"] for r in loaded["files"]}
    points = {(e["group"], e["name"]) for e in loaded["entry_points"]}
    missing = [r["path"] for r in recorded["files"] if r.get("path") not in files]
    packages = [f"{e.get('distribution') or e.get('value')} (entry point {e.get('name')!r})"
                for e in recorded["entry_points"] if (e.get("group"), e.get("name")) not in points]
    parts = []
    if missing:
        parts.append(f"{run_dir} was made with plugin {', '.join(missing)}: pass "
                     + " ".join(f"--plugin {p}" for p in missing) + " (or list it in the config's plugins)")
    if packages:
        parts.append(f"{run_dir} was made with the installed plugin package {', '.join(packages)}: install it")
    return "; ".join(parts)


def warn_changed_plugins(run_dir: Path) -> None:
    """One line per plugin file whose content differs from what the run directory recorded: its images
    keep their keys (a component's `version` is in each key), so old and new code may be mixed."""
    recorded = {r["path"]: r.get("sha256") for r in recorded_plugins(run_dir)["files"]}
    for record in loaded_plugins()["files"]:
        before = recorded.get(record["path"])
        if before and before != record["sha256"]:
            print(f"mgt-bench: warning: plugin {record['path']} changed since {run_dir} was made (sha256 "
                  f"{before[:12]} → {record['sha256'][:12]}); images it made before keep their keys unless the "
                  "component's `version` changed (docs/plugins.md): pass --fresh if its outputs changed",
                  file=sys.stderr)


def load_recorded_plugins(manifest: dict[str, Any], who: str) -> None:
    """Import the plugin files of a run's own config (``--merge``), each only if its content is unchanged."""
    paths = (manifest.get("config") or {}).get("plugins") or []
    hashes = {r.get("path"): r.get("sha256") for r in (manifest.get("plugins") or {}).get("files") or []}
    for path in paths:
        try:
            now = file_sha256(path)
        except OSError:
            raise UserError(f"{who}: the run was made with plugin {path}, which is gone; restore it, or pass "
                            "--plugin with its new path") from None
        if hashes.get(path) and hashes[path] != now:
            raise UserError(f"{who}: plugin {path} changed since the run was made (sha256 {hashes[path][:12]} → "
                            f"{now[:12]}); restore the version the run was made with")
        load_plugin_file(path)
