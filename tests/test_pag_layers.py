"""Which blocks PAG perturbs (arXiv 2403.17377): ours by index, and what diffusers' MM-DiT default really selects."""
from __future__ import annotations

import types
import warnings

import torch

from bench.models.meissonic_transformer import MeissonicTransformer2DModel
from bench.models.transforms.attention import IdentityImageJointAttnProcessor, perturbed_attention
from samplers.variant import build_variant


def test_diffusers_mm_dit_default_blocks_1_selects_blocks_1_and_10_to_19():
    """diffusers' SD3 PAG pipeline defaults to pag_applied_layers = "blocks.1", which `PAGMixin` matches with
    re.search against module names: "transformer_blocks.10.attn" contains "blocks.1" too (its guard against
    blocks.10 only compares names ending in a number). On a 24-block MM-DiT that is 11 blocks, not one."""
    from diffusers import SD3Transformer2DModel
    from diffusers.models.attention_processor import PAGCFGJointAttnProcessor2_0, PAGJointAttnProcessor2_0
    from diffusers.pipelines.pag.pag_utils import PAGMixin

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=4, patch_size=2, in_channels=4, num_layers=24, attention_head_dim=8,
                                        num_attention_heads=1, joint_attention_dim=8, caption_projection_dim=8,
                                        pooled_projection_dim=8, out_channels=4)
    pipe = types.SimpleNamespace(transformer=transformer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        PAGMixin.set_pag_applied_layers(pipe, "blocks.1",  # the SD3 PAG pipeline's default and its processors
                                        pag_attn_processors=(PAGCFGJointAttnProcessor2_0(), PAGJointAttnProcessor2_0()))
        PAGMixin._set_pag_attn_processor(pipe, pipe.pag_applied_layers, do_classifier_free_guidance=True)
    perturbed = {i for i, block in enumerate(transformer.transformer_blocks)
                 if isinstance(block.attn.processor, PAGCFGJointAttnProcessor2_0)}
    assert perturbed == {1, *range(10, 20)}


def test_the_pag_preset_perturbs_mm_block_1_alone():
    assert build_variant("pag").guidance.layers == [1]
    torch.manual_seed(0)
    network = MeissonicTransformer2DModel(num_layers=12, num_single_layers=1, attention_head_dim=16,
                                          num_attention_heads=1, joint_attention_dim=8, pooled_projection_dim=16,
                                          axes_dims_rope=(4, 6, 6), codebook_size=8, vocab_size=9)
    model = types.SimpleNamespace(transformer=network, name="test")
    originals = [block.attn.processor for block in network.transformer_blocks]
    with perturbed_attention(model, [1]):
        swapped = {i for i, block in enumerate(network.transformer_blocks)
                   if isinstance(block.attn.processor, IdentityImageJointAttnProcessor)}
        assert swapped == {1}  # not 1 and 10–11, as a "blocks.1" search would take here
    assert [block.attn.processor for block in network.transformer_blocks] == originals
