"""Offline-first weight resolution: local directory, then the Hugging Face cache, then (only if allowed) a download."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.models import weights
from bench.models.weights import missing_files, network_allowed, resolve_file, resolve_model
from mgt_common.errors import MissingWeightsError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_cache(root: Path, repo: str = "owner/model", files=("transformer/config.json",), ref: str = "main") -> Path:
    """The hub cache layout: models--owner--name/{refs/<ref>, snapshots/<commit>/...}."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / ref).write_text(COMMIT)
    return snapshot


@pytest.fixture
def no_downloads(monkeypatch):
    """Any download attempt fails the test (the offline paths must never reach the network)."""
    import huggingface_hub

    real_snapshot, real_file = huggingface_hub.snapshot_download, huggingface_hub.hf_hub_download

    def snapshot(*args, **kwargs):
        assert kwargs.get("local_files_only"), "tried to download"
        return real_snapshot(*args, **kwargs)

    def file(*args, **kwargs):
        assert kwargs.get("local_files_only"), "tried to download"
        return real_file(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", file)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_local_directory_is_used_as_is(tmp_path, no_downloads):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text('{"a": 1}')
    got = resolve_model(tmp_path, required=["transformer/config.json"])
    assert got.source == "local" and got.path == tmp_path.resolve() and got.commit is None
    (tmp_path / "transformer" / "config.json").write_text('{"a": 2}')
    assert resolve_model(tmp_path).fingerprint != got.fingerprint  # the manifest sees changed weights


def test_local_directory_missing_files_names_them(tmp_path, no_downloads):
    with pytest.raises(MissingWeightsError, match=r"lacks vqvae/config\.json"):
        resolve_model(tmp_path, required=["vqvae/config.json"])


def test_cached_snapshot_resolves_with_its_commit(tmp_path, no_downloads):
    snapshot = fake_cache(tmp_path, files=["transformer/config.json", "transformer/diffusion_pytorch_model.fp16.safetensors"])
    got = resolve_model("owner/model", required=[
        "transformer/diffusion_pytorch_model.safetensors|transformer/diffusion_pytorch_model.fp16.safetensors"],
        cache_dir=tmp_path)
    assert got.source == "cache" and got.path == snapshot and got.commit == COMMIT and got.repo_id == "owner/model"
    assert got.describe()["commit"] == COMMIT
    by_commit = resolve_model("owner/model", revision=COMMIT, required=["transformer/config.json"], cache_dir=tmp_path)
    assert by_commit.path == snapshot and by_commit.revision == COMMIT


def test_missing_model_fails_at_once_with_what_was_looked_for(tmp_path, no_downloads):
    fake_cache(tmp_path)
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        resolve_model("owner/other", revision="v1.0", required=["transformer/config.json"], cache_dir=tmp_path,
                      what="Meissonic checkpoint")
    assert time.perf_counter() - start < 1
    message = str(info.value)
    for part in ("Meissonic checkpoint owner/other@v1.0", "local directory 'owner/other'", str(tmp_path),
                 "hf download owner/other", "--revision v1.0", "HF_HUB_OFFLINE=1", "pass that directory"):
        assert part in message, part


def test_incomplete_cached_snapshot_names_the_missing_files(tmp_path, no_downloads):
    fake_cache(tmp_path)
    with pytest.raises(MissingWeightsError, match=r"lacks vqvae/config\.json"):
        resolve_model("owner/model", required=["transformer/config.json", "vqvae/config.json"], cache_dir=tmp_path)


def test_not_a_path_nor_a_hub_id(no_downloads):
    with pytest.raises(MissingWeightsError, match="neither an existing local directory nor a hub id"):
        resolve_model("./no/such/dir")


def test_offline_switch_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not network_allowed()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert network_allowed() and not network_allowed(allow_download=False)
    monkeypatch.setenv("MGT_BENCH_OFFLINE", "1")
    assert not network_allowed()


def test_download_is_tried_only_when_allowed_and_reachable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("MGT_BENCH_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights, "_probe_hub", lambda endpoint=None: "huggingface.co:443 is unreachable (test)")
    with pytest.raises(MissingWeightsError, match="not reachable.*hf download owner/x"):
        resolve_model("owner/x", required=["a.json"], cache_dir=tmp_path)
    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append(kwargs)
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not cached")
        return str(fake_cache(tmp_path, repo_id, files=["a.json"]))

    monkeypatch.setattr(weights, "_probe_hub", lambda endpoint=None: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_download)
    got = resolve_model("owner/x", required=["a.json"], allow_patterns=["a.json"], cache_dir=tmp_path)
    assert got.source == "download" and got.commit == COMMIT
    assert calls[-1]["allow_patterns"] == ["a.json"] and not calls[-1].get("local_files_only")


def test_resolve_file_local_cache_and_missing(tmp_path, no_downloads):
    file = tmp_path / "HPS_v2_compressed.pt"
    file.write_bytes(b"x")
    assert resolve_file(file, "ignored.pt") == file.resolve()
    assert resolve_file(tmp_path, "HPS_v2_compressed.pt") == file.resolve()
    cache = tmp_path / "cache"
    snapshot = fake_cache(cache, "xswu/HPSv2", files=["HPS_v2_compressed.pt"])
    assert resolve_file("xswu/HPSv2", "HPS_v2_compressed.pt", cache_dir=cache) == snapshot / "HPS_v2_compressed.pt"
    with pytest.raises(MissingWeightsError, match="hf download xswu/HPSv2 HPS_v2.1_compressed.pt"):
        resolve_file("xswu/HPSv2", "HPS_v2.1_compressed.pt", cache_dir=cache)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        resolve_file(tmp_path, "other.pt")


def test_required_patterns_accept_alternatives(tmp_path):
    (tmp_path / "model.fp16.safetensors").write_text("")
    assert missing_files(tmp_path, ["model.safetensors|model.fp16.safetensors", "config.json"]) == ["config.json"]


def test_fingerprint_covers_the_needed_files_only(tmp_path, no_downloads):
    """A clone with extra files and a cache snapshot of the same weights get the same fingerprint."""
    snapshot = fake_cache(tmp_path / "cache", files=["transformer/config.json", "a.safetensors"])
    clone = tmp_path / "clone"
    for name in ("transformer/config.json", "a.safetensors", "README.md", "assets/teaser.jpg", ".cache/x.lock"):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_text("{}")
    wanted = dict(required=["transformer/config.json"], allow_patterns=["transformer/config.json", "*.safetensors"])
    cached = resolve_model("owner/model", cache_dir=tmp_path / "cache", **wanted)
    local = resolve_model(clone, **wanted)
    assert cached.path == snapshot and cached.fingerprint == local.fingerprint
    (clone / "a.safetensors").write_text("{bigger}")  # a changed weight file (size) changes it
    assert resolve_model(clone, **wanted).fingerprint != cached.fingerprint
