"""The self-contained HTML page: inline CSS, every image a ``data:`` URI, nothing loaded from elsewhere.

It opens offline from anywhere (a run directory copied to a laptop, an e-mail attachment). The only
links are the table of contents (``#anchors``) and the CSV files beside the page (``tables/*.csv``,
relative, so they work where the run directory is); the only script is the paired gallery's
(bench/report/gallery.py), inline, which reads its data from an inert JSON block.
"""
from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ..rundir.store import atomic_write_text
from .document import Section

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1250px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.45;font-size:14px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h2 a.top{font-size:.65em;font-weight:normal;color:#888;text-decoration:none;margin-left:.6em}
a{color:#0b5cad}p,li{overflow-wrap:anywhere}
.prov{color:#555;font-size:.9em}
nav.toc{background:#f6f7f9;border:1px solid #e1e4e8;padding:.5em 1em;margin:1em 0}
nav.toc ol{columns:3 15em;column-gap:2em;margin:.3em 0;padding-left:1.6em}nav.toc li{break-inside:avoid}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}
table{border-collapse:collapse;font-size:.88em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f1f3f5}
td.n,th.n{white-space:nowrap}tr:nth-child(even) td{background:#fafafa}
tbody tr:hover td{background:#eef4fb}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.csv{color:#666;font-size:.85em}pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.8em}
ul.readings li{margin:.15em 0}
"""

#: table cells up to this many characters never wrap ("55 / 33 / 8", "74 % [65, 83] ▲*"): a wide table
#: scrolls inside its own box instead of breaking a number across lines. Headers wrap between words
#: unless they are this short ("W / T / L", "p sign adj.").
NOWRAP_CHARS = 32
NOWRAP_HEADER_CHARS = 12


def _inline(text: str) -> str:
    """Escape, then the two bits of inline markup the section texts use: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _cell(tag: str, value) -> str:
    text = "" if not isinstance(value, str) and pd.isna(value) else str(value)
    cls = " class='n'" if len(text) <= (NOWRAP_HEADER_CHARS if tag == "th" else NOWRAP_CHARS) else ""
    return f"<{tag}{cls}>{html.escape(text)}</{tag}>"


def table_html(df: pd.DataFrame) -> str:
    head = "".join(_cell("th", c) for c in df.columns)
    body = "".join("<tr>" + "".join(_cell("td", v) for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def anchors(titles: list[str]) -> list[str]:
    """One unique, URL-safe id per section title ("Win rate vs baseline" → "win-rate-vs-baseline")."""
    seen: dict[str, int] = {}
    out = []
    for title in titles:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def csv_links(names: list[str]) -> str:
    """Links to the tables beside the page, relative to it (they open where the run directory is)."""
    return "Data: " + ", ".join(f"<a href='tables/{html.escape(quote(c))}'><code>tables/{html.escape(c)}</code></a>"
                                for c in names)


def render_html(title: str, provenance_line: str, sections: list[Section], path: Path) -> Path:
    ids = anchors([s.title for s in sections])
    toc = "".join(f"<li><a href='#{i}'>{html.escape(s.title)}</a></li>" for s, i in zip(sections, ids))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1 id='top'>{html.escape(title)}</h1>",
             f"<p class='prov'>{html.escape(provenance_line)} · rendered "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>"]
    if len(sections) > 2:
        parts.append(f"<nav class='toc'><strong>Contents</strong><ol>{toc}</ol></nav>")
    for s, anchor in zip(sections, ids):
        parts.append(f"<h2 id='{anchor}'>{html.escape(s.title)}<a class='top' href='#top' title='back to the top'>↑ top</a></h2>")
        parts += [f"<p>{_inline(p)}</p>" for p in s.paragraphs]
        if s.bullets:
            parts.append("<ul class='readings'>" + "".join(f"<li>{_inline(b)}</li>" for b in s.bullets) + "</ul>")
        if s.table is not None and len(s.table):
            parts.append(table_html(s.table))
        if s.image is not None and Path(s.image).exists():
            parts.append(f"<img alt='{html.escape(s.title)}' src='{data_uri(s.image)}'>")
        if s.caption:
            parts.append(f"<p class='csv'>{_inline(s.caption)}</p>")
        if s.html:
            parts.append(s.html)
        if s.code:
            parts.append(f"<pre>{html.escape(s.code)}</pre>")
        if s.csv:
            parts.append(f"<p class='csv'>{csv_links(s.csv)}</p>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))  # replaced, never written through a planted link
    return path
