"""Issue 15: `--list` prints every description whole; a variant registered without one gets one derived
from its components. ("1 variant" in the report is checked by tests/test_plugins.py's end-to-end run.)"""
from __future__ import annotations

from bench.listing import config_description, format_section, listing_sections, print_listing
from helpers import REPO
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
