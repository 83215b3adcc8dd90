"""Locks on a run directory: one writer at a time, or the shards of one run together.

Two locks, both ``fcntl.flock`` (docs/rundir.md, "One writer at a time"):

- the run lock, held for the whole run, on the run directory's own descriptor: a file inside the
  directory could be deleted (or replaced by a symbolic link) while a run holds it, letting a second
  run in; the directory itself cannot be, while it holds results. An unsharded run (``--merge``,
  ``--report-only``) holds it exclusively; each shard holds it shared, so shards of a run may work
  side by side, while any other writer is refused at once with exit 2 and a message naming the
  holders that are still running (pid, host, role, start time). File systems that cannot lock a
  directory (NFS emulates flock with byte-range locks, which need a file open for writing) lock the
  file ``.mgt-bench-lock`` instead, opened with ``O_NOFOLLOW``.
- ``.mgt-bench-guard`` — held exclusively, briefly, around the configuration check and the first
  manifest write, so that two shards (or two runs) started together on a new directory cannot both
  pass the check with different configurations. Opened with ``O_NOFOLLOW``.

Who holds the run lock is recorded in ``.mgt-bench-holders/``, one small file per holder, written
atomically when it takes the lock and deleted when it lets go. A holder killed by ``kill -9`` leaves
its file; on its own host it is recognised as gone (its pid no longer runs) and never named, and the
next exclusive holder removes every record but its own.

flock follows the open file, not the process, so two holders inside one process conflict too (what the
tests rely on), and the lock is released when the process dies, even by ``kill -9``. On file systems
without flock support (some Lustre mounts) the run goes on unlocked, with a warning.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

from mgt_common.errors import UserError

from .store import atomic_write_text, file_mode, symlink_error

LOCK_NAME = ".mgt-bench-lock"
GUARD_NAME = ".mgt-bench-guard"
HOLDERS_NAME = ".mgt-bench-holders"
#: how long a shard waits for another shard's configuration check (which takes milliseconds)
GUARD_TIMEOUT_S = 120.0
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}


def open_lock_file(path: Path) -> int:
    """Open (creating it) a lock file for reading and writing, never through a symbolic link."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, file_mode())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_error(path) from None
        raise


def holder_record(role: str) -> dict:
    return {"pid": os.getpid(), "host": platform.node(), "role": role,
            "started": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}


def is_running(record: dict) -> bool:
    """False only when the holder ran on this host and its pid is gone; a holder elsewhere is assumed alive."""
    if record.get("host") != platform.node() or not isinstance(record.get("pid"), int):
        return True
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def holder_records(root: Path) -> list[tuple[Path, dict]]:
    """(file, record) of each holder recorded in ``.mgt-bench-holders/`` (unreadable files are skipped)."""
    folder = Path(root) / HOLDERS_NAME
    if folder.is_symlink() or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out.append((path, record))
    return out


def describe_holder(root: Path) -> str:
    """The holders still running, e.g. "pid 12 on host a (shard 1/2, since …)"; "another process" if none is known."""
    holders = [r for _, r in holder_records(root) if is_running(r)][-3:]
    if not holders:
        return "another process"
    return "; ".join(f"pid {h.get('pid')} on host {h.get('host')} ({h.get('role', 'run')}, since {h.get('started')})"
                     for h in holders)


class RunLock:
    """The whole-run lock: ``exclusive`` for a single writer, shared for the shards of one run."""

    def __init__(self, root: Path, exclusive: bool, role: str):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME  # the fallback lock file (file systems that cannot lock a directory)
        self.exclusive = exclusive
        self.role = role
        self._fd: int | None = None
        self._record: Path | None = None

    def acquire(self) -> "RunLock":
        mode = (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, mode)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _BUSY:
                raise self._in_use() from None
            if exc.errno not in _UNSUPPORTED | {errno.EBADF}:
                raise
            fd = self._lock_file(mode)
            if fd is None:
                return self
        self._fd = fd
        self._write_record()
        return self

    def _lock_file(self, mode: int) -> int | None:
        """Lock ``.mgt-bench-lock`` (never through a link); None when the file system has no locks at all."""
        fd = open_lock_file(self.path)
        try:
            fcntl.flock(fd, mode)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _UNSUPPORTED:
                _warn_unlocked(self.path, exc)
                return None
            if exc.errno in _BUSY:
                raise self._in_use() from None
            raise
        return fd

    def _in_use(self) -> UserError:
        return UserError(f"{self.root} is in use by {describe_holder(self.root)}; wait until it ends, or pass "
                         "another --out (shards of one run may share a directory, other runs may not)")

    def _write_record(self) -> None:
        """Record this holder; an exclusive holder first removes every other record (their holders are gone)."""
        folder = self.root / HOLDERS_NAME
        if folder.is_symlink():
            raise symlink_error(folder)
        folder.mkdir(exist_ok=True)
        for path, record in holder_records(self.root):
            if self.exclusive or not is_running(record):
                path.unlink(missing_ok=True)
        record = holder_record(self.role)
        self._record = folder / f"{record['host']}-{record['pid']}-{uuid.uuid4().hex[:8]}.json"
        atomic_write_text(self._record, json.dumps(record) + "\n")

    def release(self) -> None:
        if self._record is not None:
            self._record.unlink(missing_ok=True)
            self._record = None
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class GuardLock:
    """The short exclusive lock around the configuration check and the first manifest write (blocking, bounded)."""

    def __init__(self, root: Path, timeout: float = GUARD_TIMEOUT_S):
        self.path = Path(root) / GUARD_NAME
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> "GuardLock":
        fd = open_lock_file(self.path)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    _warn_unlocked(self.path, exc)
                    os.close(fd)
                    return self
                if exc.errno not in _BUSY or time.monotonic() > deadline:
                    os.close(fd)
                    raise UserError(f"{self.path.parent}: another process has held its configuration check for "
                                    f"{self.timeout:.0f} s ({describe_holder(self.path.parent)}); is it hung?") from None
                time.sleep(0.05)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_warned: set[str] = set()


def _warn_unlocked(path: Path, exc: OSError) -> None:
    if str(path.parent) not in _warned:
        _warned.add(str(path.parent))
        print(f"mgt-bench: warning: {path.parent}: the file system does not support locks ({exc.strerror}); "
              "running unlocked: do not start two different runs on this directory", file=sys.stderr)
