"""The run directory: atomic files, append-only journals, tidy tables and the manifest.

Layout::

    RUN_DIR/
      .mgt-bench-run             the suite's marker, written first: only a folder holding it is a run directory
      .mgt-bench-lock            lock files (`bench.rundir.lock`): one writer, or one launch's shards
      manifest.json              resolved config, its hash, versions, git commit, device, timings
      images/ab/abcdef….png      one PNG per unit key (content-addressed; written atomically)
      tokens/ab/abcdef….npy      the generated token grid of that image
      journal/generated*.jsonl   one line per finished unit (the resume record)
      journal/set_metrics.jsonl  one line per set-metric computation (keyed by its inputs)
      journal/set_intervals.jsonl  the set metrics' jackknife replicates
      cache/scores.sqlite        per-image scores, keyed by image content (metrics/score_cache.py)
      samples.csv, scores.csv, set_metrics.csv   the tidy tables, rebuilt atomically from the journals

A journal line is written only after the files it refers to are in place, so a killed run (even
`kill -9`) never counts a half-written unit as done; a torn last line is ignored on reading, and the
next append starts on a fresh line so that it is never glued onto the torn one. Each generated unit's
line records the sha256 of its PNG and of its token grid; a unit whose files are gone or no longer
match is not done (it is regenerated, with a warning), so a damaged file is never scored. Every line
carries a checksum of its fields and has the shape its journal requires (`bench.rundir.records`),
verified on every read: an edited or malformed line stops the run naming its file and line.

Every file is written by atomic replace (a temporary file, then a rename), so a symbolic link planted
where an output goes is replaced, never written through; journals are opened with ``O_NOFOLLOW``.
Temporary files left by a killed writer are swept by the next run that holds the directory alone
(`sweep_temp_files`), and only files of the names this module gives them.

Files are created with the permissions the umask allows (``mkstemp`` alone would make them 0600),
so a run directory shared by a group stays readable by it. A full disk while writing raises
`DiskFullError` (exit 2): every file is written atomically and journalled last, so nothing is lost.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from mgt_common.errors import UserError

from . import records as journal_records

#: the marker that makes a folder a run directory (and the only kind of folder `--fresh` may delete)
MARKER = ".mgt-bench-run"
TOOL = "mgt-bench"
#: entries of a run directory that hold no results (what `--fresh` keeps, what a foreign check ignores)
LOCK_FILES = (".mgt-bench-lock", ".mgt-bench-guard", ".mgt-bench-holders")
#: the folders of a run directory where this module writes files (and sweeps its temporary files)
OWN_FOLDERS = ("images", "tokens", "journal", "tables", "plots", "shards", "cache")
#: `atomic_write_bytes`'s temporary files (``mkstemp``: ``.<name>.<8 characters>.tmp``) and the write probe
TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^\.write-test-\d+$")
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(UserError):
    """No space (or quota) left while writing a result file; what was written before is intact."""


def disk_full(path: Path | str, exc: OSError) -> DiskFullError:
    return DiskFullError(f"disk full at {path} ({exc.strerror or 'no space left on device'}); nothing lost: "
                         "every finished file is complete and journalled. Free space (or pass another --out), then "
                         "re-run the same command to resume")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file under the current umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def symlink_error(path: Path) -> UserError:
    return UserError(f"{path} is a symbolic link; mgt-bench never writes through a link in a run directory (in a "
                     "shared directory it may point at another user's file): delete the link (or replace it with "
                     "a copy of its target) and re-run")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: What each image cost besides passes and seconds (docs/rundir.md, "Cost columns").
COST_COLUMNS = ["rows_conditional", "rows_unconditional", "rows_perturbed", "flops", "peak_mib", "resident_mib",
                "batch_images", "weight_mib", "cost_note", "time_slot"]
SAMPLE_COLUMNS = ["unit_key", "variant", "prompt_id", "prompt", "category", "seed", "steps", "forward_passes",
                  "scorer_calls", "seconds", "image_path", "trajectory", *COST_COLUMNS, "guidance", "base_variant",
                  "sweep_values"]
SCORE_COLUMNS = ["unit_key", "variant", "prompt_id", "seed", "metric", "value"]
SET_METRIC_COLUMNS = ["variant", "category", "metric", "value", "std", "n"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    The file gets the umask's permissions, not mkstemp's 0600. A full disk raises `DiskFullError`
    and leaves `path` as it was.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), file_mode())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(path, exc) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: Path, frame: pd.DataFrame, **to_csv: Any) -> Path:
    """A table as CSV (``to_csv`` options such as ``float_format`` pass through), written atomically."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, **to_csv)
    atomic_write_text(path, buffer.getvalue())
    return path


