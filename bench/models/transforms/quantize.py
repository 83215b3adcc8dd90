"""Weight quantization of the transformer's linear layers through torchao (arXiv 2411.10781 §4, "SCQ"; torchao).

Schemes (torchao configs; every ``nn.Linear`` of the transformer, as the reference SCQ recipe
quantizes every linear layer — convolutions and embeddings stay in the model dtype):

| scheme               | weights                     | activations                  | torchao config |
|----------------------|-----------------------------|------------------------------|----------------|
| ``none``             | model dtype                 | model dtype                  | — (neutral)    |
| ``int8-weight-only`` | int8, per output channel    | model dtype                  | Int8WeightOnlyConfig |
| ``int8-dynamic``     | int8, per output channel    | int8, per token, dynamic     | Int8DynamicActivationInt8WeightConfig (W8A8) |
| ``int4-weight-only`` | int4, groups along inputs   | model dtype                  | Int4WeightOnlyConfig |
| ``w4a8-dynamic``     | int4, groups along inputs   | int8, per token, dynamic     | Int8DynamicActivationIntxWeightConfig |
| ``float8-weight-only`` | float8 e4m3               | model dtype                  | Float8WeightOnlyConfig |
| ``float8-dynamic``   | float8 e4m3                 | float8, dynamic              | Float8DynamicActivationFloat8WeightConfig (GPU CC ≥ 8.9) |

Layouts (`choose_layout`): where torchao has a *packed* layout for the device, it is used — int4 in
tinygemm's tile-packed layout on CUDA (two values a byte, ``_weight_int4pack_mm``), W4A8 in torchao's
or KleidiAI's packed CPU layout where those kernels are built in. Where only the *simulated* layout
exists (W4A8 as ``IntxUnpackedToInt8``: one int4 value per int8 byte, activations fake-quantized, a
float matmul — made for export, not for speed), the transform says so (`cost_note`), and the report
marks the variant's seconds and memory as not representative. Every layout is chosen by quantizing and
running a probe layer on the device, once per (scheme, device, dtype).

``w4a8-dynamic`` is the paper's W4A8 bit widths with *dynamic* activation scales: the reference's
static, calibrated activation scales (one per CFG half) and its quantization-aware fine-tune are
training, not inference-time choices, and are not reproduced. Group sizes follow the reference rule:
``group_size`` (128), reduced by 32 until it divides a layer's input width (at least 32); a layer no
size divides stays unquantized.

The quantized network is a copy: the backend's ``transformer`` is swapped for it while the variant
runs, the original's weights leave the device meanwhile (offload.py: host memory on a GPU, a temporary
file on the CPU) so that the variant's peak memory is its own, and the original (never modified) is put
back afterwards. Whether a scheme runs on the target device is decided at config time by the probe, so
an unsupported combination (int4 on a CPU, float8 activations below CC 8.9) fails before any image with
torchao's own reason.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mgt_common.errors import ConfigError
from samplers.components import register_component, require
from samplers.model_transforms import ModelTransform

from ...memory import free_memory
from .network import network_of
from .offload import ParkedNetwork

SCHEMES = ("none", "int8-weight-only", "int8-dynamic", "int4-weight-only", "w4a8-dynamic", "float8-weight-only",
           "float8-dynamic")
GROUPED = ("int4-weight-only", "w4a8-dynamic")
#: Bits per weight value that each scheme's name promises (scales and zero points come on top).
NOMINAL_BITS = {"int8-weight-only": 8, "int8-dynamic": 8, "int4-weight-only": 4, "w4a8-dynamic": 4,
                "float8-weight-only": 8, "float8-dynamic": 8}
#: torchao packing formats to try, best first, per (scheme, device type); None = torchao's default layout.
PACKINGS = {("int4-weight-only", "cuda"): ("tile_packed_to_4d", "plain"),
            ("int4-weight-only", "cpu"): ("plain",),
            ("w4a8-dynamic", "cpu"): ("opaque_torchao_auto", "opaque_aten_kleidiai", "unpacked_to_int8"),
            ("w4a8-dynamic", "cuda"): ("unpacked_to_int8",)}
#: Packings that store values wider than the scheme's bits and compute in float: a simulation.
SIMULATED = {"unpacked_to_int8": "simulated W4A8: torchao's IntxUnpackedToInt8 layout (meant for export) stores one "
                                 "int4 value per int8 byte, fake-quantizes the activations and runs a float matmul; "
                                 "no packed W4A8 kernel is built into this torchao for this device, so the seconds "
                                 "and memory are not what W4A8 would cost"}


@dataclass(frozen=True)
class Layout:
    """The layout a scheme runs in on a device: torchao's packing format (None: the config's only layout)
    and, for a simulated one, why its costs are not representative."""

    packing: str | None
    simulated: str | None = None


def torchao_config(scheme: str, group_size: int, packing: str | None = None):
    """The torchao config object of a scheme (torchao ≥ 0.14 API), in `packing` where it has several."""
    try:
        import torchao.quantization as q
    except ImportError:
        raise ConfigError("model_transform 'quantize': torchao is not installed; pip install 'mgt-bench[quant]' "
                          "(or pip install torchao)") from None
    if scheme == "int8-weight-only":
        return q.Int8WeightOnlyConfig()
    if scheme == "int8-dynamic":
        return q.Int8DynamicActivationInt8WeightConfig()
    if scheme == "int4-weight-only":
        return q.Int4WeightOnlyConfig(group_size=group_size, int4_packing_format=packing or "plain")
    if scheme == "w4a8-dynamic":
        from torchao.quantization.granularity import PerGroup

        return q.Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size),
                                                       intx_packing_format=packing or "unpacked_to_int8")
    if scheme == "float8-weight-only":
        return q.Float8WeightOnlyConfig()
    if scheme == "float8-dynamic":
        return q.Float8DynamicActivationFloat8WeightConfig()
    raise ValueError(scheme)


def layer_group_size(in_features: int, group_size: int) -> int | None:
    """The reference's rule: `group_size`, minus 32 at a time, until it divides `in_features` (≥ 32)."""
    size = group_size
    while size >= 32:
        if in_features % size == 0:
            return size
        size -= 32
    return None


