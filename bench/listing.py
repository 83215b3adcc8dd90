"""`--list`: every registered component, variant, model, metric, prompt set and shipped config.

Descriptions are printed whole, not cut to their first line: long ones wrap at the terminal's width
under their own column, never truncated.
"""
from __future__ import annotations

import inspect
import shutil
import textwrap
from typing import Iterable

from metrics.base import METRICS
from mgt_common.errors import ConfigError
from samplers.components import REGISTRIES, list_components
from samplers.variant import VARIANT_PRESETS, resolve_spec

from .config import CONFIG_DIR
from .models.registry import MODELS
from .prompts import PROMPT_SETS


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def variant_description(name: str) -> str:
    """A variant's own description, else one derived from the components it changes (see `resolve_spec`)."""
    try:
        return str(resolve_spec(name).get("description", ""))
    except ConfigError as exc:  # a broken preset is listed with its error rather than hiding the others
        return f"(invalid: {exc})"


def config_description(text: str) -> str:
    """The first comment paragraph of a shipped config (the lines up to the first bare ``#``)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if not body:
            if lines:
                break
            continue
        lines.append(body)
    return " ".join(lines)


def shipped_config_descriptions() -> dict[str, str]:
    items = sorted((p for p in CONFIG_DIR.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)
    return {p.name[: -len(".toml")]: config_description(p.read_text(encoding="utf-8")) for p in items}


def format_section(title: str, rows: Iterable[tuple[str, str]], width: int | None = None) -> str:
    rows = list(rows)
    width = width or shutil.get_terminal_size((100, 24)).columns
    name_width = max((len(name) for name, _ in rows), default=0)
    indent = " " * (2 + name_width + 2)
    lines = [title]
    for name, text in rows:
        head = f"  {name:<{name_width}}  "
        if not text:
            lines.append(head.rstrip())
            continue
        # break_long_words=False: a long path or formula stays whole on its own line rather than being split
        lines.append(textwrap.fill(text, width=max(width, len(indent) + 30), initial_indent=head,
                                   subsequent_indent=indent, break_long_words=False, break_on_hyphens=False))
    return "\n".join(lines)


def listing_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    list_components()  # imports the built-in components
    sections = [(f"sampler components: {kind}", [(n, summary(cls.__doc__)) for n, cls in registry.items()])
                for kind, registry in REGISTRIES.items()]
    sections.append(("sampler variants (use in `samplers`)",
                     [(name, variant_description(name)) for name in VARIANT_PRESETS.names()]))
    sections.append(("models", [(name, summary(factory.__doc__)) for name, factory in MODELS.items()]))
    sections.append(("metrics", [(name, ("[set] " if getattr(cls, "compute", None) and not hasattr(cls, "score") else "")
                                  + summary(cls.__doc__)) for name, cls in METRICS.items()]))
    sections.append(("prompt sets (use in `prompts`)", [(name, summary(fn.__doc__)) for name, fn in PROMPT_SETS.items()]))
    sections.append(("shipped configs (use with --config)", list(shipped_config_descriptions().items())))
    from mgt_common.registry import broken_plugins

    if broken_plugins():  # listed, not raised: a broken package must not hide everything else
        sections.append(("installed plugins that failed to load", broken_plugins()))
    return sections


def print_listing(width: int | None = None) -> None:
    for title, rows in listing_sections():
        print()
        print(format_section(title, rows, width))
