"""Every test runs offline and on the CPU."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture
def scratch_registry(monkeypatch):
    """Model backends registered by a test (a plugin file, a bad factory) are gone after it."""
    from bench.models.registry import MODELS

    MODELS.names()  # the built-ins first, so that the copy holds them
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
