"""Issue 15: no standard prompt file ships (no PyPI package carries one), so every loader's error names
the file, the command that fetches it and the config line that uses it."""
from __future__ import annotations

import re
import sys

import pytest

from bench.prompt_sets import GET
from bench.prompts import load_prompts
from mgt_common.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


@pytest.mark.parametrize("name", sorted(GET))
def test_missing_file_names_source_command_and_config(name):
    with pytest.raises(ConfigError) as caught:
        load_prompts(name)
    message = str(caught.value)
    command = re.search(r"run `(git clone --depth 1 https://github\.com/[\w.-]+/[\w.-]+)`", message)
    assert command, message
    config = tomllib.loads(message.split("set in the config: ", 1)[1])
    assert config["prompts"]["source"] == name
    clone = command.group(1).rsplit("/", 1)[1]
    assert config["prompts"]["path"].startswith(clone + "/")  # the path the clone command creates


@pytest.mark.parametrize("name, file", [("drawbench", "benchmark/drawbench.json"),
                                        ("hpsv2-benchmark", "benchmark/anime.json")])
def test_hub_sets_name_the_download_command(name, file):
    with pytest.raises(ConfigError, match=rf"`hf download --repo-type dataset zhwang/HPDv2 {file}`"):
        load_prompts(name)
