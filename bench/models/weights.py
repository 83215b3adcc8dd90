"""Offline-first resolution of model weights: a hub id (optionally a revision) or a local directory → local files.

Order (docs/models.md, "Offline-first resolution"):

1. a local directory (or file) given by path: used as is;
2. the Hugging Face cache (``snapshot_download(local_files_only=True)`` / ``hf_hub_download(local_files_only=True)``);
3. only when the network is allowed: a download restricted to the files the backend needs.

The network is not allowed when ``HF_HUB_OFFLINE`` or ``MGT_BENCH_OFFLINE`` is set (read at call time) or when
the caller passes ``allow_download=False``. A failure is one `MissingWeightsError` at once (no retry
loops: a 3-second reachability probe runs before any download), whose message says what was looked
for, where, and how to get it (``hf download …`` on a connected machine, or the local path to pass).

The result records the resolved commit (the snapshot folder name for cached hub models) and a
fingerprint of the folder's content (every needed file's sha256, memoised per file by inode, ctime,
size and mtime; free for hub-cache blobs, which are named by their hash) so a manifest and the unit
keys change when the weights do, even for a local directory whose files kept their sizes.
"""
from __future__ import annotations

import fnmatch
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mgt_common.errors import MissingWeightsError

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "true", "yes", "on"}
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's files are on this machine and which version they are."""

    name: str  #: what the user gave (hub id or path)
    path: Path  #: local folder holding the files
    repo_id: str | None  #: the hub id, when ``name`` is one
    revision: str | None  #: the requested revision (branch, tag or commit), if any
    commit: str | None  #: the resolved commit hash, when known (hub cache or a cache snapshot path)
    source: str  #: "local", "cache" or "download"
    fingerprint: str  #: sha256 over the needed files' names and contents (first 16 hex digits)

    def describe(self) -> dict:
        """JSON-ready record for the manifest."""
        return {
            "name": self.name,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "source": self.source,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
        }


def network_allowed(allow_download: bool | None = None) -> bool:
    """False when ``HF_HUB_OFFLINE`` (the hub's switch, read now and at import) or ``MGT_BENCH_OFFLINE``
    (the suite's, shared with `metrics.weights`) is set, or the caller forbids downloads."""
    if allow_download is False:
        return False
    if any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "MGT_BENCH_OFFLINE")):
        return False
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE


def is_repo_id(name: str) -> bool:
    """``owner/name`` with hub-legal characters, and not an existing local path."""
    return bool(_REPO_ID.match(name)) and not Path(name).expanduser().exists()


def _matches(root: Path, pattern: str) -> bool:
    """A required entry: glob patterns separated by ``|`` (alternatives); one match is enough."""
    return any(any(root.glob(alt.strip())) for alt in pattern.split("|"))


def missing_files(root: Path, required: list[str] | tuple[str, ...]) -> list[str]:
    """The required entries (glob patterns, ``a|b`` = either) that have no match under ``root``."""
    return [pattern for pattern in required if not _matches(root, pattern)]


def fingerprint(root: Path, patterns: list[str] | None = None) -> str:
    """Content id of a model folder: names and sha256 of the files the backend reads.

    Only files matching ``patterns`` count, so a full clone, a partial download and a cache snapshot
    of the same weights have the same fingerprint. Sizes alone are not enough: a fine-tune has the
    same shapes, and safetensors headers (shapes, dtypes) are equal too.
    """
    from metrics.weights import folder_sha256

    def wanted(rel: str) -> bool:
        return not patterns or any(fnmatch.fnmatch(rel, pattern) for pattern in patterns)

    return folder_sha256(root, include=wanted)[:16]


def _commit_from_path(path: Path) -> str | None:
    """The commit hash when ``path`` is (inside) a hub-cache snapshot folder ``…/snapshots/<sha>/``."""
    parts = path.resolve().parts
    for i, part in enumerate(parts[:-1]):
        if part == "snapshots" and _COMMIT.match(parts[i + 1]):
            return parts[i + 1]
    return None


def _download_hint(repo_id: str, revision: str | None, include: list[str] | None, filename: str | None = None) -> str:
    rev = f" --revision {revision}" if revision else ""
    what = f" {filename}" if filename else "".join(f" --include '{p}'" for p in include or [])
    local = "./weights/" + repo_id.replace("/", "--")
    return (
        f"On a connected machine run `hf download {repo_id}{what}{rev} --local-dir {local}` "
        f"(`huggingface-cli download …` with older huggingface_hub) and pass that directory as the path, "
        f"or copy the Hugging Face cache (HF_HUB_CACHE / HF_HOME) to this machine"
    )


