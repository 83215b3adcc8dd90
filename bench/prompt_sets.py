"""The field's named prompt sets, registered with `bench.prompts.register_prompt_set`.

Without ``path`` each set's upstream file is fetched on first use, verified by sha256 and cached
(`bench.prompt_files`, docs/scorers.md "Prompt sets"); ``path`` (a file, or a folder holding it) overrides.
The loaders read the files as their authors wrote them: prompt texts are byte-exact (leading and trailing
spaces, inner newlines kept, as the reference pipelines feed them; ``strip = true`` trims them), category
labels are trimmed (they only group results).

- ``hpsv2-benchmark``: HPSv2's benchmark (Wu et al., arXiv 2306.09341), 4 styles x 800 prompts,
  ``benchmark/<style>.json`` of the hub dataset zhwang/HPDv2 (a JSON list of strings). The style is the
  category; ids are ``<style>-<idx:05d>``, so that an export can write ``<style>/<idx:05d>.jpg``.
- ``drawbench``: DrawBench (Saharia et al., Imagen, arXiv 2205.11487), 200 prompts in 11 categories,
  the Imagen sheet's CSV (``Prompts``, ``Category``). HPDv2's ``drawbench.json`` holds the same 200
  prompts without categories; a folder given as ``path`` is read from the CSV when it has both.
- ``partiprompts``: PartiPrompts (Yu et al., Parti, arXiv 2206.10789), ``PartiPrompts.tsv`` (``Prompt``,
  ``Category``, ``Challenge``, ``Note``), tab-separated without quoting: a prompt may start with ``"``.
- ``geneval``: GenEval (Ghosh et al., arXiv 2310.11513), ``evaluation_metadata.jsonl``: one object per
  line with ``prompt``, ``tag`` (the category) and the ``include`` / ``exclude`` objects its evaluator
  checks; the whole object stays attached as `Prompt.metadata`. Ids ``<idx:05d>`` are GenEval's folders.
- ``challengebench``: the design-choices paper's (Shao et al., arXiv 2411.10781) 220 hard prompts listed
  twice, one per line, read as the paper's ``load_prompt`` reads them (each line stripped, empty lines
  dropped); its seeds ``HPD_prompt2seed.json`` give line k the seed k mod len(seeds), so the two copies of
  a prompt get different seeds.
- ``prompt2seed``: the paper's ``hpsv2_prompt2seed.txt``, lines ``idx, prompt, seed`` split on ", " as the
  paper's code does (the prompt may itself hold ", ").
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Sequence

from mgt_common.errors import ConfigError

from .prompt_files import HPSV2_STYLES, fetch  # noqa: F401  (HPSV2_STYLES: bench.export names the styles)
from .prompts import Prompt, read_table, register_prompt_set


# -- helpers -------------------------------------------------------------------------------------------
def _read_text(path: Path, what: str) -> str:
    """The file's text exactly: bytes decoded as UTF-8 (a leading BOM dropped), no newline translation."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def _source(path: str | None, key: str, names: Sequence[str], what: str) -> Path:
    """``path`` as a file, or the first of ``names`` inside the folder ``path``; without ``path``, the
    upstream file ``key`` (fetched and verified)."""
    if path is None:
        return fetch(key, what)
    local = Path(path).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        for name in names:
            if (local / name).is_file():
                return local / name
        raise ConfigError(f"{what}: folder {local} holds none of {', '.join(repr(n) for n in names)}; "
                          "give the file itself as `path`, or leave `path` out to fetch the upstream file")
    raise ConfigError(f"{what}: path {path!r} is neither an existing file nor a folder; "
                      "leave `path` out to fetch the upstream file")


def _check_strip(strip: Any, what: str) -> bool:
    if not isinstance(strip, bool):
        raise ConfigError(f"{what}: strip must be true or false, got {strip!r}")
    return strip


def _text(raw: str, strip: bool) -> str:
    return raw.strip() if strip else raw


