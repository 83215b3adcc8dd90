"""Issue 15: `--list` prints every description whole; a variant registered without one gets one derived
from its components; a report with one variant says "1 variant"."""
from __future__ import annotations

import pandas as pd

from bench.cli import main
from bench.listing import config_description, format_section, listing_sections, print_listing
from helpers import REPO, write_tiny_config
from samplers.variant import register_variant


def squash(text: str) -> str:
    return " ".join(text.split())


def test_every_description_is_printed_whole(capsys):
    print_listing(width=60)  # narrow: long descriptions must wrap, not be cut
    out = squash(capsys.readouterr().out)
    for _, rows in listing_sections():
        for name, text in rows:
            assert squash(f"{name} {text}") in out, f"--list cut the description of {name!r}"


def test_shipped_config_description_is_its_first_paragraph():
    text = (REPO / "bench" / "configs" / "paper-meissonic-1024.toml").read_text()
    description = config_description(text)
    assert description.startswith("The design-choices paper's protocol")
    assert description.endswith('("approximately 70 %", paper abstract).')
    assert config_description("# one\n# two\n#\n# three\nkey = 1\n") == "one two"


def test_wrapping_keeps_long_words_and_the_column():
    lines = format_section("t", [("a", "word " * 30), ("bb", "x" * 80)], width=50).splitlines()
    assert all(line.startswith("      ") for line in lines[2:-1])  # continuation lines under the text column
    assert lines[-1] == "  bb  " + "x" * 80  # a word longer than the line stays whole


def test_variant_without_description_is_described_by_its_components(capsys):
    register_variant("listing-demo", {"base": "vanilla", "confidence": {"name": "random"},
                                      "logits_processors": [{"name": "noise-regularization", "scale": 1.0}]})
    print_listing(width=200)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("listing-demo"))
    assert line.split(None, 1)[1] == ("vanilla with confidence = random; "
                                      "logits_processors = noise-regularization(scale=1.0)")


def test_report_says_one_variant(tmp_path):
    config = write_tiny_config(tmp_path / "c.toml", limit=2, steps=3, samplers=("vanilla", "random-order"))
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out), "--metrics", "world-loglik"]) == 0
    assert pd.read_csv(out / "samples.csv")["variant"].nunique() == 2
    report = (out / "report.md").read_text()
    assert "1 variant against the baseline" in report and "1 variants" not in report
