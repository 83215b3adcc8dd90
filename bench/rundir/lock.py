"""Locks on a run directory: one writer at a time, or the shards of one run together.

Two locks, both ``fcntl.flock`` on files inside the run directory (`bench.rundir.store.LOCK_FILES`):

- ``.mgt-bench-lock`` — held for the whole run. An unsharded run (and ``--merge``) holds it
  exclusively; each shard holds it shared, so shards of a run may work side by side, while any other
  writer is refused at once with exit 2 and a message naming the holder (pid, host, start time).
  Two identical unsharded runs therefore never do all the work twice.
- ``.mgt-bench-guard`` — held exclusively, briefly, around the configuration check and the first
  manifest write, so that two shards (or two runs) started together on a new directory cannot both
  pass the check with different configurations.

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
from pathlib import Path

from mgt_common.errors import UserError

from .store import file_mode

LOCK_NAME = ".mgt-bench-lock"
GUARD_NAME = ".mgt-bench-guard"
#: how long a shard waits for another shard's configuration check (which takes milliseconds)
GUARD_TIMEOUT_S = 120.0
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def holder_record(role: str) -> dict:
    return {"pid": os.getpid(), "host": platform.node(), "role": role,
            "started": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}


def describe_holder(path: Path) -> str:
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        lines = []
    holders = [h for h in lines if isinstance(h, dict)][-3:]
    if not holders:
        return "another process"
    return "; ".join(f"pid {h.get('pid')} on host {h.get('host')} ({h.get('role', 'run')}, since {h.get('started')})"
                     for h in holders)


class RunLock:
    """The whole-run lock: ``exclusive`` for a single writer, shared for the shards of one run."""

    def __init__(self, root: Path, exclusive: bool, role: str):
        self.path = Path(root) / LOCK_NAME
        self.exclusive = exclusive
        self.role = role
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _UNSUPPORTED:
                _warn_unlocked(self.path, exc)
                return self
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise UserError(f"{self.path.parent} is in use by {describe_holder(self.path)}; wait until it ends, or pass "
                            "another --out (shards of one run may share a directory, other runs may not)") from None
        self._fd = fd
        record = (json.dumps(holder_record(self.role)) + "\n").encode()
        if self.exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        else:  # several shards hold it: each adds its line (the file is reset by the next exclusive holder)
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, record)
        return self

    def release(self) -> None:
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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
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
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or time.monotonic() > deadline:
                    os.close(fd)
                    raise UserError(f"{self.path.parent}: another process has held its configuration check for "
                                    f"{self.timeout:.0f} s ({describe_holder(self.path)}); is it hung?") from None
                time.sleep(0.05)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_record("configuration check")) + "\n").encode(), 0)
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
