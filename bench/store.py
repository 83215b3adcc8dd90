"""The run directory: atomic files, append-only journals, tidy tables and the manifest.

Layout::

    RUN_DIR/
      manifest.json              resolved config, its hash, versions, git commit, device, timings
      images/ab/abcdef….png      one PNG per unit key (content-addressed; written atomically)
      tokens/ab/abcdef….npy      the generated token grid of that image
      journal/generated*.jsonl   one line per finished unit (the resume record)
      journal/scores*.jsonl      one line per unit × metric
      journal/set_metrics.jsonl  one line per set-metric computation (keyed by its inputs)
      samples.csv, scores.csv, set_metrics.csv   the tidy tables, rebuilt atomically from the journals

A journal line is written only after the files it refers to are in place, so a killed run (even
`kill -9`) never counts a half-written unit as done; a torn last line is ignored on reading.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from mgt_common.errors import UserError

SAMPLE_COLUMNS = ["unit_key", "variant", "prompt_id", "prompt", "category", "seed", "steps", "forward_passes",
                  "seconds", "image_path", "trajectory", "guidance", "base_variant", "sweep_values"]
SCORE_COLUMNS = ["unit_key", "variant", "prompt_id", "seed", "metric", "value"]
SET_METRIC_COLUMNS = ["variant", "category", "metric", "value", "std", "n"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())


class RunDirectory:
    """All reads and writes of one run directory (optionally as one shard of a sharded run)."""

    def __init__(self, root: Path | str, shard: str = ""):
        self.root = Path(root)
        self.shard = shard  # e.g. "0of2": journals get this suffix so shards never write the same file

    # -- paths -----------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def image_path(self, unit_key: str) -> Path:
        return self.root / "images" / unit_key[:2] / f"{unit_key}.png"

    def tokens_path(self, unit_key: str) -> Path:
        return self.root / "tokens" / unit_key[:2] / f"{unit_key}.npy"

    def journal(self, name: str, shard: str | None = None) -> Path:
        shard = self.shard if shard is None else shard
        return self.root / "journal" / (f"{name}.{shard}.jsonl" if shard else f"{name}.jsonl")

    def journals(self, name: str) -> list[Path]:
        """Every shard's journal of this name (for merging)."""
        folder = self.root / "journal"
        return sorted(folder.glob(f"{name}.jsonl")) + sorted(folder.glob(f"{name}.*.jsonl"))

    # -- creation and the config guard -----------------------------------------------------------

    def check_writable(self) -> None:
        """Fail early, before generating anything, if the output directory cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"out: cannot write to {self.root} ({exc.strerror}); pass a writable --out directory") from None

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{self.manifest_path} is corrupt; delete the run directory or pass --fresh") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")

    # -- units -----------------------------------------------------------------------------------

    def save_unit_files(self, unit_key: str, png: bytes, tokens: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, tokens)
        atomic_write_bytes(self.tokens_path(unit_key), buffer.getvalue())
        atomic_write_bytes(self.image_path(unit_key), png)

    def append(self, name: str, records: Iterable[dict[str, Any]]) -> None:
        """Append records to this shard's journal `name` in one write, then fsync."""
        lines = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        if not lines:
            return
        path = self.journal(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def read_journal(self, name: str, all_shards: bool = True) -> Iterator[dict[str, Any]]:
        """Records of journal `name` (every shard's by default); a torn last line is skipped."""
        paths = self.journals(name) if all_shards else [self.journal(name)]
        for path in paths:
            if not path.exists():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a write cut short by a kill: the unit is simply not done yet

    def finished_units(self) -> dict[str, dict[str, Any]]:
        """(variant, unit_key) records of every generated unit whose image is on disk, keyed by 'variant/key'."""
        done = {}
        for record in self.read_journal("generated"):
            if self.image_path(record["unit_key"]).exists():
                done[f"{record['variant']}/{record['unit_key']}"] = record
        return done

    def load_tokens(self, unit_key: str) -> np.ndarray:
        return np.load(self.tokens_path(unit_key))

    # -- tables ----------------------------------------------------------------------------------

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.root / f"{name}.csv"
        if not path.exists():
            raise UserError(f"{path} does not exist: {self.root} is not a finished mgt-bench run directory")
        return pd.read_csv(path, keep_default_na=False, na_values=[""])

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.root / f"{name}.csv"
        atomic_write_csv(path, frame)
        return path
