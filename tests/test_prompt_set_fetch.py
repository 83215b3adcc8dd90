"""The fetch path of the named prompt sets (bench/prompt_files.py) on a file the test writes: cache,
mirror, offline, a failed or wrong download, and the pins themselves. No test touches the network: the
HTTP downloader is refused, or replaced by a fake where a test is about what a download does."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pooch
import pytest
import requests

import bench.prompt_files as prompt_files
from bench.cli import main
from bench.prompt_files import FILES, UpstreamFile, fetch
from bench.prompts import PROMPT_SETS, load_prompts
from mgt_common.errors import ConfigError
from prompt_set_fixtures import REPO, isolated_cache  # noqa: F401  (a fixture)

KEY = "drawbench/DrawBench.csv"
URL = "https://example.invalid/pinned/DrawBench.csv"
CONTENT = b'Prompts,Category\nA red colored car.,Colors\n"A sign that says ""Hi"". ",Text'


@pytest.fixture
def pinned(monkeypatch):
    """DrawBench's entry pinned to a small file written here (its sha256, a URL that is never reached)."""
    file = UpstreamFile(KEY, URL, hashlib.sha256(CONTENT).hexdigest(), "a test file", "none")
    monkeypatch.setitem(FILES, KEY, file)
    return file


@pytest.fixture
def mirror(tmp_path, monkeypatch, isolated_cache):  # noqa: F811  (after isolated_cache, which unsets the mirror)
    root = tmp_path / "mirror"
    (root / "drawbench").mkdir(parents=True)
    (root / KEY).write_bytes(CONTENT)
    monkeypatch.setenv("MGT_BENCH_DATA_MIRROR", str(root))
    return root


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("MGT_BENCH_OFFLINE", raising=False)
    monkeypatch.setattr(prompt_files, "RETRIES", 0)


def fake_http(monkeypatch, respond):
    """pooch.HTTPDownloader replaced: each call runs ``respond(url, output_file)``; returns the calls."""
    calls = []

    class Downloader:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def __call__(self, url, output_file, pooch_instance, check_only=False):
            calls.append((url, self.kwargs))
            respond(url, output_file)

    monkeypatch.setattr(pooch, "HTTPDownloader", Downloader)
    return calls


def test_the_mirror_is_copied_into_the_cache_then_the_cache_serves(pinned, mirror, isolated_cache, monkeypatch):
    prompts = load_prompts("drawbench")
    assert [(p.text, p.category) for p in prompts] == [("A red colored car.", "Colors"), ('A sign that says "Hi". ', "Text")]
    assert (isolated_cache / KEY).read_bytes() == CONTENT
    monkeypatch.delenv("MGT_BENCH_DATA_MIRROR")  # offline, no mirror: the cached copy is enough
    assert fetch(KEY, "drawbench") == isolated_cache / KEY
    (mirror / KEY).unlink()  # with the mirror set again but emptied: the cache still serves, untouched
    monkeypatch.setenv("MGT_BENCH_DATA_MIRROR", str(mirror))
    assert fetch(KEY, "drawbench") == isolated_cache / KEY


def test_a_damaged_cached_copy_is_fetched_again(pinned, mirror, isolated_cache):
    fetch(KEY, "drawbench")
    (isolated_cache / KEY).write_bytes(CONTENT[:-3])  # a truncated copy
    assert fetch(KEY, "drawbench").read_bytes() == CONTENT


def test_a_mirror_without_the_file_names_where_it_looked(pinned, mirror, isolated_cache):
    (mirror / KEY).unlink()
    with pytest.raises(ConfigError) as caught:
        load_prompts("drawbench")
    message = str(caught.value)
    assert f"MGT_BENCH_DATA_MIRROR={mirror} has no {KEY} (looked for {mirror / KEY})" in message
    assert URL in message and not (isolated_cache / KEY).exists()


def test_a_mirror_with_another_file_is_refused_and_nothing_is_cached(pinned, mirror, isolated_cache):
    other = CONTENT + b"\n"
    (mirror / KEY).write_bytes(other)
    with pytest.raises(ConfigError) as caught:
        load_prompts("drawbench")
    message = str(caught.value)
    assert f"has sha256 {hashlib.sha256(other).hexdigest()}, not {pinned.sha256}" in message
    assert "the mirror holds a different file" in message and URL in message
    assert not (isolated_cache / KEY).exists()