def _probe_hub(endpoint: str | None = None) -> str | None:
    """None if the hub's host accepts a TCP connection within 3 s, else the reason (skipped behind a proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    url = urlparse(endpoint or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{url.hostname}:{port} is unreachable ({exc})"


def resolve_model(
    name: str | os.PathLike,
    revision: str | None = None,
    *,
    required: list[str] | tuple[str, ...] = (),
    allow_patterns: list[str] | None = None,
    what: str = "model",
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool | None = None,
) -> ResolvedWeights:
    """A local folder holding ``required`` files (glob patterns; ``a|b`` = either) of ``name``.

    ``name`` is a local directory or a hub id ``owner/name``; ``revision`` a branch, tag or commit of
    the hub repo (ignored for a local directory). ``allow_patterns`` restricts a download to the files
    needed (defaults to ``required``). Raises `MissingWeightsError` at once when nothing usable is found.
    """
    name = str(name)
    path = Path(name).expanduser()
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None  # read now, like HF_HUB_OFFLINE
    needed = [p.strip() for req in required for p in req.split("|")]
    patterns = list(allow_patterns or needed or ["*"])
    fp_patterns = patterns + needed  # fingerprint every file the backend may read (both variants)
    if path.is_dir():
        missing = missing_files(path, required)
        if missing:
            raise MissingWeightsError(
                f"{what}: the local directory {path} lacks {', '.join(missing)}; it must hold the checkpoint's "
                f"layout (e.g. as written by `hf download <repo> --local-dir {path}`)"
            )
        return ResolvedWeights(name, path.resolve(), None, revision, _commit_from_path(path), "local",
                               fingerprint(path, fp_patterns))

    if not is_repo_id(name):
        raise MissingWeightsError(
            f"{what}: {name!r} is neither an existing local directory nor a hub id of the form owner/name; "
            "pass the directory that holds the checkpoint or its Hugging Face id"
        )

    from huggingface_hub import snapshot_download

    looked = f"looked for a local directory {name!r} (none) and the Hugging Face cache ({cache_dir or _cache_dir()})"
    cache_problem = ""
    try:
        snapshot = Path(
            snapshot_download(name, revision=revision, local_files_only=True, cache_dir=cache_dir, allow_patterns=patterns)
        )
        missing = missing_files(snapshot, required)
        if not missing:
            return ResolvedWeights(name, snapshot, name, revision, _commit_from_path(snapshot), "cache", fingerprint(snapshot, fp_patterns))
        cache_problem = f": the cached snapshot {snapshot} lacks {', '.join(missing)}"
    except Exception as exc:  # LocalEntryNotFoundError and friends: nothing usable in the cache
        cache_problem = f": no snapshot of {name}{'@' + revision if revision else ''} ({type(exc).__name__})"

    hint = _download_hint(name, revision, patterns)
    if not network_allowed(allow_download):
        raise MissingWeightsError(
            f"{what} {name}{'@' + revision if revision else ''} is not on this machine: {looked}{cache_problem}; "
            f"downloads are off (HF_HUB_OFFLINE=1 / MGT_BENCH_OFFLINE=1). {hint}."
        )
    unreachable = _probe_hub()
    if unreachable:
        raise MissingWeightsError(f"{what} {name}: not cached{cache_problem}, and the hub is not reachable: {unreachable}. {hint}.")
    try:
        snapshot = Path(snapshot_download(name, revision=revision, cache_dir=cache_dir, allow_patterns=patterns))
    except Exception as exc:
        raise MissingWeightsError(f"{what} {name}: download failed ({type(exc).__name__}: {exc}). {hint}.") from exc
    missing = missing_files(snapshot, required)
    if missing:
        raise MissingWeightsError(f"{what} {name}: the hub repo has no {', '.join(missing)} (downloaded to {snapshot})")
    return ResolvedWeights(name, snapshot, name, revision, _commit_from_path(snapshot), "download", fingerprint(snapshot, fp_patterns))


def resolve_file(
    repo_or_path: str | os.PathLike,
    filename: str,
    revision: str | None = None,
    *,
    what: str = "weights file",
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool | None = None,
) -> Path:
    """One file, offline-first: ``repo_or_path`` may be the file itself, a local directory, or a hub id.

    E.g. ``resolve_file("xswu/HPSv2", "HPS_v2_compressed.pt")`` or ``resolve_file("/data/hps", "HPS_v2_compressed.pt")``.
    """
    name = str(repo_or_path)
    path = Path(name).expanduser()
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        candidate = path / filename
        if candidate.is_file():
            return candidate.resolve()
        raise MissingWeightsError(f"{what}: {candidate} does not exist; put {filename} in {path} or pass the file's path")
    if not is_repo_id(name):
        raise MissingWeightsError(
            f"{what}: {name!r} is neither an existing file or directory nor a hub id of the form owner/name"
        )

    from huggingface_hub import hf_hub_download

    hint = _download_hint(name, revision, None, filename)
    try:
        return Path(hf_hub_download(name, filename, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except Exception as exc:
        cache_problem = f"{type(exc).__name__}"
    if not network_allowed(allow_download):
        raise MissingWeightsError(
            f"{what} {filename} of {name}{'@' + revision if revision else ''} is not on this machine: looked for a local "
            f"path {name!r} (none) and the Hugging Face cache ({cache_dir or _cache_dir()}: {cache_problem}); downloads "
            f"are off (HF_HUB_OFFLINE=1 / MGT_BENCH_OFFLINE=1). {hint}, or pass the file's local path."
        )
    unreachable = _probe_hub()
    if unreachable:
        raise MissingWeightsError(f"{what} {filename} of {name}: not cached, and the hub is not reachable: {unreachable}. {hint}.")
    try:
        return Path(hf_hub_download(name, filename, revision=revision, cache_dir=cache_dir))
    except Exception as exc:
        raise MissingWeightsError(f"{what} {filename} of {name}: download failed ({type(exc).__name__}: {exc}). {hint}.") from exc


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE
