"""README.md's configuration table, generated from the code so that it cannot drift.

Each row is a key (or a flag with no key), what it means, its value in the shipped default run
(`bench/configs/default.toml`, what ``python run_bench.py`` runs) and its value when a config leaves
it out (`bench.config.DEFAULTS`). tests/test_config_reference.py checks that README.md holds exactly
this table; after changing a default or a key, rewrite it with::

    python -m bench.config_reference --write README.md
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from .cli import REPORT_FLAGS
from .config import CONFIG_DIR, DEFAULTS, read_toml

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"

#: key → (the first column, meaning, what None means). In README order; `[report]` rows follow.
KEYS: dict[str, tuple[str, str, str]] = {
    "name": ("`name` / `--name`", "the run's name: a plain name, never a path (the folder `results/<name>`)",
             "none (`results/default`)"),
    "description": ("`description` / `--description`", "one line about the run (kept in `manifest.json`)", ""),
    "out": ("`out` / `--out`", "run directory", "`results/<name>`"),
    "model": ("`[model]` `name` / `--model`", "backend: `synthetic-trained`, `synthetic-exact` (alias `synthetic`), "
              "`meissonic`, `amused`, plus its parameters (`path`, `revision`, `dtype`, `post_model_dtype`, "
              "`compile`, …; [docs/models.md](docs/models.md)); `--set model.KEY=VALUE` sets one", ""),
    "prompts": ("`prompts` / `--prompts`", "a prompt-set name (with parameters as a `[prompts]` table with `source`; "
                "`--set prompts.KEY=VALUE`) or a `.txt`/`.csv`/`.jsonl` file", ""),
    "limit": ("`limit` / `--limit`", "use the first N prompts", "all"),
    "seeds": ("`seeds` / `--seeds`", "seeds per prompt (a prompt file's `seed` column fixes one seed per prompt)", ""),
    "steps": ("`steps` / `--steps`", "sampling steps T; a list (`[8, 16, 32]`, `--steps 8,16,32`) sweeps them "
              "([docs/sweeps.md](docs/sweeps.md))", ""),
    "guidance": ("`guidance` / `--guidance`", "base CFG scale w (CFG schedules shape it); a list sweeps it", ""),
    "height": ("`height` / `--height`", "image height in pixels", "the model's"),
    "width": ("`width` / `--width`", "image width in pixels", "the model's"),
    "negative_prompt": ("`negative_prompt` / `--negative-prompt`", "negative prompt",
                        "the model's (Meissonic's reference one)"),
    "baseline": ("`baseline` / `--baseline`", "the variant every other is compared with (always generated)", ""),
    "samplers": ("`samplers` / `--samplers`", "variants to run (built-in names or `[variants.NAME]` tables)", ""),
    "variants": ("`[variants.NAME]`", "a variant: `base` plus component keys `guidance`, `logits_processors`, "
                 "`probability_correctors`, `token_sampler`, `confidence`, `reveal_schedule`, `remask`, `loop`, "
                 "`model_transforms` (model-side choices), and `mode` (`exact`, or `fast`: one fused pass over the "
                 "logits, same distribution, [docs/scaling.md](docs/scaling.md)); a list as a parameter value sweeps "
                 "it. Quote a name with a dot: `[variants.\"temp-0.8\"]`", ""),
    "metrics": ("`metrics` / `--metrics`", "per-image and set metrics, names or tables "
                "`{ name = \"hpsv2\", version = \"v2.0\", label = \"hps-v2.0\" }`; at least one per-image metric "
                "(the comparisons pair images)", ""),
    "batch_size": ("`batch_size` / `--batch-size`", "images per generation batch (never changes an image)", ""),
    "device": ("`device` / `--device`", "`cpu`, `cuda`, `cuda:N`, `mps`, `auto`", ""),
    "dtype": ("`dtype` / `--dtype`", "`float32`, `bfloat16`, `float16` (model weights)", ""),
    "bootstrap": ("`bootstrap` / `--bootstrap`", "bootstrap resamples for the Bradley–Terry intervals (100 to 100000)", ""),
    "plugins": ("`plugins` / `--plugin`", "plugin files to import, relative to the config file (`--plugin FILE.py` "
                "adds one; repeatable). A plugin is code that runs with your rights; each file's path and sha256 "
                "go into `manifest.json` ([docs/plugins.md](docs/plugins.md))", ""),
}
REPORT_MEANINGS = {
    "primary_metric": ("the metric that orders the headline and picks the image grid",
                       "the first per-image metric"),
    "confidence": ("interval level (all intervals)", ""),
    "correction": ("multiple-comparison correction: `holm`, `bh` (Benjamini–Hochberg) or `none`", ""),
    "alpha": ("level at which an adjusted p-value survives", ""),
    "test_unit": ("what the tests count: one number per `prompt`, or per prompt–seed `pair`", ""),
    "n_boot": ("bootstrap resamples of the report", "`bootstrap`'s value"),
    "bootstrap_seed": ("seed of every bootstrap", ""),
    "grid_rows": ("best and worst pairs shown in the image grid (each)", ""),
    "gallery_mib": ("MiB of thumbnails the paired gallery may embed in `report.html` (best and worst pairs "
                    "first when it is full)", ""),
}
FLAGS = [
    ("`--config`", "TOML file, or a shipped config name (`default`, `design-choices`, `meissonic-1024`, "
                   "`paper-meissonic-1024`, …; `--list` shows them)", "`default`", "—"),
    ("`--set TABLE.KEY=VALUE`", "set a key of `[model]`, `[prompts]`, `[report]` or `[variants.NAME]` "
                                "(VALUE read as TOML): `--set model.compile=true`", "—", "—"),
    ("`--fresh`", "delete the run directory (only if it is one) and start over", "—", "—"),
    ("`--check`", "build every variant and run it on a tiny random model (seconds), after the device check a "
                  "run makes; writes nothing ([docs/plugins.md](docs/plugins.md))", "—", "—"),
    ("`--report-only RUN_DIR`", "re-render a finished run's report, no model", "—", "—"),
    ("`--power WIN_RATE`", "print the prompts × seeds needed to find a pair-level win rate with 80 % power at the "
                           "config's α and primary family ([docs/report.md](docs/report.md), \"Minimum detectable "
                           "effect\")", "—", "—"),
    ("`--compare RUN_A RUN_B`", "report the same variants across two runs (each run's own win rates; refused "
                                "when they share nothing)", "—", "—"),
    ("`--shard i/n`, `--merge RUN_DIR`", "run one shard of a sharded run; merge, score and report it", "—", "—"),
    ("`--list`, `--version`", "list every registered component, variant, model, metric, prompt set and shipped "
                              "config; print the version", "—", "—"),
]


def shipped_default() -> dict[str, Any]:
    """The shipped default run's values: DEFAULTS with bench/configs/default.toml on top."""
    data, _ = read_toml(str(CONFIG_DIR / "default.toml"))
    return {**DEFAULTS, **data}