def test_offline_without_the_file_says_url_cache_and_how(pinned, isolated_cache):
    with pytest.raises(ConfigError) as caught:
        load_prompts("drawbench")
    message = str(caught.value)
    for part in (URL, str(isolated_cache / KEY), pinned.sha256, "downloads are off", "MGT_BENCH_DATA_MIRROR",
                 "`path = ...`"):
        assert part in message, part
    assert not isolated_cache.exists()  # nothing was created


def test_offline_with_a_damaged_copy_says_so(pinned, isolated_cache):
    (isolated_cache / "drawbench").mkdir(parents=True)
    (isolated_cache / KEY).write_bytes(b"Prompts\n")
    with pytest.raises(ConfigError, match=r"the cached copy .* does not match sha256 .* \(delete it\)"):
        load_prompts("drawbench")
    (isolated_cache / KEY).write_bytes(CONTENT)  # placed by hand, as the message says
    assert len(load_prompts("drawbench")) == 2


def test_a_download_lands_in_the_cache_from_the_pinned_url(pinned, isolated_cache, online, monkeypatch):
    calls = fake_http(monkeypatch, lambda url, out: Path(out).write_bytes(CONTENT))
    assert len(load_prompts("drawbench")) == 2
    assert [url for url, _ in calls] == [URL] and calls[0][1] == {"timeout": prompt_files.TIMEOUT}
    assert len(load_prompts("drawbench")) == 2 and len(calls) == 1  # the second use reads the cache


def test_a_download_with_the_wrong_bytes_is_not_cached(pinned, isolated_cache, online, monkeypatch):
    fake_http(monkeypatch, lambda url, out: Path(out).write_bytes(b"<html>rate limited</html>"))
    with pytest.raises(ConfigError, match=f"the download of {re.escape(URL)} does not match sha256 {pinned.sha256}"):
        load_prompts("drawbench")
    assert not (isolated_cache / KEY).exists() and not list(isolated_cache.rglob("*.csv"))


@pytest.mark.parametrize("error, reason", [
    (requests.exceptions.ConnectionError("Failed to resolve 'example.invalid'"), "ConnectionError"),
    (requests.exceptions.HTTPError("404", response=type("R", (), {"status_code": 404})()), "HTTP 404"),
])
def test_no_network_fails_with_url_and_cache_path(pinned, isolated_cache, online, monkeypatch, error, reason):
    def respond(url, out):
        raise error

    calls = fake_http(monkeypatch, respond)
    monkeypatch.setattr(prompt_files, "RETRIES", 1)
    monkeypatch.setattr("pooch.core.time.sleep", lambda seconds: None)  # pooch waits 1 s between tries
    with pytest.raises(ConfigError) as caught:
        load_prompts("drawbench")
    message = str(caught.value)
    assert f"download failed ({reason}, after 2 tries)" in message and len(calls) == 2
    assert URL in message and str(isolated_cache / KEY) in message


def test_an_unwritable_cache_names_the_variable(pinned, mirror, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MGT_BENCH_CACHE", str(blocker))
    with pytest.raises(ConfigError, match="cannot write the cache .*; set MGT_BENCH_CACHE to a writable folder"):
        load_prompts("drawbench")


def test_the_default_cache_is_poochs_user_cache(monkeypatch):
    monkeypatch.delenv("MGT_BENCH_CACHE", raising=False)
    assert prompt_files.cache_dir() == Path(pooch.os_cache("mgt-bench")) / "prompt-sets"


def test_cli_offline_without_the_set_exits_2_before_writing(isolated_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--prompts", "drawbench", "--limit", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mgt-bench: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert FILES[KEY].url in lines[0] and str(isolated_cache / KEY) in lines[0]
    assert not out.exists()


def test_every_file_is_pinned_and_documented():
    docs = (REPO / "docs" / "scorers.md").read_text()
    for key, file in FILES.items():
        name, _ = key.split("/")
        assert name in PROMPT_SETS, key
        assert re.fullmatch(r"[0-9a-f]{64}", file.sha256), key
        # a commit or hub revision in the URL: the bytes behind it cannot change
        assert re.search(r"/(resolve/)?[0-9a-f]{40}/", file.url), file.url
        assert file.url.startswith("https://") and file.url.endswith("/" + file.name)
        assert file.url in docs and file.sha256 in docs, f"docs/scorers.md does not list {key}'s URL and sha256"
