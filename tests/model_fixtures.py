"""Tiny random Meissonic / aMUSEd checkpoints for the model tests, built once per test process.

Built with `bench.models.tiny` (the published directory layouts, `save_pretrained`, a CLIP tokenizer
from open_clip's vocabulary) into one temporary folder shared by every test module.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_ROOT = Path(tempfile.mkdtemp(prefix="mgt-tiny-models-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def tiny_checkpoint(kind: str) -> Path:
    """``meissonic-1024`` (with down-sampling; its laion-style CLIP in ``<root>/laion-clip``), ``meissonic-512``,
    ``meissonic-1024-fp16`` (only the fp16 variant files) or ``amused``."""
    from bench.models.tiny import save_tiny_amused, save_tiny_meissonic

    path = _ROOT / kind
    if kind == "meissonic-1024":
        save_tiny_meissonic(path, downsample=True, separate_text_encoder=_ROOT / "laion-clip")
    elif kind == "meissonic-512":
        save_tiny_meissonic(path, downsample=False)
    elif kind == "meissonic-1024-fp16":
        save_tiny_meissonic(path, downsample=True, variant="fp16")
    elif kind == "amused":
        save_tiny_amused(path)
    else:
        raise KeyError(kind)
    return path


def laion_clip() -> Path:
    tiny_checkpoint("meissonic-1024")
    return _ROOT / "laion-clip"


TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_clip_plugin(folder: Path) -> Path:
    """A ``--plugin`` file: registers a tiny OpenCLIP config (random weights saved next to it) so that the
    clip_score metric runs offline."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny-clip.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    plugin = folder / "tiny_clip_plugin.py"
    plugin.write_text(
        "import pathlib\n"
        "import open_clip, torch\n"
        f"here = pathlib.Path({str(folder)!r})\n"
        "open_clip.add_model_config(here / 'tiny-clip.json')\n"
        "if not (here / 'tiny-clip.pt').exists():\n"
        "    torch.manual_seed(0)\n"
        "    torch.save(open_clip.create_model('tiny-clip').state_dict(), here / 'tiny-clip.pt')\n"
    )
    return plugin