def toml(value: Any) -> str:
    """A value as TOML writes it inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def cell(key: str, value: Any, when_none: str) -> str:
    """A key's value for the table: code-formatted, names for lists of names, `when_none` for None."""
    if value is None or value == "":
        return when_none or "—"
    if key == "model":
        params = {k: v for k, v in value.items() if k != "name"} if isinstance(value, dict) else {}
        name = value["name"] if isinstance(value, dict) else value
        return f"`{name}`" + (f" (`{toml(params)}`)" if params else "")
    if key == "prompts" and isinstance(value, dict):
        params = {k: v for k, v in value.items() if k != "source"}
        return f"`{value['source']}`" + (f" (`{toml(params)}`)" if params else "")
    if key in ("samplers", "metrics") and isinstance(value, list):
        names = [f"`{v}`" if isinstance(v, str) else f"`{toml(v)}`" for v in value]
        return ", ".join(names) if names else "—"
    if key in ("variants", "report", "plugins") and not value:
        return "—"
    if isinstance(value, str):
        short = value if len(value) <= 48 else value[:45].rstrip() + "…"
        return f"`{short}`" if value else "—"
    return f"`{toml(value)}`"


def config_table() -> str:
    shipped = shipped_default()
    shipped_report = shipped.get("report") or {}
    lines = ["| key / flag | meaning | default run (`default.toml`) | when a config leaves it out |", "|---|---|---|---|"]
    lines.append("| " + " | ".join(FLAGS[0]) + " |")
    for key, (label, meaning, when_none) in KEYS.items():
        shown = shipped[key]
        if key == "variants" and shown:
            shown = None
            default_run = ", ".join(f"`{name}`" for name in shipped["variants"])
        else:
            default_run = cell(key, shown, when_none)
        lines.append(f"| {label} | {meaning} | {default_run} | {cell(key, DEFAULTS[key], when_none)} |")
    from .config import report_settings_fields

    fields = report_settings_fields()
    for key, (meaning, when_none) in REPORT_MEANINGS.items():
        flag = "--" + key.replace("_", "-")
        # a setting with a stated fallback (n_boot: the top-level bootstrap) shows it where it is unset
        default = None if when_none else fields[key]
        lines.append(f"| `[report]` `{key}` / `{flag}` | {meaning} | "
                     f"{cell(key, shipped_report.get(key, default), when_none)} | {cell(key, default, when_none)} |")
    lines += ["| " + " | ".join(row) + " |" for row in FLAGS[1:]]
    return "\n".join(lines)


def replace_block(text: str) -> str:
    """`text` (README.md) with the table between the config-table markers regenerated."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no {START} … {END} block")
    return pattern.sub(lambda _: f"{START}\n{config_table()}\n{END}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print README.md's configuration table, or rewrite it in place.")
    parser.add_argument("--write", metavar="README", help="rewrite the table in this file")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(replace_block(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(config_table())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


assert set(KEYS) == set(DEFAULTS) - {"report"} and set(REPORT_MEANINGS) == set(REPORT_FLAGS)
