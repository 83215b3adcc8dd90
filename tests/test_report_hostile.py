"""User text in reports is shown as typed: a "$" never reaches matplotlib's mathtext (it once stopped every
report of a run whose prompt had one), and report.md never passes HTML, links or control characters through."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import matplotlib.text
import pandas as pd
import pytest

from bench.report import render_report
from bench.report.markdown import text as md_text
from run_fixture import make_run_dir

UNBALANCED = r"a red circle costing $\frac{1}{$ today"
VALID_MATH = "$x$"
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"


def _retext(run, prompts: dict[str, str] | None = None, categories: dict[str, str] | None = None) -> None:
    samples = pd.read_csv(run / "samples.csv", dtype={"prompt_id": str})
    for pid, value in (prompts or {}).items():
        samples.loc[samples["prompt_id"] == pid, "prompt"] = value
    for pid, value in (categories or {}).items():
        samples.loc[samples["prompt_id"] == pid, "category"] = value
    samples.to_csv(run / "samples.csv", index=False)


def _primary_hpsv2(run) -> None:
    # primary metric first so that the image grid (which prints prompts) shows the retexted prompts
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["report"]["primary_metric"] = "hpsv2"
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_dollar_signs_in_prompts_and_variant_names_are_drawn_literally(tmp_path, monkeypatch):
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, VALID_MATH: 1.0, "a$b": -0.5})
    _retext(run, prompts={f"{p:03d}": UNBALANCED if p % 2 == 0 else f"{VALID_MATH} and $y$ number {p}" for p in range(6)})
    _primary_hpsv2(run)
    parsed_as_math, drawn = [], []
    original, original_draw = matplotlib.text.Text._preprocess_math, matplotlib.text.Text.draw

    def spy(self, s):
        out = original(self, s)
        if out[1] is True:  # mathtext would parse it
            parsed_as_math.append(s)
        return out

    def record(self, renderer):
        drawn.append(self.get_text())
        return original_draw(self, renderer)

    monkeypatch.setattr(matplotlib.text.Text, "_preprocess_math", spy)
    monkeypatch.setattr(matplotlib.text.Text, "draw", record)
    paths = render_report(run, n_boot=20)  # raised ParseSyntaxException before every user text was literal
    assert parsed_as_math == []
    assert (run / "plots" / "image_grid.png").stat().st_size > 1000 and paths["html"].exists()
    joined = "\n".join(drawn).replace("\n", " ")
    assert VALID_MATH in joined and "$" + r"\frac" in joined  # the dollars themselves are drawn


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_markdown_report_escapes_hostile_names_and_categories(tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    variants = {"vanilla": 0.0, IMG: 1.0, "[x](javascript:alert(3))": 0.5}
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0,), variants=variants)
    _retext(run, categories={f"{p:03d}": (SCRIPT + "\x00nul") if p % 2 else "![t](http://example.invalid/t.png)"
                             for p in range(8)},
            prompts={"000": "line one\n<b>two</b>\x00"})
    paths = render_report(run, n_boot=20)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "\x00" not in md and "<img" not in md and "<script" not in md
    assert not re.search(r"(?<!\\)\]\((javascript|http)", md)  # "](" only escaped: no link, no image
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    parser = _Tags()
    parser.feed(rendered)
    assert not [t for t, _ in parser.tags if t in ("script", "iframe", "object", "embed", "b")]
    assert not [a for _, attrs in parser.tags for a in attrs if a.startswith("on")]
    images = [attrs.get("src", "") for t, attrs in parser.tags if t == "img"]
    assert images and all(src.startswith("plots/") for src in images)  # only the report's own figures
    links = [attrs.get("href", "") for t, attrs in parser.tags if t == "a"]
    assert all(h.startswith("#") or h.startswith("tables/") for h in links)
    # the names are still there, readable as typed
    text = rendered.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    assert IMG in text and SCRIPT in text


@pytest.mark.parametrize("raw, shown", [
    ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)>"),
    ("p < 0.05 & q > 1", "p < 0.05 & q > 1"),  # not markup: left readable
    ("&lt;b&gt;", "&amp;lt;b&amp;gt;"),  # an entity in a name is shown as typed
    ("[a](http://x) ![b](y) [c]: z", r"[a\](http://x) ![b\](y) [c\]: z"),
    ("a\x00b\x07c\nd", "a\ufffdb\ufffdc d"),
])
def test_markdown_text_escape(raw, shown):
    assert md_text(raw) == shown
