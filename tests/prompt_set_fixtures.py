"""Shared by the prompt-set tests: where the real upstream files are, and a guard that no test downloads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: a clean clone's neighbour, as CI lays it out (.ci/run exports MGT_BENCH_DATA_MIRROR to it)
NEIGHBOUR = REPO.parent / "shared" / "data" / "prompt-sets"


def shared_prompt_sets() -> Path | None:
    """The folder of byte-identical upstream files: $MGT_BENCH_DATA_MIRROR, else <repo>/../shared/data/prompt-sets."""
    value = os.environ.get("MGT_BENCH_DATA_MIRROR", "").strip()
    if value:
        return Path(value).expanduser().absolute()
    return NEIGHBOUR if NEIGHBOUR.is_dir() else None


SKIP_REASON = ("the upstream prompt files are not here: set MGT_BENCH_DATA_MIRROR to a folder laid out like "
               "<set>/<file> (docs/scorers.md, 'Prompt sets'), or place it at <repo>/../shared/data/prompt-sets")


def refuse_downloads(monkeypatch):
    """Any attempt to build pooch's HTTP downloader fails the test: tests never touch the network."""
    import pooch

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download over the network")

    monkeypatch.setattr(pooch, "HTTPDownloader", refuse)


@pytest.fixture
def isolated_cache(monkeypatch, tmp_path):
    """An empty per-test cache, no mirror, downloads refused; returns the cache's prompt-sets folder."""
    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MGT_BENCH_DATA_MIRROR", raising=False)
    refuse_downloads(monkeypatch)
    return tmp_path / "cache" / "prompt-sets"
