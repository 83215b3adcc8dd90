"""The Markdown twin of the HTML page (GitHub-flavoured tables; images as relative links into ``plots/``).

Variant names, prompt categories, metric names and prompts are user text. Markdown passes HTML through
and turns ``[text](url)`` into links and images, so every text of the page goes through `text` first:
it shows such names literally, as the HTML page does with `html.escape` (CommonMark 0.31, §4.6 HTML
blocks, §6.6 raw HTML, §6.3 links, §4.7 link reference definitions, §2.3 insecure characters).
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..rundir.store import atomic_write_text
from .document import Section

# C0 controls but tab, and DEL: CommonMark replaces U+0000 by U+FFFD when rendering; the file itself
# should not carry them either (a NUL in a report ends it early in C tools and many editors).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NEWLINE = re.compile(r"\r\n|[\n\r]")
# "<" opening a tag, comment, declaration or autolink ("<img", "</", "<!--", "<?", "<http:"); "p < 0.05" stays as is
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
# "&" starting a character reference ("&lt;", "&#60;"): escaped so that the name is shown as typed
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# "](", "][" and "]:" are what make links, images and link reference definitions; an escaped "]" makes none
_LINK_CLOSE = re.compile(r"\](?=[(\[:])")


def text(value) -> str:
    """A text as Markdown that renders it literally (one line): no raw HTML, no link, no image, no control."""
    out = _NEWLINE.sub(" ", str(value))
    out = _CONTROL.sub("\ufffd", out)
    out = _ENTITY.sub("&amp;", out)
    out = _TAG_OPEN.sub("&lt;", out)
    return _LINK_CLOSE.sub(r"\\]", out)


def _cell(v) -> str:
    return text("" if not isinstance(v, str) and pd.isna(v) else v).replace("|", "\\|")


def table_markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def github_anchor(title: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens, "-1" for repeats."""
    slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


def render_markdown(title: str, provenance_line: str, sections: list[Section], path: Path) -> Path:
    out = [f"# {text(title)}", "",
           f"_{text(provenance_line)} · rendered {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}_", ""]
    if len(sections) > 2:
        seen: dict[str, int] = {}
        out += ["**Contents:** " + " · ".join(f"[{text(s.title).replace('[', '(').replace(']', ')')}]"
                                              f"(#{github_anchor(text(s.title), seen)})" for s in sections), ""]
    for s in sections:
        out += [f"## {text(s.title)}", ""]
        for p in s.paragraphs:
            out += [text(p), ""]
        if s.bullets:
            out += [f"- {text(b)}" for b in s.bullets] + [""]
        if s.table is not None and len(s.table):
            out += [table_markdown(s.table), ""]
        if s.image is not None and Path(s.image).exists():
            rel = os.path.relpath(Path(s.image), path.parent).replace(os.sep, "/")
            alt = text(s.title).replace("[", "(").replace("]", ")")
            out += [f"![{alt}]({rel})", ""]
        if s.caption:
            out += [f"_{text(s.caption)}_", ""]
        if s.code:
            out += ["```json", s.code, "```", ""]
        if s.csv:
            out += ["Data: " + ", ".join(f"[`tables/{c}`](tables/{c})" for c in s.csv), ""]
    atomic_write_text(path, "\n".join(out))  # replaced, never written through a planted link
    return path
