"""Export a run's images in the HPSv2 benchmark layout, so that published tooling can read them.

HPSv2's ``evaluate.py`` (github.com/tgxs002/HPSv2, ``evaluate_benchmark_all``) reads
``<root>/<model>/<style>/<idx:05d>.jpg`` with ``<style>`` in anime, concept-art, paintings, photo and
``idx`` the prompt's position in ``benchmark/<style>.json``. We write one such ``<model>`` folder per
sampler variant, from the run's ``samples.csv`` (columns unit_key, variant, prompt_id, prompt,
category, seed, …, image_path relative to the run directory) and prompt ids ``<style>-<idx:05d>`` as
the ``hpsv2-benchmark`` prompt set makes them.

The layout holds one image per prompt: with several seeds per prompt, the smallest seed is exported
(or the one given). JPEG re-encoding changes pixels, so scores of the export differ slightly from
ours, which are computed on the PNGs.
"""
from __future__ import annotations

import csv
import os
import re
import tempfile
from pathlib import Path

from mgt_common.errors import ConfigError

from .prompt_sets import HPSV2_STYLES

_ID = re.compile(r"^(?P<style>.+)-(?P<idx>\d+)$")


def export_hpsv2_layout(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, variants: list[str] | None = None,
                        seed: int | None = None, quality: int = 95) -> dict[str, int]:
    """Write ``out_dir/<variant>/<style>/<idx:05d>.jpg`` for every HPSv2-benchmark image of the run.

    Returns the number of images written per variant. Rows whose prompt is not an HPSv2-benchmark
    prompt are skipped; a run with none is an error.
    """
    from PIL import Image

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    samples = run_dir / "samples.csv"
    if not samples.is_file():
        raise ConfigError(f"export: {samples} does not exist; run the generation stage first")
    with open(samples, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"variant", "prompt_id", "seed", "image_path"}
    if rows and not needed <= set(rows[0]):
        raise ConfigError(f"export: {samples} lacks columns {sorted(needed - set(rows[0]))}")
    chosen: dict[tuple[str, str, int], dict] = {}
    for row in rows:
        if variants is not None and row["variant"] not in variants:
            continue
        match = _ID.match(row["prompt_id"])
        style = match["style"] if match else row.get("category", "")
        if not match or style not in HPSV2_STYLES:
            continue
        if seed is not None and int(row["seed"]) != seed:
            continue
        key = (row["variant"], style, int(match["idx"]))
        if key not in chosen or int(row["seed"]) < int(chosen[key]["seed"]):
            chosen[key] = row
    if not chosen:
        raise ConfigError(f"export: {samples} has no HPSv2-benchmark images (prompt ids '<style>-<idx>' with a style in "
                          f"{', '.join(HPSV2_STYLES)}){' for seed ' + str(seed) if seed is not None else ''}")
    written: dict[str, int] = {}
    for (variant, style, idx), row in sorted(chosen.items()):
        if "/" in variant or variant in (".", ".."):
            raise ConfigError(f"export: variant name {variant!r} cannot be a folder name")
        target = out_dir / variant / style / f"{idx:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        source = run_dir / row["image_path"]
        if not source.is_file():
            raise ConfigError(f"export: image {source} listed in samples.csv does not exist")
        with Image.open(source) as image:
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".jpg")
            os.close(fd)
            image.convert("RGB").save(tmp, format="JPEG", quality=quality)
            os.replace(tmp, target)  # atomic, like every image the suite writes
        written[variant] = written.get(variant, 0) + 1
    return written
