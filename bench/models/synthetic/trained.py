"""The synthetic world with a real network: the trained tiny Meissonic behind the model protocol.

``synthetic-trained`` (the default run's model) generates with `network.WorldNetwork` — Meissonic's own
transformer classes at a tiny size, trained by `train.py` on samples of the world — and is scored by the
world's exact metrics, so a sampler's repair (or not) of a real network's errors is measured without
scorer error. ``synthetic-exact`` (alias ``synthetic``) is the exact denoiser of `backend.py`.

Batch independence (docs/design.md, "Pairing"): CPU matrix kernels may pick another blocking, hence another
summation order, for another number of rows, so the network always runs on chunks of exactly
`FORWARD_CHUNK` rows (the last one padded with copies of its final row); a row's logits then do not
depend on how many images share its batch. Prompts are encoded one at a time and cached, as the CLIP
backends do.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from mgt_common.errors import ConfigError

from ..base import Backend
from ..registry import MODELS
from .grammar import SceneGrammar
from .network import NetworkConfig, WordTokenizer, WorldNetwork
from .train import WEIGHTS_PATH
from .world import TokenWorld

#: The shipped weights' sha256 (tests check it; loading checks it too).
WEIGHTS_SHA256 = "53122c30e6f95de552bba33bc3ecc1070bb30082689452d8970855dc8da4912e"
#: Rows per network call; every call has exactly this many (see the module docstring).
FORWARD_CHUNK = 8
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_network(path: Path) -> tuple[WorldNetwork, dict[str, str]]:
    """The network and the file's metadata (config, training arguments, loss curve)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        raise ConfigError(f"model 'synthetic-trained': {path} has no network config in its metadata; "
                          "write it with python -m bench.models.synthetic.train")
    network = WorldNetwork(NetworkConfig.from_json(json.loads(metadata["config"])))
    missing, unexpected = network.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise ConfigError(f"model 'synthetic-trained': {path} does not fit the network "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return network.eval().requires_grad_(False), metadata


class TrainedWorldModel(Backend):
    """A `Backend` over the trained network; images, grid and exact metrics are the world's."""

    name = "synthetic-trained"
    default_negative_prompt = None  # the unconditional branch is the empty prompt, as in training

    def __init__(self, weights: str | None = None, device: str = "cpu", dtype: str = "float32", **unknown: Any):
        super().__init__()
        if unknown:
            raise ConfigError(f"model 'synthetic-trained': unknown parameter {sorted(unknown)[0]!r}; valid: weights, "
                              "device, dtype (the world itself is fixed by the weights: use synthetic-exact to vary it)")
        if str(dtype).lower() not in DTYPES:
            raise ConfigError(f"model 'synthetic-trained': dtype must be float32 or bfloat16, got {dtype!r}")
        path = Path(weights) if weights else WEIGHTS_PATH
        if not path.is_file():
            raise ConfigError(f"model 'synthetic-trained': weights file {str(path)!r} not found")
        self.weights_sha256 = sha256(path)
        if weights is None and self.weights_sha256 != WEIGHTS_SHA256:
            raise ConfigError(f"model 'synthetic-trained': the shipped weights {path} are damaged (sha256 "
                              f"{self.weights_sha256[:12]}…, expected {WEIGHTS_SHA256[:12]}…); reinstall the package")
        self.network, self.metadata = load_network(path)
        config = self.network.config
        self.device = torch.device(device)
        self.dtype = DTYPES[str(dtype).lower()]
        self.network.to(self.device, self.dtype)
        training = json.loads(self.metadata.get("training", "{}"))
        self.grammar = SceneGrammar(grid=config.grid)
        self.world = TokenWorld(self.grammar, epsilon=float(training.get("epsilon", 0.05)), patch=4)
        self.codebook_size = config.codebook_size
        self.mask_token_id = self.network.mask_token_id
        self.tokenizer = WordTokenizer(config.vocab, config.text_length)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # The transformer, where model-side design choices (token merging, quantization, caching) act on it.
    @property
    def transformer(self):
        return self.network.transformer

    @transformer.setter
    def transformer(self, module) -> None:
        self.network.transformer = module

    def perturbed_attention(self, layers):
        """Context manager: PAG's identity image attention in dual-stream blocks `layers` (samplers/pag.py)."""
        from ..transforms.attention import perturbed_attention

        return perturbed_attention(self, layers)

    def check_perturbed_attention(self, layers) -> None:
        from ..transforms.attention import check_layers

        check_layers(self, layers)

    def describe(self) -> dict[str, Any]:
        return {"backend": "synthetic-trained", "weights_sha256": self.weights_sha256,
                "network": self.network.config.to_json(), "dtype": str(self.dtype).replace("torch.", ""),
                "scenes": self.world.num_scenes, "codebook_size": self.codebook_size, "tokens": self.world.seq_len,
                "epsilon": self.world.epsilon, "device": str(self.device)}

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in self.describe().items() if k != "device"}

    def token_grid(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        side = self.world.grid[0] * self.world.patch
        if (height, width) not in ((None, None), (side, side)):
            raise ConfigError(f"model 'synthetic-trained' renders {side}x{side} images; set height = width = {side} "
                              "or leave them out")
        return self.world.grid

    @torch.no_grad()
    def _encode_one(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        if text not in self._cache:
            pooled, hidden = self.network.text_encoder(self.tokenizer([text]).to(self.device))
            self._cache[text] = (pooled[0].to(self.dtype), hidden[0].to(self.dtype))
        return self._cache[text]

    def encode(self, prompts: list[str], negative_prompt: str | None = None) -> dict[str, torch.Tensor]:
        rows = [self._encode_one(p) for p in prompts]
        negative = self._encode_one(negative_prompt or "")
        return {"pooled": torch.stack([r[0] for r in rows]), "hidden": torch.stack([r[1] for r in rows]),
                "negative_pooled": negative[0].expand(len(prompts), -1),
                "negative_hidden": negative[1].expand(len(prompts), -1, -1)}

    @torch.no_grad()  # not inference_mode: samplers may update the returned tensors in place
    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        batch = tokens.shape[0]
        tokens = tokens.to(self.device)
        pooled, hidden = conditioning["pooled"], conditioning["hidden"]
        if with_uncond:
            tokens = torch.cat([tokens, tokens])
            pooled = torch.cat([pooled, conditioning["negative_pooled"]])
            hidden = torch.cat([hidden, conditioning["negative_hidden"]])
        self.current_step = int(step)
        out = torch.cat([self.network(*chunk) for chunk in _fixed_chunks(tokens, pooled.to(self.device),
                                                                         hidden.to(self.device))])
        out = out[: tokens.shape[0]].float()
        return (out[:batch], out[batch:]) if with_uncond else (out, None)

    def decode(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return self.world.render(tokens)


def _fixed_chunks(*tensors: torch.Tensor):
    """Yield the rows in chunks of exactly `FORWARD_CHUNK`, padding the last with copies of its final row."""
    rows = tensors[0].shape[0]
    for start in range(0, rows, FORWARD_CHUNK):
        chunk = [t[start:start + FORWARD_CHUNK] for t in tensors]
        short = FORWARD_CHUNK - chunk[0].shape[0]
        if short:
            chunk = [torch.cat([c, c[-1:].expand(short, *c.shape[1:])]) for c in chunk]
        yield chunk


@MODELS.register("synthetic-trained")
def synthetic_trained(**model_args) -> TrainedWorldModel:
    """The synthetic world generated by a trained tiny Meissonic (real network errors; the default run's model)."""
    return TrainedWorldModel(**model_args)
