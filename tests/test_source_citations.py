"""Source files cite papers, equations and docs/ sections, never our work history.

A reader of the code has the repository and the papers, not the maintainers' notes or issue tracker: a
comment that says "see DESIGN.md" (the file is docs/design.md), "reference §3" (notes outside the
repository) or "issue 12" sends them nowhere. docs/ gets the same check for the notes' "ref. §" labels
and issue numbers; test_doc_links.py checks that docs/ points at nothing outside the clone.
"""
from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO

UNFOLLOWABLE = re.compile(r"(?<![\w/])DESIGN\.md|reference §|ref\. §|\b[Ii]ssues? \d+\b")
SOURCE_ROOTS = ("bench", "samplers", "metrics", "mgt_common", "benchmarks")


def unfollowable_citations(paths: list[Path], root: Path = REPO) -> list[str]:
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if UNFOLLOWABLE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def source_files() -> list[Path]:
    files = [REPO / "run_bench.py"]
    for root in SOURCE_ROOTS:
        files += sorted((REPO / root).rglob("*.py"))
    return files


def test_source_cites_papers_and_docs_not_our_history():
    found = unfollowable_citations(source_files())
    assert not found, "cite a paper, an equation or a docs/ section instead:\n" + "\n".join(found)


def test_docs_carry_no_labels_of_notes_outside_the_repository():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = unfollowable_citations(docs)
    assert not found, "state the fact (or cite the paper / official code) instead:\n" + "\n".join(found)


def test_the_check_finds_each_kind_of_citation(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("# see DESIGN.md\n# reference §2.1\n# ref. §1 step 3\n# fixed in issue 12\n# Issues 3\n"
                      "# arXiv 2411.10781 §3, docs/design.md\n# an issue with 4 tokens\n")
    assert [line.split(":")[1] for line in unfollowable_citations([sample], tmp_path)] == ["1", "2", "3", "4", "5"]
