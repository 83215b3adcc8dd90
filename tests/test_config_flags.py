"""Every config key has an equal command-line flag ([report]'s keys too; other tables' keys through
--set), and the README's table names them all."""
from __future__ import annotations

import re

import dataclasses

import pytest

from bench.cli import REPORT_FLAGS, build_parser, main, overrides_from, parse_assignment
from bench.config import DEFAULTS, REPORT_RULES, load_config
from bench.report.rundir import ReportSettings
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
    "plugins": ("--plugin", "PLUGIN", ["PLUGIN"]),  # a file made by the test (a plugin registers names once)
}

#: [report] keys: flag, text, value.
REPORT_EXAMPLES = {
    "primary_metric": ("--primary-metric", "world-attributes", "world-attributes"),
    "confidence": ("--confidence", "0.9", 0.9),
    "correction": ("--correction", "bh", "bh"),
    "alpha": ("--alpha", "0.01", 0.01),
    "test_unit": ("--test-unit", "pair", "pair"),
    "n_boot": ("--n-boot", "200", 200),
    "bootstrap_seed": ("--bootstrap-seed", "4", 4),
    "grid_rows": ("--grid-rows", "2", 2),
    "gallery_mib": ("--gallery-mib", "2.5", 2.5),
}


def test_every_key_has_a_flag():
    dests = {action.dest for action in build_parser()._actions}
    missing = sorted(key for key in set(DEFAULTS) - TABLE_KEYS if key not in dests)
    assert not missing, f"config keys without a command-line flag: {missing}"
    assert set(EXAMPLES) | {"model"} == set(DEFAULTS) - TABLE_KEYS


def test_every_flag_overrides_its_key(tmp_path):
    plugin = tmp_path / "empty_plugin.py"
    plugin.write_text("# registers nothing\n")
    for key, (flag, text, expected) in EXAMPLES.items():
        if key == "plugins":
            text, expected = str(plugin), [str(plugin.resolve())]
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
            flag = "--plugin" if key == "plugins" else "--" + key.replace("_", "-")
            assert f"`{flag}`" in table, f"README's configuration table does not show {flag}"


def test_every_report_setting_has_a_flag_and_a_rule():
    fields = {f.name for f in dataclasses.fields(ReportSettings)}
    assert set(REPORT_FLAGS) == set(REPORT_RULES) == fields == set(REPORT_EXAMPLES)
    for key, (flag, text, expected) in REPORT_EXAMPLES.items():
        args = build_parser().parse_args([flag, text])
        values = load_config(None, overrides_from(args)).values
        assert values["report"][key] == expected, flag


def test_set_assigns_any_table_key():
    args = build_parser().parse_args(["--set", "prompts.n=7", "--set", "report.alpha=0.02",
                                      "--set", "model.name=synthetic-exact"])
    values = load_config(None, overrides_from(args), [parse_assignment(t) for t in args.assignments]).values
    assert values["prompts"]["n"] == 7 and values["report"]["alpha"] == 0.02
    assert values["model"]["name"] == "synthetic-exact"
    assert parse_assignment("model.path=/data/Meissonic") == ("model.path", "/data/Meissonic")
    assert parse_assignment("variants.x.guidance={ name = \"linear\" }") == ("variants.x.guidance", {"name": "linear"})


@pytest.mark.parametrize("args,expected", [
    (["--set", "steps=4"], "give TABLE.KEY=VALUE with TABLE one of"),
    (["--set", "nothing"], "give TABLE.KEY=VALUE"),
])
def test_set_refuses_what_is_not_a_table_key(capsys, args, expected):
    assert main([*args, "--check"]) == 2
    assert expected in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("mgt-bench ")
