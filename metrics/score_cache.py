"""A content-addressed cache of per-image scores, so that re-scoring a finished run costs nothing.

Key: (sha256 of the image file's bytes, sha256 of the prompt text, the scorer's ``cache_id``); for
metrics that read the generated tokens, a hash of the tokens joins the image hash. The
``cache_id`` carries the scorer's name, code version, parameters and weights, so a new checkpoint or a
changed parameter misses the cache, while a new metric added to a finished run scores only itself.
The prompt is part of the key because text-conditioned scores (HPSv2, CLIP score, PickScore) depend on it.

Keying by content rather than by unit also makes identical images score identically: two variants that
produce the same PNG for a prompt get the *same* number (a tie in a paired comparison), however the
batches that scored them were composed.

Storage: one SQLite file (in the run directory, or a shared user cache); every batch of new scores is
one transaction, so a killed run keeps what it finished and never leaves a half-written entry. WAL mode
lets several shards write to the same file.

Trust (docs/rundir.md, "What is verified on read"): each row carries a checksum of its key and value,
verified on every read, so an edited value (``UPDATE scores SET value = value + 100``) is never used:
the score is recomputed, with a warning (rows of older versions have none and are trusted). A damaged
database file is moved aside, with a warning, and rebuilt. The file is created with the permissions
the umask allows (SQLite gives its -wal and -shm files the database's mode), so the members of a
group sharing a run directory can all resume it, and it is never opened through a symbolic link.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch

from mgt_common.errors import UserError

from .base import PerImageMetric, ScoreBatch, checked_scores

Key = tuple[str, str]  # (image sha256, prompt sha256)
#: SQLite's result codes for a file that is not (or no longer) a valid database
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SIDE_FILES = ("-wal", "-shm", "-journal")


def image_sha256(source: str | os.PathLike | bytes) -> str:
    """sha256 of an image file's bytes (the PNG as written), or of given bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_mode() -> int:
    """What a plain ``open()`` would give a new file under the current umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def row_checksum(scorer_id: str, image: str, prompt: str, value: float) -> str:
    """A cache row's checksum: its key and the exact bits of its value."""
    return hashlib.sha256(f"{scorer_id}\0{image}\0{prompt}\0{float(value).hex()}".encode()).hexdigest()[:16]


def is_corrupt(exc: BaseException) -> bool:
    """SQLite says the file is not a database, or a damaged one (not: locked, full, read-only)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


class ScoreCache:
    """``(image hash, prompt hash, scorer id) -> float`` in a SQLite file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._warned: set[str] = set()
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self._rebuild(exc)

    def _open(self) -> None:
        for suffix in ("", *_SIDE_FILES):
            linked = Path(f"{self.path}{suffix}")
            if linked.is_symlink():
                raise UserError(f"{linked} is a symbolic link; the score cache is never opened through a link (in a "
                                "shared directory it may point at another user's file): delete it and re-run")
        try:  # created here, with the umask's mode; SQLite would make it 0644 whatever the umask
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _file_mode()))
        except FileExistsError:
            pass
        self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (image TEXT NOT NULL, prompt TEXT NOT NULL, "
                             "scorer TEXT NOT NULL, value REAL NOT NULL, created REAL NOT NULL, checksum TEXT, "
                             "PRIMARY KEY (scorer, image, prompt))")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(scores)")}
            if "checksum" not in columns:  # a cache of an older version: its rows stay, without checksums
                self._db.execute("ALTER TABLE scores ADD COLUMN checksum TEXT")
        except BaseException:
            self._db.close()
            raise

    def _rebuild(self, exc: BaseException) -> None:
        """Move a damaged database (and its side files) aside, say so, and start an empty one."""
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = Path(f"{self.path}.damaged-{stamp}")
        for suffix in ("", *_SIDE_FILES):
            source = Path(f"{self.path}{suffix}")
            if source.exists() and not source.is_symlink():
                os.replace(source, Path(f"{aside}{suffix}"))
        print(f"mgt-bench: warning: the score cache {self.path} is damaged ({exc}); moved aside to {aside.name}; "
              "its scores are recomputed", file=sys.stderr)
        self._open()

    def _retry_if_corrupt(self, call):
        """Run `call`; if the database turns out damaged, rebuild it once and run `call` again."""
        try:
            return call()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
                    raise UserError(f"the score cache {self.path} cannot be written ({exc}): made by another user "
                                    "without group write permission? Ask its owner to `chmod g+w` it and its -wal "
                                    "and -shm files, or delete them (the scores are recomputed)") from None
                raise
            self._db.close()
            self._rebuild(exc)
            return call()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, scorer_id: str, keys: Iterable[Key]) -> dict[Key, float]:
        """The cached scores among ``keys`` (missing keys are absent from the result).

        A row whose checksum does not match its value (an edit) is left out, so it is recomputed.
        """
        return self._retry_if_corrupt(lambda: self._get(scorer_id, keys))

    def _get(self, scorer_id: str, keys: Iterable[Key]) -> dict[Key, float]:
        wanted = set(keys)
        found: dict[Key, float] = {}
        edited = 0
        images = sorted({image for image, _ in wanted})
        for start in range(0, len(images), 500):  # SQLite limits the number of bound parameters
            chunk = images[start:start + 500]
            rows = self._db.execute(f"SELECT image, prompt, value, checksum FROM scores WHERE scorer = ? AND image IN "
                                    f"({','.join('?' * len(chunk))})", (scorer_id, *chunk))
            for image, prompt, value, checksum in rows:
                if (image, prompt) not in wanted:
                    continue
                if checksum is not None and not _matches(checksum, scorer_id, image, prompt, value):
                    edited += 1
                    continue
                found[(image, prompt)] = value
        if edited and scorer_id not in self._warned:
            self._warned.add(scorer_id)
            print(f"mgt-bench: warning: {edited} cached scores of {scorer_id} in {self.path} do not match their "
                  "checksums (edited or damaged): they are recomputed", file=sys.stderr)
        return found

    def put(self, scorer_id: str, scores: Mapping[Key, float]) -> None:
        """Store scores, each with its checksum, in one transaction (all or nothing)."""
        now = time.time()
        rows = [(image, prompt, scorer_id, float(value), now, row_checksum(scorer_id, image, prompt, value))
                for (image, prompt), value in scores.items()]

        def write():
            with self._db:  # BEGIN ... COMMIT, rolled back on error
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO scores (image, prompt, scorer, value, created, checksum) "
                                     "VALUES (?, ?, ?, ?, ?, ?)", rows)

        self._retry_if_corrupt(write)

    def scorers(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT scorer FROM scores ORDER BY scorer")]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]


def _matches(checksum: str, scorer_id: str, image: str, prompt: str, value) -> bool:
    try:
        return checksum == row_checksum(scorer_id, image, prompt, value)
    except (TypeError, ValueError):  # a value edited into text
        return False


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as float ``(3, H, W)`` in [0, 1] (RGB; exactly ToTensor of the file)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)


