"""The upstream files behind the named prompt sets: pinned URLs, known sha256, fetched once into a cache.

Each file is fetched with `pooch` (pinned URL, known hash, per-user cache, retries) on first use and read
from the cache afterwards; a cached file is re-hashed on every use, so a damaged copy is fetched again,
never read. Nothing from upstream ships with mgt-bench (docs/scorers.md, "Prompt sets"). Every URL names
a commit (or the hub dataset's revision), so the bytes behind it cannot change.

Where a file comes from, in order:

1. the cache, ``$MGT_BENCH_CACHE/prompt-sets/<set>/<file>`` (default ``pooch.os_cache("mgt-bench")``,
   i.e. ``~/.cache/mgt-bench`` on Linux), when its sha256 matches;
2. ``$MGT_BENCH_DATA_MIRROR/<set>/<file>``, a local folder laid out like the cache (a cluster without
   internet, the tests); it is copied into the cache through the same hash check;
3. the pinned URL, unless downloads are off (``HF_HUB_OFFLINE`` or ``MGT_BENCH_OFFLINE``).

When none of these gives the file, `fetch` raises a `ConfigError` (exit code 2) naming the URL, the cache
path and how to place the file by hand.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mgt_common.errors import ConfigError

#: environment variables: the cache root (shared with the scorers' cache) and the local mirror
CACHE_VARIABLE = "MGT_BENCH_CACHE"
MIRROR_VARIABLE = "MGT_BENCH_DATA_MIRROR"
#: pooch retries a failed download this many times (after 1 s, 2 s): a flaky connection, not a missing one
RETRIES = 2
#: requests' (connect, read) timeouts in seconds: an unreachable host fails in seconds, not minutes
TIMEOUT = (10, 60)


@dataclass(frozen=True)
class UpstreamFile:
    """One file of a prompt set: its place in the cache and in a mirror (``key``), and where it comes from."""

    key: str       # "<set>/<upstream file name>"
    url: str       # pinned to a commit or a hub revision
    sha256: str
    origin: str    # repository, commit and path, for messages and docs
    licence: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[1]


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


HPDV2_REVISION = "260dbde75ab1c68e86d32a8e7739f1b49b100578"  # "Release benchmark and HPSv2 test data"
HPSV2_STYLES = ("anime", "concept-art", "paintings", "photo")
_HPDV2_SHA256 = {
    "anime": "6b38a479cc6f899866e9b7a8bf91f096b4afc6883b95275a61891327182b14ae",
    "concept-art": "530d057deafcb82c581e9d1be2ffcb98828fe99f0b54257414d2ab8a5cf2b83e",
    "paintings": "6570d39467e08b24b64e5b8a4177b0f61c525631121dc5a91fe2ab956eab4d5f",
    "photo": "92a3c9a0f743f66eb87bd112cdda830d6bdb4c073c86021d53b74001fcb18052",
}
_BAGS_OF_TRICKS = ("xie-lab-ml/Bags_of_Tricks_Meissonic", "6beeec1f715aff74fcbb61fc57154af03b537796")
_NO_LICENCE = ("none: the repository has no licence file, so mgt-bench downloads the file from its origin "
               "and never redistributes it")

FILES: dict[str, UpstreamFile] = {f.key: f for f in [
    UpstreamFile(
        "drawbench/DrawBench.csv",
        _github("argsss/DPCache", "59f08a4d788eaf76ab3962a13f71b2fe468cc4ee", "datasets/DrawBench.csv"),
        "5f50241927354d1879b5b0b27cd3c83e8e6816a19fcc9c559053e8d09781c392",
        "github.com/argsss/DPCache @ 59f08a4, datasets/DrawBench.csv (the Imagen authors' sheet as CSV)",
        "the Imagen authors' sheet states none; the repository that holds this copy is Apache-2.0"),
    UpstreamFile(
        "partiprompts/PartiPrompts.tsv",
        _github("google-research/parti", "5a657978134374ce28973948331b319adef164bd", "PartiPrompts.tsv"),
        "fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb",
        "github.com/google-research/parti @ 5a65797, PartiPrompts.tsv", "Apache-2.0"),
    UpstreamFile(
        "geneval/evaluation_metadata.jsonl",
        _github("djghosh13/geneval", "af4902f24d3ca90ebbb446dd9891a59e0f82725f", "prompts/evaluation_metadata.jsonl"),
        "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
        "github.com/djghosh13/geneval @ af4902f, prompts/evaluation_metadata.jsonl", "MIT"),
    *[UpstreamFile(
        f"hpsv2-benchmark/{style}.json",
        f"https://huggingface.co/datasets/zhwang/HPDv2/resolve/{HPDV2_REVISION}/benchmark/{style}.json",
        _HPDV2_SHA256[style],
        f"hub dataset zhwang/HPDv2 @ {HPDV2_REVISION[:7]}, benchmark/{style}.json",
        "Apache-2.0 (the HPDv2 dataset card)") for style in HPSV2_STYLES],
    UpstreamFile(
        "challengebench/challengebench.txt", _github(*_BAGS_OF_TRICKS, "challengebench/challengebench.txt"),
        "1a6495aed968c74e59c7191f85e98faec4d9a64c7dd3803c806e0334c690b792",
        "github.com/xie-lab-ml/Bags_of_Tricks_Meissonic @ 6beeec1, challengebench/challengebench.txt", _NO_LICENCE),
    UpstreamFile(
        "challengebench/HPD_prompt2seed.json", _github(*_BAGS_OF_TRICKS, "quantization/HPD_prompt2seed.json"),
        "7f82f86e968241a2e3cd31718c9bed8df7e5a4b03fe2b15e0e69483ae6203c67",
        "github.com/xie-lab-ml/Bags_of_Tricks_Meissonic @ 6beeec1, quantization/HPD_prompt2seed.json", _NO_LICENCE),
    UpstreamFile(
        "prompt2seed/hpsv2_prompt2seed.txt", _github(*_BAGS_OF_TRICKS, "quantization/hpsv2_prompt2seed.txt"),
        "4902fabf457be68e32b1b1c30ce1b1a609cb6325e98ca57fdb416e30b72dd6e3",
        "github.com/xie-lab-ml/Bags_of_Tricks_Meissonic @ 6beeec1, quantization/hpsv2_prompt2seed.txt", _NO_LICENCE),
]}


def cache_dir() -> Path:
    """``$MGT_BENCH_CACHE/prompt-sets``, else ``pooch.os_cache("mgt-bench")/prompt-sets``."""
    import pooch

    root = os.environ.get(CACHE_VARIABLE)
    return (Path(root).expanduser() if root else Path(pooch.os_cache("mgt-bench"))) / "prompt-sets"


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_VARIABLE, "").strip()
    return Path(value).expanduser().absolute() if value else None


def sha256_of(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def _by_hand(file: UpstreamFile, target: Path) -> str:
    return (f"To place it by hand: download {file.url} on a machine with network access and copy it to {target} "
            f"(sha256 {file.sha256}); or set {MIRROR_VARIABLE} to a folder that holds {file.key}; or give the "
            "file with `path = ...` in the prompts table")


class _MirrorLacks(Exception):
    """The mirror has no readable copy of the file (raised inside pooch's download, becomes a ConfigError)."""


def fetch(key: str, what: str) -> Path:
    """The local path of the upstream file ``key`` (see `FILES`), verified against its sha256.

    ``what`` (the prompt set's name) starts every error message.
    """
    import pooch
    import requests

    file = FILES[key]
    cache = cache_dir()
    target = cache / key
    mirror = mirror_dir()
    if mirror is None:
        from metrics.weights import downloads_allowed

        if not downloads_allowed():
            # Decide before pooch runs: it would log "Downloading …" and create the cache folder first.
            if target.is_file() and sha256_of(target) == file.sha256:
                return target
            state = (f"the cached copy {target} does not match sha256 {file.sha256} (delete it)" if target.is_file()
                     else f"{file.name} is not in the cache ({target})")
            raise ConfigError(f"{what}: {state}, and downloads are off (HF_HUB_OFFLINE / MGT_BENCH_OFFLINE). "
                              f"{_by_hand(file, target)}.")
        url, retries = file.url, RETRIES
        downloader = pooch.HTTPDownloader(timeout=TIMEOUT)
    else:
        source = mirror / key
        url, retries = source.as_uri(), 0  # a local copy: retrying cannot help

        def downloader(url, output_file, pooch_instance, check_only=False):  # pooch's downloader protocol
            if not source.is_file():
                raise _MirrorLacks(f"has no {key} (looked for {source})")
            if check_only:
                return True
            try:
                shutil.copyfile(source, output_file)
            except OSError as exc:
                raise _MirrorLacks(f"cannot read {source} ({exc.strerror or exc})") from None
            return None

    store = pooch.create(path=cache, base_url="", registry={key: f"sha256:{file.sha256}"}, urls={key: url},
                         retry_if_failed=retries)
    try:
        return Path(store.fetch(key, downloader=downloader))
    except _MirrorLacks as exc:
        raise ConfigError(f"{what}: {MIRROR_VARIABLE}={mirror} {exc}; the file comes from {file.url}. "
                          f"Put it there, or unset {MIRROR_VARIABLE} to download it") from None
    except ValueError as exc:  # pooch: the sha256 of what arrived is not the known one
        if mirror is not None:
            raise ConfigError(f"{what}: {mirror / key} has sha256 {sha256_of(mirror / key)}, not {file.sha256} "
                              f"({file.origin}); the mirror holds a different file. Replace it with {file.url}") from None
        raise ConfigError(f"{what}: the download of {file.url} does not match sha256 {file.sha256} "
                          f"({str(exc).splitlines()[0][:200]}); nothing was cached. {_by_hand(file, target)}.") from None
    except requests.exceptions.RequestException as exc:
        response = getattr(exc, "response", None)
        reason = f"HTTP {response.status_code}" if response is not None else type(exc).__name__
        raise ConfigError(f"{what}: {file.name} is not in the cache ({target}) and its download failed "
                          f"({reason}, after {retries + 1} tries). {_by_hand(file, target)}.") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write the cache {cache} ({exc.strerror or exc}); set {CACHE_VARIABLE} "
                          "to a writable folder") from None