def _json_string_list(path: Path, what: str) -> list[str]:
    try:
        data = json.loads(_read_text(path, what))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: {path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ConfigError(f"{what}: {path} must hold a JSON list of prompt strings")
    return data


def _column(header: Sequence[str], candidates: Sequence[str], path: Path, what: str, required: bool = True) -> str | None:
    for name in candidates:
        if name in header:
            return name
    if required:
        raise ConfigError(f"{what}: {path} has no {' / '.join(candidates)} column (columns: {', '.join(header) or 'none'})")
    return None


def _table(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a .csv / .tsv; a row with more or fewer fields than the header is an error."""
    rows = read_table(_read_text(path, what), path.suffix)
    if not rows:
        raise ConfigError(f"{what}: {path} holds no rows")
    header = [h for h in rows[0] if h is not None]
    for number, row in enumerate(rows):
        if None in row or None in row.values():  # csv.DictReader's marks for extra / missing fields
            fields = len(header) + len(row.get(None) or ()) - sum(v is None for v in row.values())
            raise ConfigError(f"{what}: {path} data row {number + 1}: {fields} field(s), the header has {len(header)}")
    return header, rows


def _nonempty(prompts: list[Prompt], source: Path, what: str) -> list[Prompt]:
    if not prompts:
        raise ConfigError(f"{what}: {source} holds no prompts")
    return prompts


def _seed(value, where: str) -> int | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{where}: seed {text!r} is not an integer") from None


def _lines(text: str) -> list[str]:
    """Lines as Python's text-mode ``for line in file`` gives them (universal newlines), without the ends;
    unlike ``str.splitlines`` it does not split at U+2028, U+0085 and the like."""
    return [line.rstrip("\r\n") for line in io.StringIO(text, newline=None)]


# -- the sets ------------------------------------------------------------------------------------------
@register_prompt_set("hpsv2-benchmark")
def hpsv2_benchmark(path: str | None = None, styles: Sequence[str] | str = HPSV2_STYLES, limit: int | None = None,
                    strip: bool = False) -> list[Prompt]:
    """HPSv2 benchmark: anime, concept-art, paintings, photo x 800 prompts (zhwang/HPDv2 benchmark/<style>.json).

    ``path``: a folder with ``<style>.json`` (or ``benchmark/<style>.json``); default: fetched from the hub
    dataset at a pinned revision. ``limit``: the first n prompts per style.
    """
    strip = _check_strip(strip, "hpsv2-benchmark")
    styles = [styles] if isinstance(styles, str) else list(styles)
    unknown = [s for s in styles if s not in HPSV2_STYLES]
    if unknown or not styles:
        raise ConfigError(f"hpsv2-benchmark: unknown style(s) {unknown}; styles are {', '.join(HPSV2_STYLES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"hpsv2-benchmark: limit must be a positive integer (prompts per style), got {limit!r}")
    if path is not None and not Path(path).expanduser().is_dir():
        raise ConfigError(f"hpsv2-benchmark: path {path!r} must be a folder holding <style>.json (or "
                          "benchmark/<style>.json); leave it out to fetch the upstream files")
    prompts = []
    for style in styles:
        file = _source(path, f"hpsv2-benchmark/{style}.json", (f"{style}.json", f"benchmark/{style}.json"),
                       "hpsv2-benchmark")
        texts = _json_string_list(file, "hpsv2-benchmark")
        if not texts:
            raise ConfigError(f"hpsv2-benchmark: {file} holds no prompts")
        for index, text in enumerate(texts[:limit] if limit else texts):
            if text.strip():  # a blank prompt is skipped; the others keep their index (image names are positional)
                prompts.append(Prompt(id=f"{style}-{index:05d}", text=_text(text, strip), category=style))
    return prompts


@register_prompt_set("drawbench")
def drawbench(path: str | None = None, strip: bool = False) -> list[Prompt]:
    """DrawBench: 200 prompts in 11 categories (the Imagen sheet's CSV: Prompts, Category).

    ``path``: the CSV (or a .tsv), HPDv2's JSON list (no categories), or a folder holding them (the CSV is
    preferred); default: the CSV, fetched at a pinned commit.
    """
    strip = _check_strip(strip, "drawbench")
    file = _source(path, "drawbench/DrawBench.csv", ("DrawBench.csv", "drawbench.json", "benchmark/drawbench.json"),
                   "drawbench")
    if file.suffix.lower() == ".json":
        prompts = [Prompt(id=f"{i:05d}", text=_text(t, strip))
                   for i, t in enumerate(_json_string_list(file, "drawbench")) if t.strip()]
        return _nonempty(prompts, file, "drawbench")
    header, rows = _table(file, "drawbench")
    text_col = _column(header, ("Prompts", "Prompt", "prompt", "text"), file, "drawbench")
    cat_col = _column(header, ("Category", "category"), file, "drawbench", required=False)
    prompts = [Prompt(id=f"{i:05d}", text=_text(row[text_col], strip), category=row[cat_col].strip() if cat_col else "")
               for i, row in enumerate(rows) if row[text_col].strip()]
    return _nonempty(prompts, file, "drawbench")


@register_prompt_set("partiprompts")
def partiprompts(path: str | None = None, category_column: str = "Category", strip: bool = False) -> list[Prompt]:
    """PartiPrompts: 1632 prompts, 12 categories / 11 challenges (PartiPrompts.tsv: Prompt, Category, Challenge, Note).

    ``path``: the TSV or a folder holding it; default: fetched at a pinned commit. ``category_column``:
    "Category" (12 topics) or "Challenge" (11 kinds). The row's other fields are the prompt's metadata.
    """
    strip = _check_strip(strip, "partiprompts")
    file = _source(path, "partiprompts/PartiPrompts.tsv", ("PartiPrompts.tsv",), "partiprompts")
    header, rows = _table(file, "partiprompts")
    text_col = _column(header, ("Prompt",), file, "partiprompts")
    cat_col = _column(header, (category_column,), file, "partiprompts")
    prompts = [Prompt(id=f"{i:05d}", text=_text(row[text_col], strip), category=row[cat_col].strip(),
                      metadata={k: v for k, v in row.items() if k != text_col})
               for i, row in enumerate(rows) if row[text_col].strip()]
    return _nonempty(prompts, file, "partiprompts")


@register_prompt_set("geneval")
def geneval(path: str | None = None, strip: bool = False) -> list[Prompt]:
    """GenEval: 553 prompts in 6 tags (evaluation_metadata.jsonl), each with its include/exclude objects.

    ``path``: the JSONL file or a folder holding it (or its ``prompts/``); default: fetched at a pinned
    commit. Ids are GenEval's folder indices ``<idx:05d>``; `Prompt.metadata` is the line's whole object,
    as GenEval's evaluator reads it from each folder's ``metadata.jsonl``.
    """
    strip = _check_strip(strip, "geneval")
    file = _source(path, "geneval/evaluation_metadata.jsonl",
                   ("evaluation_metadata.jsonl", "prompts/evaluation_metadata.jsonl"), "geneval")
    prompts = []
    for number, line in enumerate(_read_text(file, "geneval").split("\n")):
        if not line.strip():
            continue
        where = f"geneval: {file} line {number + 1}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ConfigError(f"{where}: every line needs a 'prompt' string (got {line[:60]!r})")
        prompts.append(Prompt(id=f"{len(prompts):05d}", text=_text(row["prompt"], strip), category=str(row.get("tag") or ""),
                              seed=_seed(row.get("seed"), where), metadata=row))
    return _nonempty(prompts, file, "geneval")


def _seed_list(seeds: Any, what: str) -> list[int] | None:
    """``"paper"``: the paper's HPD_prompt2seed.json (fetched); ``"config"``: None (the run's seeds); a file
    (JSON list, or an object index -> seed as the paper's, read in its order as the paper's code does);
    or a list of integers."""
    if isinstance(seeds, (list, tuple)):
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"{what}: seeds must be a non-empty list of integers, got {seeds!r}")
        return list(seeds)
    if seeds == "config":
        return None
    if not isinstance(seeds, str):
        raise ConfigError(f"{what}: seeds must be \"paper\", \"config\", a file path or a list of integers, got {seeds!r}")
    file = fetch("challengebench/HPD_prompt2seed.json", what) if seeds == "paper" else Path(seeds).expanduser()
    if not file.is_file():
        raise ConfigError(f"{what}: seeds file {file} does not exist")
    try:
        data = json.loads(_read_text(file, what))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: {file} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    values = list(data.values()) if isinstance(data, dict) else data if isinstance(data, list) else None
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise ConfigError(f"{what}: {file} must be a non-empty JSON list of integer seeds or an object index -> seed")
    return values


@register_prompt_set("challengebench")
def challengebench(path: str | None = None, seeds: str | Sequence[int] = "paper") -> list[Prompt]:
    """ChallengeBench (the design-choices paper): 220 hard prompts listed twice (440 lines), with the paper's seeds.

    ``path``: the text file or a folder holding it; default: fetched at a pinned commit. ``seeds``:
    "paper" (HPD_prompt2seed.json, fetched the same way; line k gets seeds[k mod len]), "config" (the
    run's seeds; the second copy of each prompt then repeats the first and is dropped), a JSON file, or
    a list of integers.
    """
    file = _source(path, "challengebench/challengebench.txt", ("challengebench.txt", "challengebench/challengebench.txt"),
                   "challengebench")
    # the paper's load_prompt: each line stripped (356 of the 440 end in spaces), empty lines dropped
    lines = [line.strip() for line in _lines(_read_text(file, "challengebench"))]
    lines = [line for line in lines if line]
    seed_list = _seed_list(seeds, "challengebench")
    prompts = [Prompt(id=f"{i:05d}", text=text, seed=seed_list[i % len(seed_list)] if seed_list else None)
               for i, text in enumerate(lines)]
    return _nonempty(prompts, file, "challengebench")


@register_prompt_set("prompt2seed")
def prompt2seed(path: str | None = None) -> list[Prompt]:
    """The paper's 150 HPSv2-style prompts with seeds (hpsv2_prompt2seed.txt: lines ``idx, prompt, seed``).

    ``path``: the text file or a folder holding it; default: fetched at a pinned commit. Lines are split
    at ", " as the paper's code splits them. (The paper's script takes the seeds from HPD_prompt2seed.json
    instead; its first 150 values equal this file's third column.)
    """
    file = _source(path, "prompt2seed/hpsv2_prompt2seed.txt", ("hpsv2_prompt2seed.txt", "quantization/hpsv2_prompt2seed.txt"),
                   "prompt2seed")
    prompts = []
    for number, line in enumerate(_lines(_read_text(file, "prompt2seed"))):
        if not line.strip():
            continue
        where = f"prompt2seed: {file} line {number + 1}"
        parts = line.strip().split(", ")
        if len(parts) < 3:
            raise ConfigError(f"{where}: expected 'idx, prompt, seed' (got {line[:60]!r})")
        text = ", ".join(parts[1:-1])
        if not text.strip():
            raise ConfigError(f"{where}: empty prompt")
        prompts.append(Prompt(id=parts[0] or f"{number:05d}", text=text, seed=_seed(parts[-1], where)))
    return _nonempty(prompts, file, "prompt2seed")