def score_with_cache(metric: PerImageMetric, cache: ScoreCache | None, image_paths: Sequence[str | os.PathLike],
                     prompts: Sequence[str], *, prompt_ids: Sequence[str] | None = None,
                     tokens: Sequence[torch.Tensor] | None = None, world=None,
                     image_hashes: Sequence[str] | None = None,
                     loader: Callable[[str | os.PathLike], torch.Tensor] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Scores ``(N,)`` float64 of the images at ``image_paths``, computing only what the cache lacks.

    Only missing images are read, the scorer's weights are loaded only if something is missing, and new
    scores are written after every batch (an interrupted run keeps them). ``image_hashes`` may be given
    when the caller already knows them (e.g. recorded at generation time). Files are read with the
    metric's own ``read_image`` when it has one (its rule for transparency and palettes), else as RGB.
    """
    loader = loader or getattr(metric, "read_image", None) or read_image
    if len(prompts) != len(image_paths):
        raise ValueError(f"{len(image_paths)} images but {len(prompts)} prompts")
    if "tokens" in metric.needs and tokens is None:
        raise ValueError(f"metric {metric.name!r} needs the generated tokens")
    if "world" in metric.needs and world is None:
        raise ValueError(f"metric {metric.name!r} needs the synthetic world")
    hashes = list(image_hashes) if image_hashes is not None else [image_sha256(p) for p in image_paths]
    if "tokens" in metric.needs:
        # a token-level metric scores the tokens, and two token grids may decode to the same PNG
        hashes = [f"{h}+{hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]}"
                  for h, t in zip(hashes, tokens)]
    keys = [(h, prompt_sha256(p)) for h, p in zip(hashes, prompts)]
    scorer_id = metric.cache_id
    known = cache.get(scorer_id, keys) if cache is not None else {}
    result = torch.full((len(keys),), float("nan"), dtype=torch.float64)
    missing: list[int] = []
    first_index: dict[Key, int] = {}
    for index, key in enumerate(keys):
        if key in known:
            result[index] = known[key]
        elif key in first_index:
            continue  # the same image and prompt twice: score once, copy below
        else:
            first_index[key] = index
            missing.append(index)
    batch_size = max(1, int(getattr(metric, "batch_size", 16)))
    done = 0
    if missing:
        metric.load()
        # Group same-sized images so that each batch stacks; order within a size is kept.
        pending: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
        for index in missing:
            image = _load(loader, image_paths[index])
            group = pending.setdefault(tuple(image.shape), [])
            group.append((index, image))
            if len(group) >= batch_size:
                done += _score_group(metric, cache, scorer_id, group, keys, prompts, prompt_ids, tokens, world, result)
                pending[tuple(image.shape)] = []
                if progress:
                    progress(done, len(missing))
        for group in pending.values():
            if group:
                done += _score_group(metric, cache, scorer_id, group, keys, prompts, prompt_ids, tokens, world, result)
                if progress:
                    progress(done, len(missing))
    for index, key in enumerate(keys):
        if torch.isnan(result[index]) and key in first_index:
            result[index] = result[first_index[key]]
    return result


def _load(loader: Callable[[str | os.PathLike], torch.Tensor], path: str | os.PathLike) -> torch.Tensor:
    """An image, or one clear error naming the file (a truncated or foreign file must not end in a traceback)."""
    try:
        return loader(path)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for broken files
        from mgt_common.errors import UserError

        raise UserError(f"cannot read image {path} ({type(exc).__name__}: {str(exc)[:120]}); it is damaged: delete "
                        "it, and re-run the command that made it to regenerate it") from None


def _score_group(metric, cache, scorer_id, group, keys, prompts, prompt_ids, tokens, world, result) -> int:
    indices = [index for index, _ in group]
    batch = ScoreBatch(images=torch.stack([image for _, image in group]),
                       prompts=[prompts[i] for i in indices],
                       tokens=torch.stack([tokens[i] for i in indices]) if tokens is not None else None,
                       prompt_ids=[prompt_ids[i] for i in indices] if prompt_ids is not None else None,
                       world=world)
    scores = checked_scores(metric, metric.score(batch), batch.prompts)  # finite float64 (B,), or exit 2
    for index, value in zip(indices, scores.tolist()):
        result[index] = value
    if cache is not None:
        cache.put(scorer_id, {keys[i]: v for i, v in zip(indices, scores.tolist())})
    return len(indices)