class RunDirectory:
    """All reads and writes of one run directory (optionally as one shard of a sharded run)."""

    def __init__(self, root: Path | str, shard: str = ""):
        self.root = Path(root)
        self.shard = shard  # e.g. "0of2": journals get this suffix so shards never write the same file
        self._digests: dict[tuple, str] = {}
        self._warned: set[tuple] = set()
        self._tables: dict[str, str] = {}

    # -- paths -----------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def image_path(self, unit_key: str) -> Path:
        return self.root / "images" / unit_key[:2] / f"{unit_key}.png"

    def tokens_path(self, unit_key: str) -> Path:
        return self.root / "tokens" / unit_key[:2] / f"{unit_key}.npy"

    def journal(self, name: str, shard: str | None = None) -> Path:
        shard = self.shard if shard is None else shard
        return self.root / "journal" / (f"{name}.{shard}.jsonl" if shard else f"{name}.jsonl")

    def journals(self, name: str) -> list[Path]:
        """Every shard's journal of this name (for merging)."""
        folder = self.root / "journal"
        return sorted(folder.glob(f"{name}.jsonl")) + sorted(folder.glob(f"{name}.*.jsonl"))

    # -- creation and the config guard -----------------------------------------------------------

    @property
    def marker_path(self) -> Path:
        return self.root / MARKER

    def has_marker(self) -> bool:
        """True when the suite's own marker names this tool (the only proof that a folder is a run directory)."""
        try:
            return json.loads(self.marker_path.read_text()).get("tool") == TOOL
        except (OSError, ValueError, AttributeError):
            return False

    def is_run_directory(self) -> bool:
        """A run directory: the marker, or (made before the marker existed) a manifest whose "tool" is mgt-bench.

        Nothing weaker counts: any JSON file called manifest.json (a browser extension, a web app) is not one.
        """
        if self.has_marker():
            return True
        try:
            return json.loads(self.manifest_path.read_text()).get("tool") == TOOL
        except (OSError, ValueError, AttributeError):
            return False

    def write_marker(self) -> None:
        """Written first, atomically, before any other file of a new run directory."""
        if not self.has_marker():
            atomic_write_text(self.marker_path, json.dumps({"tool": TOOL, "format": 1,
                                                            "note": "an mgt-bench run directory"}) + "\n")

    def check_writable(self) -> None:
        """Fail early, before generating anything, if the output directory cannot be written."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"out: {self.root} is a file, not a directory; pass a directory for --out")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.unlink(missing_ok=True)  # ours: a killed run of this pid; never followed if it is a link
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, file_mode()))
            probe.unlink(missing_ok=True)  # (a run holding the directory may have swept it already)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.root, exc) from None
            raise UserError(f"out: cannot write to {self.root} ({exc.strerror}); pass a writable --out directory") from None

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            manifest = None
        if isinstance(manifest, dict):
            return manifest
        if self.has_marker():
            raise UserError(f"{self.manifest_path} is corrupt; pass --fresh to start this run over (it deletes "
                            f"{self.root}), or pass another --out")
        raise UserError(f"{self.manifest_path} is not an mgt-bench manifest and {self.root} has no mgt-bench marker "
                        f"({MARKER}), so --fresh will not delete it; pass another --out")

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")

    def clear(self) -> None:
        """`--fresh`: delete a run directory's contents (never its lock files: they are held right now)."""
        if not self.is_run_directory():
            raise UserError(f"--fresh: {self.root} is not an mgt-bench run directory (no {MARKER} marker); "
                            "refusing to delete it; pass another --out")
        for entry in self.root.iterdir():
            if entry.name in LOCK_FILES or entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- units -----------------------------------------------------------------------------------

    def save_unit_files(self, unit_key: str, png: bytes, tokens: np.ndarray) -> dict[str, str]:
        """Write a unit's token grid and PNG (atomically); returns their sha256 for its journal line."""
        buffer = io.BytesIO()
        np.save(buffer, tokens)
        atomic_write_bytes(self.tokens_path(unit_key), buffer.getvalue())
        atomic_write_bytes(self.image_path(unit_key), png)
        return {"image_sha256": hashlib.sha256(png).hexdigest(),
                "tokens_sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}

    def append(self, name: str, records: Iterable[dict[str, Any]]) -> None:
        """Append records, each with its checksum (`bench.rundir.records.seal`), to this shard's journal
        `name` in one write, then fsync.

        If a killed writer left a torn last line, a newline goes first, so the torn line stays alone
        (and is skipped on reading) instead of swallowing the first new record. The journal is opened
        with ``O_NOFOLLOW``: a symbolic link planted in its place is refused, never appended through.
        """
        lines = "".join(json.dumps(journal_records.seal(r), sort_keys=True, default=str) + "\n" for r in records)
        if not lines:
            return
        path = self.journal(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, file_mode())
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise symlink_error(path) from None
                raise
            try:
                size = os.fstat(fd).st_size
                if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                    lines = "\n" + lines
                data = lines.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(path, exc) from None
            raise

    def read_journal(self, name: str, all_shards: bool = True,
                     required: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
        """Records of journal `name` (every shard's by default); a torn line is skipped.

        A line that is valid JSON but not a record of this journal's shape (the `required` keys and
        `bench.rundir.records.SHAPES`), or whose checksum does not match its fields, was edited or
        damaged: a `UserError` names the file and line instead of a traceback or a silently used value.
        """
        paths = self.journals(name) if all_shards else [self.journal(name)]
        redo = "its unit is then regenerated" if name == "generated" else "its value is then recomputed"
        for path in paths:
            if not path.exists():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a write cut short by a kill: the unit is simply not done yet
                wrong = None
                if not isinstance(record, dict) or any(key not in record for key in required):
                    wrong = f"expected an object with {', '.join(required) or 'fields'}"
                else:
                    wrong = journal_records.problem(name, record)
                if wrong is not None:
                    raise UserError(
                        f"{path} line {number}: not a journal record of mgt-bench ({wrong}; got {line[:60]!r}); the "
                        f"file was edited or damaged: delete that line ({redo}) and re-run")
                if not journal_records.verify(record):
                    raise UserError(
                        f"{path} line {number}: its checksum does not match its content (the line was edited or "
                        f"damaged); delete that line ({redo}) and re-run")
                yield record

    def finished_units(self) -> dict[str, dict[str, Any]]:
        """(variant, unit_key) records of every generated unit whose files are on disk and intact, keyed by 'variant/key'.

        A unit whose PNG or token grid is gone, or no longer has the sha256 recorded when it was
        generated, is left out (so it is regenerated), with a warning naming the file; lines of older
        versions without a hash are trusted as far as the file exists.
        """
        records: dict[str, dict[str, Any]] = {}
        for record in self.read_journal("generated", required=("unit_key", "variant")):
            records[f"{record['variant']}/{record['unit_key']}"] = record  # a later line (a regeneration) wins
        done = {}
        for name, record in records.items():
            key = str(record["unit_key"])
            files = ((self.image_path(key), record.get("image_sha256")), (self.tokens_path(key), record.get("tokens_sha256")))
            if all(self._intact(name, path, expected) for path, expected in files):
                done[name] = record
        return done

    def _intact(self, name: str, path: Path, expected: str | None) -> bool:
        """The file is there and (when its hash was journalled) unchanged; otherwise warn once and say no."""
        if not path.exists():
            why = "is missing"
        elif expected and self._digest(path) != expected:
            why = "does not match the sha256 journalled when it was generated (damaged or replaced)"
        else:
            return True
        if (name, path) not in self._warned:
            self._warned.add((name, path))
            print(f"mgt-bench: warning: {path.relative_to(self.root)} ({name}) {why}: the unit counts as not "
                  "generated, and a run regenerates it; it is never scored", file=sys.stderr)
        return False

    def _digest(self, path: Path) -> str:
        """sha256 of a file, remembered per (size, mtime, inode) within this process (each run hashes once)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in self._digests:
            self._digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._digests[key]

    def load_tokens(self, unit_key: str) -> np.ndarray:
        return np.load(self.tokens_path(unit_key))

    # -- tables ----------------------------------------------------------------------------------

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.root / f"{name}.csv"
        if not path.exists():
            raise UserError(f"{path} does not exist: {self.root} is not a finished mgt-bench run directory")
        return pd.read_csv(path, keep_default_na=False, na_values=[""])

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write ``<name>.csv`` atomically; its sha256 is kept for the manifest (`table_digests`)."""
        path = self.root / f"{name}.csv"
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        data = buffer.getvalue().encode("utf-8")
        atomic_write_bytes(path, data)
        self._tables[name] = hashlib.sha256(data).hexdigest()
        return path

    def table_digests(self) -> dict[str, str]:
        """sha256 of each table this object wrote (manifest.json records them; `--report-only` verifies them)."""
        return dict(self._tables)

    # -- housekeeping ------------------------------------------------------------------------------

    def sweep_temp_files(self) -> list[Path]:
        """Delete the temporary files a killed writer left (call only while holding the run lock alone).

        Only files named as `atomic_write_bytes` names them (`TEMP_FILE`), only in the run directory
        itself and its own folders (`OWN_FOLDERS`), never a link or anything else: nothing this suite
        did not create is deleted.
        """
        swept = []
        places = [(self.root, False)] + [(self.root / name, True) for name in OWN_FOLDERS]
        for place, deep in places:
            if place.is_symlink() or not place.is_dir():
                continue
            for folder, subfolders, files in os.walk(place):  # os.walk never descends into a linked folder
                for name in files:
                    entry = Path(folder) / name
                    if TEMP_FILE.match(name) and not entry.is_symlink() and entry.is_file():
                        entry.unlink(missing_ok=True)
                        swept.append(entry)
                if not deep:
                    break
        return swept
