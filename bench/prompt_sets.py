"""The field's named prompt sets, registered with `bench.prompts.register_prompt_set`.

Sources (facts in shared/reference/ecosystem-notes.md and meissonic-and-design-choices.md §3):

- ``hpsv2-benchmark``: HPSv2's benchmark (Wu et al., arXiv 2306.09341), 4 styles x 800 prompts, files
  ``benchmark/<style>.json`` (a JSON list of strings) of the hub dataset ``zhwang/HPDv2``. The style is
  the category; ids are ``<style>-<idx:05d>`` so that an export can write ``<style>/<idx:05d>.jpg``.
- ``drawbench``: DrawBench (Saharia et al., Imagen, arXiv 2205.11487), 200 prompts in 11 categories;
  the sheet's CSV has columns ``Prompts`` and ``Category``. Without a file, HPDv2's
  ``benchmark/drawbench.json`` (prompts only, no categories).
- ``partiprompts``: PartiPrompts (Yu et al., Parti, arXiv 2206.10789), ``PartiPrompts.tsv`` with columns
  ``Prompt``, ``Category``, ``Challenge``, ``Note`` (category from ``Category`` or ``Challenge``).
- ``geneval``: GenEval (Ghosh et al., arXiv 2310.11513), ``evaluation_metadata.jsonl``: one object per
  line with ``prompt`` and ``tag`` (the category); ids ``<idx:05d>`` as GenEval's own layout.
- ``challengebench``: the design-choices paper's 220 hard prompts, listed twice (440 lines), one per line.
  With ``seeds`` (the paper's ``HPD_prompt2seed.json``: index -> seed) line k gets seed k mod len(seeds),
  as the paper's evaluation code does, so the two copies of a prompt get different seeds.
- ``prompt2seed``: the paper's ``hpsv2_prompt2seed.txt`` format, lines ``idx, prompt, seed`` (the prompt
  may itself hold commas).

Sets that live on the hub are read from a local path, or from the Hugging Face cache (downloaded only
when allowed); otherwise the loader fails with a `ConfigError` that names the file and how to get it.

None of the files ships with the package (issue 15): no package on PyPI carries them, so a user fetches
each once with the command in `GET` (also in docs/scorers.md) and points ``path`` at it.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable, Sequence

from mgt_common.errors import ConfigError, UserError

from .prompts import Prompt, register_prompt_set

HPDV2_REPO = "zhwang/HPDv2"
HPSV2_STYLES = ("anime", "concept-art", "paintings", "photo")

#: name → (where the file lives, the commands that fetch it, the config lines that use it).
GET = {
    "partiprompts": ("PartiPrompts.tsv (1632 prompts) in github.com/google-research/parti",
                     "git clone --depth 1 https://github.com/google-research/parti",
                     'prompts = { source = "partiprompts", path = "parti/PartiPrompts.tsv" }'),
    "geneval": ("prompts/evaluation_metadata.jsonl (553 prompts) in github.com/djghosh13/geneval",
                "git clone --depth 1 https://github.com/djghosh13/geneval",
                'prompts = { source = "geneval", path = "geneval/prompts/evaluation_metadata.jsonl" }'),
    "challengebench": ("challengebench/challengebench.txt (220 prompts listed twice, 440 lines) and the seeds "
                       "quantization/HPD_prompt2seed.json in github.com/xie-lab-ml/Bags_of_Tricks_Meissonic",
                       "git clone --depth 1 https://github.com/xie-lab-ml/Bags_of_Tricks_Meissonic",
                       'prompts = { source = "challengebench", path = "Bags_of_Tricks_Meissonic/challengebench/'
                       'challengebench.txt", seeds = "Bags_of_Tricks_Meissonic/quantization/HPD_prompt2seed.json" }'),
    "prompt2seed": ("quantization/hpsv2_prompt2seed.txt (150 prompts with seeds) in "
                    "github.com/xie-lab-ml/Bags_of_Tricks_Meissonic",
                    "git clone --depth 1 https://github.com/xie-lab-ml/Bags_of_Tricks_Meissonic",
                    'prompts = { source = "prompt2seed", path = "Bags_of_Tricks_Meissonic/quantization/'
                    'hpsv2_prompt2seed.txt" }'),
}


def _missing(name: str) -> ConfigError:
    """The error for a set whose file was not given: where it lives, how to fetch it, how to use it."""
    where, command, config = GET[name]
    return ConfigError(f"{name}: no prompt file given, and none ships with mgt-bench. The set is {where}. "
                       f"On a machine with network access run `{command}`, then set in the config: {config}")


# -- helpers -------------------------------------------------------------------------------------------
def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def _hub_dataset_file(repo_id: str, filename: str, what: str) -> Path:
    """A file of a hub dataset from the cache (or downloaded when allowed), else a clear ConfigError."""
    from metrics.weights import resolve_hub_file

    try:
        return resolve_hub_file(repo_id, filename, repo_type="dataset", what=what)
    except UserError as exc:
        raise ConfigError(str(exc)) from None


def _locate(path: str | None, default_repo: str | None, filename: str, what: str) -> Path:
    """``path`` as a file, as a folder holding ``filename`` (or ``benchmark/filename``), as a hub dataset id;
    without ``path``, ``filename`` from ``default_repo``."""
    if path is None:
        if default_repo is None:
            raise ConfigError(f"{what}: give `path`, the local file {filename!r}")
        return _hub_dataset_file(default_repo, filename, what)
    local = Path(path).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        name = Path(filename).name
        for candidate in (local / filename, local / name, local / "benchmark" / name):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{what}: folder {local} has no {name!r} (nor {filename!r})")
    if str(path).count("/") == 1 and not str(path).startswith((".", "/", "~")):
        return _hub_dataset_file(str(path), filename, what)
    raise ConfigError(f"{what}: {path!r} is neither an existing file or folder nor a hub dataset id 'owner/name'")


def _json_string_list(path: Path, what: str) -> list[str]:
    try:
        data = json.loads(_read_text(path, what))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: {path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ConfigError(f"{what}: {path} must hold a JSON list of prompt strings")
    return data


def _table_rows(path: Path, what: str) -> list[dict[str, str]]:
    text = _read_text(path, what)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # io.StringIO keeps quoted fields that span lines intact (splitlines() would drop their newlines)
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def _column(rows: Sequence[dict], candidates: Iterable[str], path: Path, what: str, required: bool = True) -> str | None:
    header = list(rows[0]) if rows else []
    lowered = {str(h).strip().lower(): h for h in header if h is not None}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    if required:
        raise ConfigError(f"{what}: {path} has no {' / '.join(candidates)} column (columns: {', '.join(map(str, header)) or 'none'})")
    return None


def _nonempty(prompts: list[Prompt], source: str, what: str) -> list[Prompt]:
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


# -- the sets ------------------------------------------------------------------------------------------
@register_prompt_set("hpsv2-benchmark")
def hpsv2_benchmark(path: str | None = None, styles: Sequence[str] | str = HPSV2_STYLES, limit: int | None = None) -> list[Prompt]:
    """HPSv2 benchmark: anime, concept-art, paintings, photo x 800 prompts (zhwang/HPDv2 benchmark/<style>.json).

    ``path``: a folder with ``<style>.json`` (or ``benchmark/<style>.json``), or a hub dataset id (default
    zhwang/HPDv2, read from the Hugging Face cache when offline). ``limit``: the first n prompts per style.
    """
    styles = [styles] if isinstance(styles, str) else list(styles)
    unknown = [s for s in styles if s not in HPSV2_STYLES]
    if unknown or not styles:
        raise ConfigError(f"hpsv2-benchmark: unknown style(s) {unknown}; styles are {', '.join(HPSV2_STYLES)}")
    prompts = []
    for style in styles:
        file = _locate(path if path is not None else HPDV2_REPO, None, f"benchmark/{style}.json", "hpsv2-benchmark")
        texts = _json_string_list(file, "hpsv2-benchmark")
        if not texts:
            raise ConfigError(f"hpsv2-benchmark: {file} holds no prompts")
        for index, text in enumerate(texts[:limit] if limit else texts):
            # empty prompts keep their index: the benchmark's image names are positional
            prompts.append(Prompt(id=f"{style}-{index:05d}", text=text.strip(), category=style))
    return prompts


@register_prompt_set("drawbench")
def drawbench(path: str | None = None) -> list[Prompt]:
    """DrawBench: 200 prompts, 11 categories (a CSV/TSV with Prompts and Category columns, or a JSON list).

    ``path``: the CSV (the Imagen sheet's export) or a JSON list; default HPDv2's benchmark/drawbench.json
    (from the Hugging Face cache; prompts only, no categories).
    """
    file = _locate(path, HPDV2_REPO, "benchmark/drawbench.json", "drawbench")
    if file.suffix.lower() == ".json":
        prompts = [Prompt(id=f"{i:05d}", text=t.strip()) for i, t in enumerate(_json_string_list(file, "drawbench"))]
        return _nonempty([p for p in prompts if p.text], str(file), "drawbench")
    rows = _table_rows(file, "drawbench")
    if not rows:
        raise ConfigError(f"drawbench: {file} holds no rows")
    text_col = _column(rows, ("Prompts", "Prompt", "prompt", "text"), file, "drawbench")
    cat_col = _column(rows, ("Category", "category"), file, "drawbench", required=False)
    prompts = [Prompt(id=f"{i:05d}", text=(row.get(text_col) or "").strip(), category=(row.get(cat_col) or "").strip() if cat_col else "")
               for i, row in enumerate(rows)]
    return _nonempty([p for p in prompts if p.text], str(file), "drawbench")


@register_prompt_set("partiprompts")
def partiprompts(path: str | None = None, category_column: str = "Category") -> list[Prompt]:
    """PartiPrompts: about 1.6k prompts (PartiPrompts.tsv: Prompt, Category, Challenge, Note).

    ``path``: the TSV file (github.com/google-research/parti), a folder holding it, or a hub dataset id
    that holds ``PartiPrompts.tsv``. ``category_column``: "Category" (12 topics) or "Challenge" (11 kinds).
    """
    if path is None:
        raise _missing("partiprompts")
    file = _locate(path, None, "PartiPrompts.tsv", "partiprompts")
    rows = _table_rows(file, "partiprompts")
    if not rows:
        raise ConfigError(f"partiprompts: {file} holds no rows")
    text_col = _column(rows, ("Prompt", "prompt"), file, "partiprompts")
    cat_col = _column(rows, (category_column,), file, "partiprompts")
    prompts = [Prompt(id=f"{i:05d}", text=(row.get(text_col) or "").strip(), category=(row.get(cat_col) or "").strip())
               for i, row in enumerate(rows)]
    return _nonempty([p for p in prompts if p.text], str(file), "partiprompts")


@register_prompt_set("geneval")
def geneval(path: str | None = None) -> list[Prompt]:
    """GenEval: 553 prompts in 6 tags (evaluation_metadata.jsonl: one object per line with prompt and tag).

    ``path``: the JSONL file (github.com/djghosh13/geneval, prompts/evaluation_metadata.jsonl) or its folder.
    Ids are the line numbers ``<idx:05d>``, as GenEval's own output layout.
    """
    if path is None:
        raise _missing("geneval")
    file = _locate(path, None, "evaluation_metadata.jsonl", "geneval")
    prompts = []
    for number, line in enumerate(_read_text(file, "geneval").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"geneval: {file} line {number + 1}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not str(row.get("prompt") or "").strip():
            raise ConfigError(f"geneval: {file} line {number + 1}: every line needs a 'prompt' (got {line[:60]!r})")
        prompts.append(Prompt(id=f"{len(prompts):05d}", text=str(row["prompt"]).strip(), category=str(row.get("tag") or ""),
                              seed=_seed(row.get("seed"), f"geneval: {file} line {number + 1}")))
    return _nonempty(prompts, str(file), "geneval")


def _seed_list(seeds: str | Sequence[int], what: str) -> list[int]:
    if isinstance(seeds, (list, tuple)):
        return [int(s) for s in seeds]
    file = Path(seeds).expanduser()
    if not file.is_file():
        raise ConfigError(f"{what}: seeds file {file} does not exist")
    try:
        data = json.loads(_read_text(file, what))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: {file} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):  # HPD_prompt2seed.json: {"0": seed, "1": seed, ...}
        try:
            return [int(data[k]) for k in sorted(data, key=int)]
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: {file}: keys must be indices and values integer seeds") from None
    if isinstance(data, list):
        return [int(s) for s in data]
    raise ConfigError(f"{what}: {file} must be a JSON list of seeds or an object index -> seed")


@register_prompt_set("challengebench")
def challengebench(path: str | None = None, seeds: str | Sequence[int] | None = None) -> list[Prompt]:
    """ChallengeBench (the design-choices paper): 220 hard prompts listed twice, one per line.

    ``path``: the text file (required). ``seeds``: optional JSON (list, or object index -> seed, as the
    paper's HPD_prompt2seed.json); line k gets seeds[k mod len(seeds)].
    """
    if path is None:
        raise _missing("challengebench")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"challengebench: {file} does not exist")
    lines = [line.strip() for line in _read_text(file, "challengebench").splitlines()]
    lines = [line for line in lines if line]  # the paper's loader drops empty lines before seeding
    seed_list = _seed_list(seeds, "challengebench") if seeds is not None else None
    if seed_list is not None and not seed_list:
        raise ConfigError("challengebench: the seeds list is empty")
    prompts = [Prompt(id=f"{i:05d}", text=text, seed=seed_list[i % len(seed_list)] if seed_list else None)
               for i, text in enumerate(lines)]
    return _nonempty(prompts, str(file), "challengebench")


@register_prompt_set("prompt2seed")
def prompt2seed(path: str | None = None) -> list[Prompt]:
    """Prompt-seed pairs in the paper's hpsv2_prompt2seed.txt format: lines ``idx, prompt, seed``."""
    if path is None:
        raise _missing("prompt2seed")
    file = Path(path).expanduser()
    prompts = []
    for number, line in enumerate(_read_text(file, "prompt2seed").splitlines()):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < 3:
            raise ConfigError(f"prompt2seed: {file} line {number + 1}: expected 'idx, prompt, seed' (got {line[:60]!r})")
        where = f"prompt2seed: {file} line {number + 1}"
        text = ",".join(parts[1:-1]).strip()
        if not text:
            raise ConfigError(f"{where}: empty prompt")
        prompts.append(Prompt(id=parts[0].strip() or f"{number:05d}", text=text, seed=_seed(parts[-1], where)))
    return _nonempty(prompts, str(file), "prompt2seed")
