"""The Markdown twin of the HTML page (GitHub-flavoured tables; images as relative links into ``plots/``)."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..rundir.store import atomic_write_text
from .document import Section


def _cell(v) -> str:
    return ("" if pd.isna(v) else str(v)).replace("|", "\\|").replace("\n", " ")


def table_markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(title: str, provenance_line: str, sections: list[Section], path: Path) -> Path:
    out = [f"# {title}", "", f"_{provenance_line} · rendered {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}_", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for p in s.paragraphs:
            out += [p, ""]
        if s.bullets:
            out += [f"- {b}" for b in s.bullets] + [""]
        if s.table is not None and len(s.table):
            out += [table_markdown(s.table), ""]
        if s.image is not None and Path(s.image).exists():
            rel = os.path.relpath(Path(s.image), path.parent).replace(os.sep, "/")
            out += [f"![{s.title}]({rel})", ""]
        if s.caption:
            out += [f"_{s.caption}_", ""]
        if s.code:
            out += ["```json", s.code, "```", ""]
        if s.csv:
            out += ["Data: " + ", ".join(f"`tables/{c}`" for c in s.csv), ""]
    atomic_write_text(path, "\n".join(out))  # replaced, never written through a planted link
    return path
