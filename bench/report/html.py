"""The self-contained HTML page: inline CSS, every image a ``data:`` URI, no script, no external link.

It opens offline from anywhere (a run directory copied to a laptop, an e-mail attachment).
"""
from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..rundir.store import atomic_write_text
from .document import Section

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45;font-size:14px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.prov{color:#555;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;height:auto;display:block;margin:.5em 0}
.csv{color:#666;font-size:.85em}pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.8em}
ul.readings li{margin:.15em 0}
"""


def _inline(text: str) -> str:
    """Escape, then the two bits of inline markup the section texts use: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(title: str, provenance_line: str, sections: list[Section], path: Path) -> Path:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='prov'>{html.escape(provenance_line)} · rendered "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{_inline(p)}</p>" for p in s.paragraphs]
        if s.bullets:
            parts.append("<ul class='readings'>" + "".join(f"<li>{_inline(b)}</li>" for b in s.bullets) + "</ul>")
        if s.table is not None and len(s.table):
            parts.append(table_html(s.table))
        if s.image is not None and Path(s.image).exists():
            parts.append(f"<img alt='{html.escape(s.title)}' src='{data_uri(s.image)}'>")
        if s.caption:
            parts.append(f"<p class='csv'>{_inline(s.caption)}</p>")
        if s.code:
            parts.append(f"<pre>{html.escape(s.code)}</pre>")
        if s.csv:
            # paths as text, not links: the page stays free of any href
            parts.append("<p class='csv'>Data: " + ", ".join(f"<code>tables/{html.escape(c)}</code>" for c in s.csv) + "</p>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))  # replaced, never written through a planted link
    return path
