"""Is a run directory finished? What ``--report-only`` and ``--compare`` check before reading (or writing) anything.

A run is finished when its manifest says so (status ``scored`` or ``complete``: written only after
every per-image score and every configured set metric is in the tables) and its tables are the ones
the run wrote: each table's sha256, recorded in ``manifest.json`` ``tables`` when the run wrote it,
still matches (docs/rundir.md, "What is verified on read"). Then every table is read in full and
checked against the manifest (one row per unit; one score per unit and per-image metric; the set
metrics of every variant), so that a truncated or damaged table of a run made before the checksums
is refused too, before a single report file is rewritten.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from mgt_common.errors import UserError

from .store import RunDirectory, sha256_file

#: the statuses the manifest has once every table is written (``complete``: the report too)
FINISHED = ("scored", "complete")
TABLES = ("samples", "scores", "set_metrics")


def check_finished(store: RunDirectory, manifest: dict[str, Any], flag: str) -> None:
    """Raise `UserError` (exit 2) unless the run at `store` is finished and its tables are intact."""
    root = store.root
    again = ("re-run the same command to resume (it finishes the run and rebuilds the tables from the journals), "
             f"or for a sharded run `python run_bench.py --merge {root}`")
    status = manifest.get("status")
    if status not in FINISHED:
        raise UserError(f"{flag} {root}: not finished (manifest.json status {status!r}): {again}")
    for name in TABLES:
        if not (root / f"{name}.csv").is_file():
            raise UserError(f"{flag} {root}: not finished (no {name}.csv): {again}")
    recorded = manifest.get("tables") if isinstance(manifest.get("tables"), dict) else {}
    for name in TABLES:
        if name in recorded and sha256_file(root / f"{name}.csv") != recorded[name]:
            raise UserError(f"{flag} {root}: {name}.csv does not match the sha256 that manifest.json recorded when the "
                            f"run wrote it (edited or damaged); the journals still hold the run: {again}")
    tables = {name: _read(root / f"{name}.csv", flag, again) for name in TABLES}
    _check_rows(tables, manifest, flag, root, again)


def _read(path, flag: str, again: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"metric": str, "variant": str,
                                                                              "category": str, "unit_key": str})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag} {path.parent}: {path.name} is damaged ({str(exc).splitlines()[0][:100]}); "
                        f"the journals still hold the run: {again}") from None


def _check_rows(tables: dict[str, pd.DataFrame], manifest: dict[str, Any], flag: str, root, again: str) -> None:
    samples, scores, sets = tables["samples"], tables["scores"], tables["set_metrics"]
    for name, columns in (("samples", ("unit_key", "variant")), ("scores", ("unit_key", "variant", "metric", "value")),
                          ("set_metrics", ("variant", "category", "metric", "value"))):
        missing = [c for c in columns if c not in tables[name].columns]
        if missing:
            raise UserError(f"{flag} {root}: {name}.csv has no column {missing[0]!r} (edited or damaged): {again}")
    units = manifest.get("units")
    if isinstance(units, int) and len(samples) != units:
        raise UserError(f"{flag} {root}: samples.csv has {len(samples)} rows but the run has {units} units "
                        f"(truncated or edited): {again}")
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    kinds = {label: (info or {}).get("kind") for label, info in metrics.items() if isinstance(info, dict)}
    per_image = [label for label, kind in kinds.items() if kind == "per-image"]
    if per_image and len(scores) != len(samples) * len(per_image):
        raise UserError(f"{flag} {root}: scores.csv has {len(scores)} rows, not one per unit and per-image metric "
                        f"({len(samples)} × {len(per_image)}) (truncated or edited): {again}")
    if len(scores) and pd.to_numeric(scores["value"], errors="coerce").isna().sum() > scores["value"].isna().sum():
        raise UserError(f"{flag} {root}: scores.csv holds values that are not numbers (edited or damaged): {again}")
    whole = sets[sets["category"].fillna("").astype(str) == ""]
    names = set(whole["metric"].astype(str))
    labels = set(kinds)
    variants = set(samples["variant"].astype(str))
    for label, kind in kinds.items():
        if kind != "set":
            continue
        # a metric reporting one value names its rows by its label; one reporting several, by their own names
        if label not in names and not (names - labels):
            raise UserError(f"{flag} {root}: not finished (no {label} in set_metrics.csv): {again}")
        if label in names:
            found = set(whole.loc[whole["metric"].astype(str) == label, "variant"].astype(str))
            if variants - found:
                raise UserError(f"{flag} {root}: not finished (no {label} of {sorted(variants - found)[0]} in "
                                f"set_metrics.csv): {again}")
