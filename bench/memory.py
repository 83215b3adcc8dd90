"""Peak memory of one stretch of work (a batch of images), for the cost table; freeing a model's memory.

On CUDA: the peak of allocated device memory (`torch.cuda.max_memory_allocated`, reset at the start).
On the CPU (Linux): the process's peak resident set (VmHWM in /proc/self/status), reset at the start
by writing 5 to /proc/self/clear_refs; elsewhere, or where the reset is not allowed, None. Both count
everything alive at the time, the model's weights included.
"""
from __future__ import annotations

import gc
from pathlib import Path

import torch


def _cuda(device) -> bool:
    return torch.cuda.is_available() and str(device).startswith("cuda")


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib`` (None when it cannot be measured)."""

    def __init__(self, device):
        self.device = device
        self.mib: float | None = None
        self._rss_reset = False

    def __enter__(self) -> "PeakMemory":
        if _cuda(self.device):
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self._rss_reset = True
            except OSError:
                self._rss_reset = False
        return self

    def __exit__(self, *exc) -> None:
        if _cuda(self.device):
            self.mib = torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20
        elif self._rss_reset:
            self.mib = _vm_hwm_mib()


def _vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB → MiB
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory() -> None:
    """Collect what was just dropped (a released model) and hand cached CUDA blocks back to the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
