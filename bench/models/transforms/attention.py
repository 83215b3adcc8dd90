"""The attention perturbation of perturbed-attention guidance (PAG, Ahn et al. 2024, arXiv 2403.17377).

Inside `perturbed_attention(model, layers)` the chosen blocks compute their self-attention with the
identity map over image tokens: each image token attends only to itself. In Meissonic's dual-stream
(MM) blocks the joint sequence is [text; image]; as diffusers' `PAGJointAttnProcessor2_0` does for
MM-DiT, the image × image part of the attention matrix becomes the identity (−∞ off the diagonal)
while image → text and text → everything stay. In aMUSEd's layers the self-attention output becomes
to_out(to_v(x)) (diffusers' `PAGIdentitySelfAttnProcessor2_0` perturbed path); cross-attention is kept.
"""
from __future__ import annotations

import contextlib

import torch

from mgt_common.errors import ConfigError

from ..meissonic_transformer import JointAttnProcessor
from .network import family, network_of


class IdentityImageJointAttnProcessor(JointAttnProcessor):
    """`JointAttnProcessor` whose image × image attention is the identity (PAG's perturbation)."""

    #: token merging's own joint attention (tome.py) reads this to apply the same perturbation
    identity_image = True

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        num_text = encoder_hidden_states.shape[1]
        total = num_text + hidden_states.shape[1]
        mask = torch.zeros(total, total, device=hidden_states.device, dtype=hidden_states.dtype)
        mask[num_text:, num_text:] = float("-inf")
        mask[num_text:, num_text:].fill_diagonal_(0)
        return super().__call__(attn, hidden_states, encoder_hidden_states, mask, image_rotary_emb)


class IdentitySelfAttnProcessor:
    """Self-attention replaced by the identity map: out = to_out(to_v(x)) (+ residual, / rescale)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _layer_list(network):
    return network.transformer_blocks if family(network) == "meissonic" else network.transformer_layers


def check_layers(model, layers) -> None:
    network = network_of(model, "guidance 'pag'")
    if not family(network):
        raise ConfigError(f"guidance 'pag': the network {type(network).__name__} has no known attention blocks")
    count = len(_layer_list(network))
    bad = [i for i in layers if not 0 <= int(i) < count]
    if bad:
        raise ConfigError(f"guidance 'pag': layers {bad} out of range: this network has {count} "
                          f"{'dual-stream (MM) blocks' if family(network) == 'meissonic' else 'transformer layers'} "
                          f"(indices 0..{count - 1})")


@contextlib.contextmanager
def perturbed_attention(model, layers):
    """Swap the attention processors of `layers` for PAG's identity ones; put the originals back on exit."""
    check_layers(model, layers)
    network = model.transformer
    meissonic = family(network) == "meissonic"
    saved = []
    try:
        for index in dict.fromkeys(int(i) for i in layers):
            block = _layer_list(network)[index]
            attn = block.attn if meissonic else block.attn1
            saved.append((attn, attn.processor))
            attn.set_processor(IdentityImageJointAttnProcessor() if meissonic else IdentitySelfAttnProcessor())
        model.attention_perturbed = True  # feature caching keeps the perturbed pass's entries apart
        yield
    finally:
        model.attention_perturbed = False
        for attn, processor in reversed(saved):
            attn.set_processor(processor)
