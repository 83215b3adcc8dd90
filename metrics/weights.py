"""Offline-first resolution of scorer weights and data files, and cheap, stable weight fingerprints.

`metrics` may not import `bench` (docs/design.md, "The rooms"), so scorers resolve their files here rather
than through `bench.models.weights`. The rules are the same: a local path is used as is; a hub file is
looked up in the Hugging Face cache, and downloaded only when downloads are allowed; when it cannot be
had, `MissingWeightsError` says what was looked for and the command that fetches it.

Downloads are refused when ``HF_HUB_OFFLINE`` (the hub's own switch) or ``MGT_BENCH_OFFLINE`` is set.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from mgt_common.errors import MissingWeightsError

_TRUE = {"1", "true", "yes", "on"}


def downloads_allowed() -> bool:
    """False when the user asked for an offline run (``HF_HUB_OFFLINE`` or ``MGT_BENCH_OFFLINE``)."""
    return not any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "MGT_BENCH_OFFLINE"))


def user_cache_dir() -> Path:
    """``$MGT_BENCH_CACHE`` or ``$XDG_CACHE_HOME/mgt-bench`` (``~/.cache/mgt-bench``)."""
    root = os.environ.get("MGT_BENCH_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "mgt-bench"


def download_command(repo_id: str, filename: str | None, repo_type: str = "model") -> str:
    """The fetch command of current huggingface_hub (`hf`; its `huggingface-cli` is gone in 1.x)."""
    kind = "" if repo_type == "model" else f" --repo-type {repo_type}"
    return f"hf download{kind} {repo_id}" + (f" {filename}" if filename else "")


def resolve_hub_file(repo_or_path: str | os.PathLike, filename: str | None = None, *, repo_type: str = "model",
                     revision: str | None = None, what: str = "weights") -> Path:
    """A local file, or ``filename`` of hub repo ``repo_or_path`` from the cache (downloaded if allowed).

    ``repo_or_path`` may be a file, a folder holding ``filename``, or a hub id (``owner/name``).
    """
    local = Path(repo_or_path).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        candidate = local / filename if filename else None
        if candidate is not None and candidate.is_file():
            return candidate
        raise MissingWeightsError(f"{what}: folder {local} has no {filename!r}; put the file there or pass its path")
    repo_id = str(repo_or_path)
    if filename is None or repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise MissingWeightsError(f"{what}: {repo_id!r} is neither an existing file nor a hub id 'owner/name'")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a declared dependency
        raise MissingWeightsError(f"{what}: huggingface_hub is not installed ({exc}); pass a local file path") from None
    allowed = downloads_allowed()
    try:
        return Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                    local_files_only=not allowed))
    except Exception as exc:  # the hub raises many types (offline, not found, gated, network): one message
        reason = "downloads are disabled (HF_HUB_OFFLINE / MGT_BENCH_OFFLINE) and it is not in the Hugging Face cache" \
            if not allowed else f"it could not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        raise MissingWeightsError(
            f"{what}: looked for {filename!r} in {repo_type} repo {repo_id!r}"
            f"{' at revision ' + revision if revision else ''}; {reason}. Fetch it with "
            f"`{download_command(repo_id, filename, repo_type)}` on a machine with network access "
            f"(then copy the Hugging Face cache), or pass the local file path.") from None


def hub_blob_sha256(path: Path) -> str | None:
    """The content hash of a file resolved from the Hugging Face cache, read off its blob name.

    The hub stores large (LFS) files under ``blobs/<sha256>``; the snapshot entry is a link to it, so the
    hash comes for free instead of reading 2 GB. Returns None when the path is not such a link.
    """
    try:
        target = Path(os.path.realpath(path))
    except OSError:
        return None
    if target.parent.name == "blobs" and len(target.name) == 64 and all(c in "0123456789abcdef" for c in target.name):
        return target.name
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content, remembered per file so that a 2 GB checkpoint is read once.

    The memo entry is valid only while the file's device, inode, size, mtime *and* ctime are unchanged:
    a checkpoint replaced with ``cp -p`` or ``rsync -a`` keeps its size and mtime but gets a new inode
    or a new ctime (which no user call can set back), so it is hashed again and its scores follow the
    new weights. Files in the Hugging Face cache are named by their sha256 and are not read at all.
    """
    path = Path(path).expanduser().resolve()
    blob = hub_blob_sha256(path)
    if blob:
        return blob
    stat = path.stat()
    identity = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    memo_path = user_cache_dir() / "file-hashes-v2.json"
    try:
        memo = json.loads(memo_path.read_text())
        memo = memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(str(path))
    if isinstance(entry, dict) and entry.get("stat") == identity and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    memo[str(path)] = {"stat": identity, "sha256": digest.hexdigest()}  # one entry per path: the memo stays small
    try:  # a failed memo write only costs a re-hash next time
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=memo_path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(memo, handle)
        os.replace(tmp, memo_path)
    except OSError:
        pass
    return memo[str(path)]["sha256"]


def folder_sha256(root: str | os.PathLike, include=None) -> str:
    """One content hash of a folder of weights: every file's relative name and sha256 (memoised per file).

    ``include(relative_posix_name) -> bool`` may restrict it to the files a loader reads.
    """
    root = Path(root).expanduser()
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(root).parts):
        rel = file.relative_to(root).as_posix()
        if include is not None and not include(rel):
            continue
        digest.update(f"{rel}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()
