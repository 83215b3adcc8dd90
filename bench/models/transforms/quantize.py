"""Weight quantization of the transformer's linear layers through torchao (arXiv 2411.10781 §4, "SCQ"; torchao).

Schemes (torchao configs; every ``nn.Linear`` of the transformer, as the reference SCQ recipe
quantizes every linear layer — convolutions and embeddings stay in the model dtype):

| scheme               | weights                     | activations                  | torchao config |
|----------------------|-----------------------------|------------------------------|----------------|
| ``none``             | model dtype                 | model dtype                  | — (neutral)    |
| ``int8-weight-only`` | int8, per output channel    | model dtype                  | Int8WeightOnlyConfig |
| ``int8-dynamic``     | int8, per output channel    | int8, per token, dynamic     | Int8DynamicActivationInt8WeightConfig (W8A8) |
| ``int4-weight-only`` | int4, groups along inputs   | model dtype                  | Int4WeightOnlyConfig (CUDA kernels) |
| ``w4a8-dynamic``     | int4, groups along inputs   | int8, per token, dynamic     | Int8DynamicActivationIntxWeightConfig |
| ``float8-weight-only`` | float8 e4m3               | model dtype                  | Float8WeightOnlyConfig |
| ``float8-dynamic``   | float8 e4m3                 | float8, dynamic              | Float8DynamicActivationFloat8WeightConfig (GPU CC ≥ 8.9) |

``w4a8-dynamic`` is the paper's W4A8 bit widths with *dynamic* activation scales: the reference's
static, calibrated activation scales (one per CFG half) and its quantization-aware fine-tune are
training, not inference-time choices, and are not reproduced. Group sizes follow the reference rule:
``group_size`` (128), reduced by 32 until it divides a layer's input width (at least 32); a layer no
size divides stays unquantized.

The quantized network is a copy: the backend's ``transformer`` is swapped for it while the variant
runs and the original (never modified) is put back afterwards. Whether a scheme runs on the target
device is decided at config time by quantizing and running a small probe layer there, so an
unsupported combination (int4 kernels or float8 activations on a CPU) fails before any image with
torchao's own reason.
"""
from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn

from mgt_common.errors import ConfigError
from samplers.components import register_component, require
from samplers.model_transforms import ModelTransform

from .network import network_of

SCHEMES = ("none", "int8-weight-only", "int8-dynamic", "int4-weight-only", "w4a8-dynamic", "float8-weight-only",
           "float8-dynamic")
GROUPED = ("int4-weight-only", "w4a8-dynamic")


def torchao_config(scheme: str, group_size: int):
    """The torchao config object of a scheme (torchao ≥ 0.14 API)."""
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
        return q.Int4WeightOnlyConfig(group_size=group_size)
    if scheme == "w4a8-dynamic":
        from torchao.quantization.granularity import PerGroup

        return q.Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size))
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


def quantize_network(network: nn.Module, scheme: str, group_size: int) -> int:
    """Quantize `network`'s linear layers in place; returns how many were quantized."""
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
        quantize_(network, torchao_config(scheme, size or group_size), filter_fn=lambda m, fqn, names=names: fqn in names)
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

    def check_model(self, model) -> None:
        network = network_of(model, "model_transform 'quantize'")
        if self.neutral():
            return
        parameter = next(network.parameters())
        probe = nn.Sequential(nn.Linear(64, 64)).to(device=parameter.device, dtype=parameter.dtype).eval()
        try:
            quantize_network(probe, self.scheme, min(self.group_size, 64))
            with torch.no_grad():
                probe(torch.zeros(2, 64, device=parameter.device, dtype=parameter.dtype))
        except ConfigError:
            raise
        except Exception as exc:  # torchao reports unsupported device/dtype combinations in many ways
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"model_transform 'quantize': scheme {self.scheme!r} does not run on "
                              f"{parameter.device.type} with {str(parameter.dtype).removeprefix('torch.')} weights "
                              f"here (torchao: {reason}); pick another scheme or device") from None

    def attach(self, model):
        original = network_of(model, "model_transform 'quantize'")
        quantized = copy.deepcopy(original)
        if quantize_network(quantized, self.scheme, self.group_size) == 0:
            raise ConfigError(f"model_transform 'quantize': no linear layer of this network can take scheme "
                              f"{self.scheme!r} with group_size {self.group_size}")
        model.transformer = quantized

        def restore() -> None:
            model.transformer = original

        return restore
