"""Issue 15: every config key has an equal command-line flag, and the README's table names them all."""
from __future__ import annotations

import re

from bench.cli import build_parser, overrides_from
from bench.config import DEFAULTS, load_config
from helpers import REPO

#: Keys that hold TOML tables: they live in the config file (the README says so), not on the command line.
TABLE_KEYS = {"variants", "report"}

#: One command-line value per key and the config value it must become.
EXAMPLES = {
    "name": ("--name", "trial", "trial"),
    "description": ("--description", "a trial run", "a trial run"),
    "prompts": ("--prompts", "synthetic-world", "synthetic-world"),
    "limit": ("--limit", "3", 3),
    "seeds": ("--seeds", "4,5", [4, 5]),
    "steps": ("--steps", "5", 5),
    "guidance": ("--guidance", "1.5", 1.5),
    "height": ("--height", "512", 512),
    "width": ("--width", "256", 256),
    "negative_prompt": ("--negative-prompt", "blurry", "blurry"),
    "baseline": ("--baseline", "cfg-linear", "cfg-linear"),
    "samplers": ("--samplers", "vanilla,cfg-linear", ["cfg-linear", "vanilla"]),
    "metrics": ("--metrics", "world-loglik", ["world-loglik"]),
    "batch_size": ("--batch-size", "3", 3),
    "device": ("--device", "cpu", "cpu"),
    "dtype": ("--dtype", "bfloat16", "bfloat16"),
    "out": ("--out", "/tmp/somewhere", "/tmp/somewhere"),
    "bootstrap": ("--bootstrap", "300", 300),
}


def test_every_key_has_a_flag():
    dests = {action.dest for action in build_parser()._actions}
    missing = sorted(key for key in set(DEFAULTS) - TABLE_KEYS if key not in dests)
    assert not missing, f"config keys without a command-line flag: {missing}"
    assert set(EXAMPLES) | {"model"} == set(DEFAULTS) - TABLE_KEYS


def test_every_flag_overrides_its_key():
    for key, (flag, text, expected) in EXAMPLES.items():
        args = build_parser().parse_args([flag, text])
        values = load_config(None, overrides_from(args)).values
        got = sorted(values[key]) if key == "samplers" else values[key]
        assert got == expected, f"{flag} {text}: config {key} = {got!r}, expected {expected!r}"


def test_readme_table_lists_every_key():
    readme = (REPO / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| "))
    for key in DEFAULTS:
        assert re.search(rf"`\[?{key}(\.NAME)?\]?`", table), f"README's configuration table does not name `{key}`"
        if key not in TABLE_KEYS and key != "model":
            flag = "--" + key.replace("_", "-")
            assert f"`{flag}`" in table, f"README's configuration table does not show {flag}"
