"""Issue 15: README and docs/ stand alone in a clone: every relative link resolves (anchors included), and
nothing points at files that live outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_resolves():
    broken = []
    for doc in documents():
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists() or REPO.resolve() not in path.parents:
                broken.append(f"{doc.relative_to(REPO)}: {target} (no such file in the repository)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc.relative_to(REPO)}: {target} (no heading with that anchor)")
    assert not broken, "\n".join(broken)


def test_docs_do_not_point_outside_the_clone():
    for doc in documents():
        text = doc.read_text()
        for outside in ("DESIGN.md", "shared/reference", "../shared"):
            assert outside not in text, f"{doc.relative_to(REPO)} mentions {outside}, which a clone does not have"


def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n[ok](#top) [bad](missing.md) [anchor](a.md#nope) `[code](x.md)`\n")
    text = (tmp_path / "a.md").read_text()
    assert LINK.findall(text) == ["#top", "missing.md", "a.md#nope", "x.md"]
    assert anchors(tmp_path / "a.md") == {"top"}
