"""The guard of a run directory: only our folders are written into, one writer at a time, one configuration.

Before the first file is written (docs/rundir.md, "Which folders are run directories", "One writer
at a time"): ``--out`` must be a new folder, an empty one or a run directory (the suite's marker);
the run lock is taken (exclusive for a run or a merge, shared by the shards of one run); and under
the short guard lock, ``--fresh`` clears the folder, a manifest made with another configuration is
refused (naming the keys that changed), and the marker and the first manifest are written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mgt_common.errors import UserError

from .lock import GuardLock, RunLock
from .manifest import generation_values
from .store import LOCK_FILES, MARKER, RunDirectory, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from ..config import BenchConfig
    from ..distributed import ProcessGroup
    from ..sharding import Shard


class RunGuard:
    """The run lock and the configuration guard of one process's view of a run directory."""

    def __init__(self, store: RunDirectory, shard: "Shard", config: "BenchConfig"):
        self.store, self.shard, self.config = store, shard, config
        self._run_lock: RunLock | None = None

    def check_usable(self, fresh: bool) -> None:
        """Read-only checks of ``--out`` before anything is written: a file, or a folder that is not ours.

        A folder is a run directory only if it carries the suite's marker (or, made before the marker
        existed, a manifest naming the tool); nothing else is ever written into, nor deleted by --fresh.
        """
        root = self.store.root
        if not root.exists():
            return
        if not root.is_dir():
            raise UserError(f"out: {root} is a file, not a directory; pass a directory for --out")
        # Shards started at the same moment (a SLURM array) may find each other's first files before the
        # marker: what shards themselves create does not make the directory foreign.
        own = {".gitkeep", MARKER, *LOCK_FILES}
        if self.shard.is_sharded:
            own |= {"journal", "images", "tokens", "shards"}
        foreign = [p.name for p in root.iterdir()
                   if p.name not in own and not (self.shard.is_sharded and p.name.startswith("."))]
        if foreign and not self.store.is_run_directory():
            if fresh:
                raise UserError(f"--fresh: {root} is not an mgt-bench run directory (no {MARKER} marker); refusing to "
                                "delete it; pass another --out")
            raise UserError(f"{root} exists and is not an mgt-bench run directory (it holds {foreign[0]!r} and no "
                            f"{MARKER} marker); pass an empty or new --out")

    def prepare(self, fresh: bool, first_manifest: Callable[[], dict[str, Any]] | None) -> None:
        """Take the run lock, then under the guard lock: --fresh, the configuration check, marker, manifest.

        The run lock (exclusive for an unsharded run, shared by shards) is held until `release`, so a
        second writer is refused at once; the guard lock serialises the check and the first manifest
        write, so two processes started together cannot both pass it with different configurations.
        `first_manifest` builds the manifest written when the directory has none (None: write none).
        """
        root = self.store.root
        self.check_usable(fresh)
        self.store.check_writable()
        if self._run_lock is None:
            role = f"shard {self.shard}" if self.shard.is_sharded else "run"
            self._run_lock = RunLock(root, exclusive=not self.shard.is_sharded, role=role).acquire()
            if not self.shard.is_sharded:  # alone in the directory: no other writer's temporary file can be live
                self.store.sweep_temp_files()
        with GuardLock(root):
            if fresh and any(p.name not in (MARKER, *LOCK_FILES) for p in root.iterdir()):
                self.store.clear()
            existing = self.store.read_manifest()
            if existing is not None and existing.get("config_hash") != self.config.generation_hash():
                values = generation_values(self.config)
                changed = sorted(k for k in existing.get("generation_keys", {})
                                 if existing["generation_keys"][k] != values.get(k))
                detail = f" (changed: {', '.join(changed)})" if changed else ""
                fix = "pass --fresh to start it over or --out NEW_DIR to keep both" if not self.shard.is_sharded \
                    or self.shard.launched_together else "pass --out NEW_DIR"
                raise UserError(f"{root} was made with a different configuration{detail}; {fix}")
            self.store.write_marker()
            if first_manifest is not None and existing is None:
                self.store.write_manifest(first_manifest())

    def prepare_shared(self, fresh: bool, group: "ProcessGroup", plan_manifest: Callable[[], dict[str, Any]]) -> None:
        """`prepare` without two shards racing to create or delete the directory.

        Shards launched together: rank 0 prepares (and honours --fresh) while the others wait at a
        barrier. Separate shards cannot wait for each other, so --fresh is refused there: it would delete
        work other shards may be doing right now. An unsharded run records this invocation's plan in the
        manifest even when resuming (its status and versions).
        """
        if self.shard.is_sharded and fresh and not self.shard.launched_together:
            raise UserError(f"--fresh with --shard {self.shard} (or a SLURM array) would delete the other shards' "
                            f"work; delete {self.store.root} once before submitting the shards, or pass a new --out")
        first = not self.shard.launched_together or self.shard.index == 0
        if first:
            self.prepare(fresh, plan_manifest)
            if not self.shard.is_sharded:
                self.store.write_manifest(plan_manifest())
        group.barrier()
        if not first:
            self.prepare(False, None)

    def lock_for_merge(self) -> None:
        """``--merge``: the run lock, exclusively (no shard may still be writing); then the killed shards'
        temporary files are swept."""
        self._run_lock = RunLock(self.store.root, exclusive=True, role="merge").acquire()
        self.store.sweep_temp_files()

    def release(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None


#: the marker of a folder written by ``--compare`` (the only kind of folder, besides a run directory, it writes into)
COMPARISON_MARKER = ".mgt-bench-comparison"
#: what every comparison writes: a folder holding all of them (and nothing else) predates the marker
_COMPARISON_FILES = ("comparison.html", "comparison.md", "tables/comparison_win_rates.csv")


def check_comparison_out(out: Path) -> None:
    """``--compare … --out OUT``: a new or empty folder, a comparison folder or a run directory; nothing else.

    A regular file, or a folder of the user's own (which may hold a ``comparison.md`` of theirs), is
    refused before anything is written.
    """
    if out.is_symlink() and not out.is_dir():
        raise UserError(f"--compare --out {out}: a symbolic link, not a directory; pass a directory for --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--compare --out {out}: it is a file, not a directory; pass a new or empty directory")
    entries = {p.name for p in out.iterdir()}
    if not entries or COMPARISON_MARKER in entries or RunDirectory(out).is_run_directory():
        return
    if _written_by_compare(out):
        return  # a comparison written before the marker existed
    raise UserError(f"--compare --out {out}: the folder exists and was not written by --compare (it holds "
                    f"{sorted(entries)[0]!r} and no {COMPARISON_MARKER} marker); pass a new or empty directory")


def _written_by_compare(out: Path) -> bool:
    """Every file a comparison writes, and nothing else (a comparison folder made before its marker)."""
    if not all((out / name).is_file() for name in _COMPARISON_FILES):
        return False
    for entry in out.iterdir():
        if entry.name in ("tables", "plots") and entry.is_dir() and not entry.is_symlink():
            if all(p.name.startswith("comparison_") for p in entry.iterdir()):
                continue
        elif entry.name in ("comparison.html", "comparison.md"):
            continue
        return False
    return True


def mark_comparison(out: Path) -> None:
    """Mark a folder that ``--compare`` wrote (so a later comparison may replace its files)."""
    path = out / COMPARISON_MARKER
    if not path.exists():
        atomic_write_text(path, json.dumps({"tool": "mgt-bench", "note": "an mgt-bench comparison"}) + "\n")
