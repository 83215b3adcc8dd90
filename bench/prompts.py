"""Prompt sets: the world's own, registered named sets, and plain text / CSV / JSONL files.

A prompt set is a list of `Prompt` (id, text, category, optional fixed seed, optional metadata). The
paper fixes one seed per prompt (its hpsv2_prompt2seed.txt); files may give a `seed` column, and such
prompts are generated with that seed only.

Named sets are registered in `PROMPT_SETS` as loader functions ``loader(**params) -> list[Prompt]``;
anything else given as `prompts` in a config is read as a file path.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mgt_common.errors import ConfigError
from mgt_common.registry import Registry


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    category: str = ""
    seed: int | None = None
    #: the source row's other fields, for an evaluator that needs them (e.g. GenEval's ``include`` /
    #: ``exclude`` objects); not part of a prompt's identity, so it takes no part in equality or hashing
    metadata: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)


PROMPT_SETS: Registry[Callable[..., list[Prompt]]] = Registry("prompt set", "named prompt sets", builtins=(
    "bench.models.synthetic.backend", "bench.prompt_sets"))


def register_prompt_set(name: str):
    """Decorator for a loader ``f(**params) -> list[Prompt]`` (its docstring's first line is its description)."""
    return PROMPT_SETS.register(name)


def load_prompts(source: str, **params) -> list[Prompt]:
    """A registered set by name, or a .txt / .csv / .tsv / .jsonl / .json file by path."""
    if source in PROMPT_SETS:
        prompts = PROMPT_SETS.get(source)(**params)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            known = ", ".join(PROMPT_SETS.names())
            raise ConfigError(f"prompts: {source!r} is neither a known prompt set ({known}) nor an existing file; "
                              "pass a set name or the path of a .txt/.csv/.jsonl file")
        prompts = read_prompt_file(path)
    if not prompts:
        raise ConfigError(f"prompts: {source!r} holds no prompts; give a file with at least one non-empty prompt")
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"prompts: {source!r} has duplicate prompt ids; ids must be unique")
    return prompts


def read_prompt_file(path: Path) -> list[Prompt]:
    """One prompt per line (.txt), a `prompt` column (.csv/.tsv), or objects with a `prompt` key (.jsonl/.json).

    Optional columns/keys: `id`, `category`, `seed`. Blank prompts are skipped; ids default to the
    row number (zero-padded, so that they sort). A .tsv is tab-separated values as IANA defines them:
    no quoting, so a field may start with a double quote (PartiPrompts does); a .csv follows RFC 4180.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"prompts: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"prompts: cannot read {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = read_table(text, suffix)
        if rows and "prompt" not in rows[0]:
            raise ConfigError(f"prompts: {path} has no 'prompt' column (columns: {', '.join(rows[0])}); "
                              "name the prompt column 'prompt'")
    elif suffix in (".jsonl", ".json"):
        rows = _read_json_rows(path, text)
    else:
        rows = [{"prompt": line} for line in text.splitlines()]
    prompts = []
    for index, row in enumerate(rows):
        prompt_text = str(row.get("prompt") or "").strip()
        if not prompt_text:
            continue
        prompts.append(Prompt(id=str(row.get("id") or f"{index:05d}"), text=prompt_text,
                              category=str(row.get("category") or ""), seed=_seed(row.get("seed"), path, index)))
    return prompts


def read_table(text: str, suffix: str) -> list[dict[str, str]]:
    """Rows of a .csv (RFC 4180 quoting) or a .tsv (IANA TSV: tabs, no quoting; csv.QUOTE_NONE)."""
    if suffix.lower() == ".tsv":
        return list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    # io.StringIO, not splitlines(): a quoted field may span lines, and splitlines() drops its newlines
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=","))


def _read_json_rows(path: Path, text: str) -> list[dict]:
    numbered: list[tuple[int, object]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"prompts: {path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        rows = data if isinstance(data, list) else data.get("prompts", []) if isinstance(data, dict) else [data]
        numbered = [(0, row) for row in rows]
    else:
        # JSON Lines: each line is parsed alone, so the decoder's line number is always 1; count the file's own
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"prompts: {path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    out = []
    for number, row in numbered:
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict) or "prompt" not in row:
            where = f" line {number}" if number else ""
            raise ConfigError(f"prompts: {path}{where}: every entry needs a 'prompt' key (got {str(row)[:60]!r})")
        out.append(row)
    return out


def _seed(value, path: Path, index: int) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"prompts: {path} row {index + 1}: seed {value!r} is not an integer") from None
