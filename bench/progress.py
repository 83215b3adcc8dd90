"""Progress for people and for log files: a tqdm bar on a terminal, plain periodic lines elsewhere.

Under nohup, CI or SLURM stdout/stderr are files, where tqdm draws nothing (``disable=None``) and a
run of hours would print nothing at all. There, `Progress` prints one line per interval to stderr::

    mgt-bench: generate: 12/36 images (33%), 0.42 images/s, ETA 57s

on time, not on progress: a clock thread prints the line when the interval has passed without one,
so a first batch that takes minutes still shows the run is alive (``0/36 images (0%), 2m30s elapsed``).
`announce` names stages that have no count (set metrics such as FID, rendering the report), and
`heartbeat` keeps such a stage saying it is still running. The interval is
``MGT_BENCH_PROGRESS_SECONDS`` (default 30; 0 prints every update and starts no clock).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from tqdm.auto import tqdm


def is_terminal() -> bool:
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def interval_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("MGT_BENCH_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def announce(message: str) -> None:
    """One line naming what runs now (for stages without a count)."""
    print(f"mgt-bench: {message}", file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def progress_line(stage: str, done: int, total: int, elapsed: float, unit: str = "images") -> str:
    """``stage: done/total unit (pct), rate unit/s, ETA …`` (rate and ETA once something is done)."""
    pct = f" ({100 * done / total:.0f}%)" if total else ""
    line = f"{stage}: {done}/{total} {unit}{pct}"
    if done == 0 and elapsed >= 1:
        line += f", {format_seconds(elapsed)} elapsed"
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        line += f", {rate:.3g} {unit}/s"
        if done < total:
            line += f", ETA {format_seconds((total - done) / rate)}"
        else:
            line += f", took {format_seconds(elapsed)}"
    return line


class _Clock:
    """A daemon thread that calls `tick` every `interval` seconds until stopped (never blocks an exit)."""

    def __init__(self, interval: float, tick):
        self.interval, self.tick = interval, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mgt-bench-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def start(self) -> "_Clock":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


class Progress:
    """``with Progress("generate", total) as p: p.update(n)`` — a bar on a TTY, plain lines otherwise."""

    def __init__(self, stage: str, total: int, unit: str = "images"):
        self.stage, self.total, self.unit = stage, int(total), unit
        self.done = 0
        self.terminal = is_terminal()
        self._bar = None
        self._start = time.perf_counter()
        self._last = -float("inf")
        self._lock = threading.Lock()
        self._clock: _Clock | None = None

    def __enter__(self) -> "Progress":
        if self.terminal:
            self._bar = tqdm(total=self.total, desc=self.stage, unit="img")
        else:
            self._emit(force=True)
            if interval_seconds() > 0:
                self._clock = _Clock(interval_seconds(), self._emit).start()
        return self

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def update(self, n: int) -> None:
        if n <= 0:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        else:
            self._emit(force=self.done >= self.total)  # the last line always comes

    def update_to(self, done: int) -> None:
        self.update(done - self.done)

    def _emit(self, force: bool = False) -> None:
        with self._lock:  # the clock thread and the caller's updates print one line at a time
            now = time.perf_counter()
            if force or now - self._last >= interval_seconds():
                self._last = now
                announce(progress_line(self.stage, self.done, self.total, now - self._start, self.unit))

    def __exit__(self, *exc) -> None:
        if self._clock is not None:
            self._clock.stop()
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def heartbeat(what: str):
    """Off a terminal, ``mgt-bench: WHAT: still running, 2m00s elapsed`` every interval while the block runs
    (for a stage without a count, e.g. a set metric's feature extraction)."""
    interval = interval_seconds()
    if is_terminal() or interval <= 0:
        yield
        return
    start = time.perf_counter()
    clock = _Clock(interval, lambda: announce(f"{what}: still running, "
                                              f"{format_seconds(time.perf_counter() - start)} elapsed")).start()
    try:
        yield
    finally:
        clock.stop()