def _probe(scheme: str, packing: str | None, device: torch.device, dtype: torch.dtype) -> None:
    """Quantize and run a 64 × 64 linear layer on the device (raises what torchao raises)."""
    probe = nn.Sequential(nn.Linear(64, 64)).to(device=device, dtype=dtype).eval()
    quantize_network(probe, scheme, 64, packing)
    with torch.no_grad():
        probe(torch.zeros(2, 64, device=device, dtype=dtype))


@functools.lru_cache(maxsize=None)
def choose_layout(scheme: str, device_type: str, dtype: torch.dtype) -> Layout:
    """The first packing of `PACKINGS` that quantizes and runs on the device; ConfigError with each one's
    reason when none does."""
    device = torch.device(device_type)
    reasons = []
    for packing in PACKINGS.get((scheme, device_type), (None,)):
        try:
            _probe(scheme, packing, device, dtype)
        except ConfigError:
            raise
        except Exception as exc:  # torchao reports unsupported device/dtype combinations in many ways
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reasons.append(f"{packing}: {reason}" if packing else reason)
            continue
        return Layout(packing, SIMULATED.get(packing or ""))
    raise ConfigError(f"model_transform 'quantize': scheme {scheme!r} does not run on {device_type} with "
                      f"{str(dtype).removeprefix('torch.')} weights here (torchao {_torchao_version()}: "
                      f"{'; '.join(reasons)}); pick another scheme or device")


def _torchao_version() -> str:
    import torchao

    return torchao.__version__


def quantize_network(network: nn.Module, scheme: str, group_size: int, packing: str | None = None) -> int:
    """Quantize `network`'s linear layers in place (in `packing`, see `choose_layout`); returns how many
    were quantized."""
    from torchao.quantization import quantize_

    linears = {name: m for name, m in network.named_modules() if isinstance(m, nn.Linear)}
    by_size: dict[int | None, set[str]] = {}
    for name, layer in linears.items():
        size = layer_group_size(layer.in_features, group_size) if scheme in GROUPED else None
        if scheme in GROUPED and size is None:
            continue
        by_size.setdefault(size, set()).add(name)
    count = 0
    for size, names in by_size.items():
        quantize_(network, torchao_config(scheme, size or group_size, packing),
                  filter_fn=lambda m, fqn, names=names: fqn in names)
        count += len(names)
    return count


@register_component("model_transform", "quantize")
class Quantize(ModelTransform):
    """Weight (and activation) quantization of every linear layer through torchao: int8, W8A8, int4, W4A8, float8.

    ``scheme``: none (neutral), int8-weight-only, int8-dynamic (W8A8), int4-weight-only, w4a8-dynamic,
    float8-weight-only, float8-dynamic; ``group_size``: int4 weight groups (reference 128).
    """

    version = "1"
    cost_effect = "weights in 8 or 4 bits: less memory; speed depends on the device's kernels; passes unchanged"
    #: attached before the transforms that patch blocks: it swaps the network for a quantized copy.
    order: ClassVar[int] = 0

    scheme: str = "none"
    group_size: int = 128

    def validate(self) -> None:
        require(self.scheme in SCHEMES, "model_transform", self.name,
                f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        require(self.group_size >= 32 and self.group_size % 32 == 0, "model_transform", self.name,
                f"group_size must be a multiple of 32, at least 32; got {self.group_size}")

    def neutral(self) -> bool:
        return self.scheme == "none"

    def _layout(self, model) -> Layout:
        parameter = next(network_of(model, "model_transform 'quantize'").parameters())
        return choose_layout(self.scheme, parameter.device.type, parameter.dtype)

    def check_model(self, model) -> None:
        network_of(model, "model_transform 'quantize'")
        if not self.neutral():
            self._layout(model)

    def cost_note(self, model) -> str | None:
        return None if self.neutral() else self._layout(model).simulated

    def attach(self, model):
        original = network_of(model, "model_transform 'quantize'")
        layout = self._layout(model)
        quantized = [copy.deepcopy(original)]
        if quantize_network(quantized[0], self.scheme, self.group_size, layout.packing) == 0:
            raise ConfigError(f"model_transform 'quantize': no linear layer of this network can take scheme "
                              f"{self.scheme!r} with group_size {self.group_size}")
        # the original's weights leave the device while the copy runs: the variant's memory is its own
        parked = ParkedNetwork(original)
        parked.park()
        model.transformer = quantized[0]

        def restore() -> None:
            model.transformer = original
            quantized.clear()  # the only reference: the quantized copy is freed before the original returns
            free_memory()
            parked.unpark()

        return restore
