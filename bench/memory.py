"""Memory of one stretch of work (a batch of images), for the cost table; freeing memory; weight bytes
(docs/rundir.md, "Cost columns").

`PeakMemory` records two figures of a batch:

- ``resident_mib``: what was held when the batch started — the model's weights as the variant runs them
  (a quantized copy, with the original's weights parked off the device: bench/models/transforms/offload.py),
  the text encoder and VQ decoder, and anything else alive;
- ``peak_mib``: the highest point during the batch (the same, plus the batch's working memory: logits,
  activations, the sampler's tensors).

On CUDA: allocated device memory (`torch.cuda.memory_allocated` at the start, `max_memory_allocated`
after a reset at the start). On the CPU (Linux): the process's resident set — VmRSS at the start, and
VmHWM after resetting it by writing 5 to /proc/self/clear_refs — so it includes the Python interpreter
and torch's own libraries too; freed heap pages are handed back to the OS first (garbage collection and
glibc's ``malloc_trim``), so that what an earlier batch freed is not counted; elsewhere, or where the
reset is not allowed, None. ``peak − resident``
is the batch's own working memory, which the report divides by the batch's images.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass


def _cuda(device) -> bool:
    return torch.cuda.is_available() and str(device).startswith("cuda")


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mib`` and ``m.resident_mib`` (None when they cannot
    be measured)."""

    def __init__(self, device):
        self.device = device
        self.peak_mib: float | None = None
        self.resident_mib: float | None = None
        self._rss_reset = False

    def __enter__(self) -> "PeakMemory":
        if _cuda(self.device):
            device = torch.device(self.device)
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.resident_mib = torch.cuda.memory_allocated(device) / 2**20
        else:
            # what the last batch (or a warm-up, or a transform's attach) freed is handed back first: glibc
            # keeps freed heap pages, which the resident set would count as this batch's
            _trim_host_heap()
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self._rss_reset = True
                self.resident_mib = _status_mib("VmRSS")
            except OSError:
                self._rss_reset = False
        return self

    def __exit__(self, *exc) -> None:
        if _cuda(self.device):
            self.peak_mib = torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20
        elif self._rss_reset:
            self.peak_mib = _status_mib("VmHWM")
        if self.peak_mib is None:
            self.resident_mib = None

    @property
    def mib(self) -> float | None:
        """The batch's peak (the name earlier code used)."""
        return self.peak_mib


def _status_mib(field: str) -> float | None:
    """A kB line of /proc/self/status, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB → MiB
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory() -> None:
    """Collect what was just dropped (a released model, a quantized copy), hand cached CUDA blocks back to
    the device, and free heap pages back to the OS (glibc keeps them otherwise, and the resident set the
    CPU peak reads would not drop)."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
    _trim_host_heap()


def _trim_host_heap() -> None:
    """Collect garbage and return glibc's free heap pages to the OS (``malloc_trim``; a no-op elsewhere)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass


def _storage_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds, through tensor subclasses (torchao's quantized weights hold their packed data,
    scales and zero points as inner tensors)."""
    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return sum(_storage_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def tensor_bytes(module: nn.Module | None) -> int:
    """Bytes of `module`'s parameters and buffers as they are stored (each tied tensor once)."""
    if module is None:
        return 0
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += _storage_bytes(tensor)
    return total
