"""README.md's configuration table is the one the code generates: its "default run" column is what
`python run_bench.py` runs (bench/configs/default.toml), its last column the built-in defaults."""
from __future__ import annotations

from bench.config import DEFAULTS, load_config
from bench.config_reference import END, START, cell, config_table, shipped_default
from helpers import REPO


def test_readme_holds_the_generated_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(START) + len(START):readme.index(END)].strip()
    assert block == config_table(), ("README.md's configuration table is stale: "
                                     "run `python -m bench.config_reference --write README.md`")


def test_default_run_column_is_what_run_bench_runs():
    """What the table calls the default run is load_config's own default: the shipped default.toml."""
    loaded = load_config(None).values
    shipped = shipped_default()
    for key in DEFAULTS:
        if key in ("samplers", "plugins"):  # load_config puts the baseline first / resolves paths
            continue
        expected = loaded[key]
        if key == "model" and isinstance(shipped[key], str):
            expected = expected["name"]
        assert shipped[key] == expected, key
    assert set(loaded["samplers"]) == set(shipped["samplers"]) | {loaded["baseline"]}
    table = config_table()
    for key in ("seeds", "guidance", "batch_size", "steps", "limit"):
        row = next(line for line in table.splitlines() if line.startswith(f"| `{key}` /"))
        assert row.split(" | ")[2] == cell(key, loaded[key], ""), row
