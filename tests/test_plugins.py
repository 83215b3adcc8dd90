"""Plugins: the README's example plugin runs as shown, entry points load, unknown names fail helpfully."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from bench.cli import main
from helpers import REPO, write_tiny_config
from mgt_common import registry
from mgt_common.errors import ConfigError


def readme_plugin() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- plugin-example:start -->\s*```python\n(.*?)```\s*<!-- plugin-example:end -->", text, re.S)
    assert match, "README.md must show the plugin example between the plugin-example markers"
    return match.group(1)


def test_readme_plugin_is_the_shipped_example():
    assert readme_plugin().strip() == (REPO / "examples" / "center_first_plugin.py").read_text().split('"""', 2)[2].strip()


def test_readme_plugin_runs_end_to_end(tmp_path, capsys):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(readme_plugin())
    config = write_tiny_config(tmp_path / "c.toml", limit=2, steps=4)
    out = tmp_path / "run"
    assert main(["--plugin", str(plugin), "--config", str(config), "--out", str(out),
                 "--samplers", "vanilla,center-first"]) == 0
    samples = pd.read_csv(out / "samples.csv")
    assert set(samples["variant"]) == {"vanilla", "center-first"}
    scores = pd.read_csv(out / "scores.csv")
    assert scores[scores["variant"] == "center-first"]["value"].notna().all()
    assert "1 variant against the baseline" in (out / "report.md").read_text()  # not "1 variants" (issue 15)
    capsys.readouterr()
    assert main(["--plugin", str(plugin), "--list"]) == 0
    assert "center-first" in capsys.readouterr().out


def test_entry_points_are_loaded(monkeypatch, tmp_path):
    module = tmp_path / "mgt_ep_plugin.py"
    module.write_text("from samplers.variant import register_variant\n"
                      "register_variant('from-entry-point', {'base': 'vanilla', 'reveal_schedule': 'linear'})\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class EntryPoint:
        name, value = "demo", "mgt_ep_plugin"

        def load(self):
            import importlib
            return importlib.import_module(self.value)

    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [EntryPoint()] if group == "mgt_bench.samplers" else [])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    from samplers.variant import VARIANT_PRESETS

    assert "from-entry-point" in VARIANT_PRESETS.names()


def test_unknown_component_names_the_nearest_match():
    from samplers.components import build_component

    with pytest.raises(ConfigError, match=r"unknown reveal schedule 'cosin'\. Did you mean 'cosine'\? Known: "):
        build_component("reveal_schedule", "cosin")
