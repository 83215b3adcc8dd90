"""Weights off the device while a transformed copy of their network runs (docs/rundir.md, "Cost columns").

A variant that runs a *copy* of the network (quantization builds one) must not also carry the original
in its memory: its peak would count two networks. `park` moves every parameter and buffer of the
original off the device and `unpark` brings it back into the same tensor objects (so every reference to
the module, its parameters and their ties stays valid), bit for bit *and at the same addresses modulo
4096*: CPU and GPU matrix kernels pick their code path by the alignment of their operands (measured: the
tiny Meissonic's timestep linear, whose weight the safetensors loader placed at an address ≡ 1128 mod
4096, gave outputs 1.2e-7 apart from the same weight in a freshly allocated 64-aligned tensor), so a
restored network at other offsets would change the plain variant's images after a quantized one ran.

- on a GPU, each storage's bytes move to host memory and back;
- on the CPU, where host memory *is* the device's, they are written to a temporary file (``torch.save``),
  their storage is freed and handed back to the operating system (``malloc_trim``; without it glibc keeps
  freed blocks, and the process's resident set, which the CPU peak reads, would not drop), and read back.

Cost: one copy each way per attach (host ↔ GPU at PCIe speed, or a file write and read on the CPU);
it happens outside the timed batch and is reported apart (bench/generate.py, ``transform_seconds``).
"""
from __future__ import annotations

import tempfile

import torch
from torch import nn

from ...memory import free_memory


def _tensors(network: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `network` once (tied ones under their first name)."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in [*network.named_parameters(remove_duplicate=False), *network.named_buffers(remove_duplicate=False)]:
        if tensor is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            out[name] = tensor
    return out


#: restored storages start at the same address modulo this (a page: covers every SIMD and cache-line alignment)
ALIGNMENT = 4096


class ParkedNetwork:
    """``park()`` the network's weights off its device; ``unpark()`` puts them back exactly (see above)."""

    def __init__(self, network: nn.Module):
        self.network = network
        self.tensors = _tensors(network)
        first = next(iter(self.tensors.values()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        #: per tensor: (storage key, storage offset, size, stride, dtype); per storage: (bytes, address mod ALIGNMENT)
        self.views: dict[str, tuple] = {}
        self.storages: dict[int, tuple[int, int]] = {}
        self._host: dict[int, torch.Tensor] | None = None
        self._file = None

    @property
    def bytes(self) -> int:
        return sum(size for size, _ in self.storages.values()) if self.storages else sum(
            t.untyped_storage().nbytes() for t in self.tensors.values())

    def park(self) -> None:
        raw: dict[int, torch.Tensor] = {}
        for name, tensor in self.tensors.items():
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key not in raw:
                raw[key] = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)
                self.storages[key] = (storage.nbytes(), key % ALIGNMENT)
            self.views[name] = (key, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if self.device.type == "cpu":
            self._file = tempfile.TemporaryFile(prefix="mgt-bench-parked-")
            torch.save({str(key): value for key, value in raw.items()}, self._file)
        else:
            self._host = {key: value.to("cpu") for key, value in raw.items()}
        del raw
        for tensor in self.tensors.values():
            tensor.data = torch.empty(0, dtype=tensor.dtype, device=self.device)
        free_memory()  # glibc hands the freed pages back only when asked (malloc_trim); CUDA's cache too

    def unpark(self) -> None:
        if self.device.type == "cpu":
            self._file.seek(0)
            saved = {int(key): value for key, value in torch.load(self._file, weights_only=True).items()}
            self._file.close()
            self._file = None
        else:
            saved, self._host = self._host, None
        restored = {}
        for key, (size, address) in self.storages.items():
            block = torch.empty(size + ALIGNMENT, dtype=torch.uint8, device=self.device)
            shift = (address - block.data_ptr()) % ALIGNMENT
            block[shift:shift + size].copy_(saved.pop(key))
            restored[key] = (block.untyped_storage(), shift)
        for name, tensor in self.tensors.items():
            key, offset, shape, stride, dtype = self.views[name]
            storage, shift = restored[key]
            element = torch.empty(0, dtype=dtype).element_size()
            # an address that is no multiple of the element size cannot be reproduced: the next lower one is used
            tensor.data = torch.empty(0, dtype=dtype, device=self.device).set_(storage, shift // element + offset,
                                                                                shape, stride)
