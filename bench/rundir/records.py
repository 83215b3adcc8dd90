"""Journal lines: the shape each journal's records must have, and the checksum each line carries.

A journal line is a JSON object (docs/rundir.md, "What is verified on read"). Two checks stand
between a line and its use:

- its *shape*: the keys a reader indexes, with the types it relies on (`problem`), so that a line
  of the right keys but the wrong shape (``"rows": 5``, a ``generated`` line without ``steps``) is
  one clear error naming the file and line, not a ``KeyError`` deep in scoring;
- its *checksum*: the ``check`` field, the first 16 hex digits of the sha256 of the line's other
  fields (canonical JSON: sorted keys), written with the line (`seal`) and verified on every read
  (`verify`). An edited value (``forward_passes``, an FID) no longer matches it.

The checksum has no secret: it detects accidental edits and damage, not someone who recomputes
it. Lines written before checksums existed have no ``check`` field and are trusted.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping

CHECK = "check"


def digest(record: Mapping[str, Any]) -> str:
    """The checksum of a record's fields other than ``check`` (canonical JSON, as the line stores them)."""
    body = {k: v for k, v in record.items() if k != CHECK}
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def seal(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its checksum, ready to be journalled.

    The checksum is taken of the record as JSON will give it back (``default=str`` turns e.g. a
    path into its text), so the reader's recomputation sees the same fields.
    """
    stored = json.loads(json.dumps(dict(record), sort_keys=True, default=str))
    stored.pop(CHECK, None)
    return {**stored, CHECK: digest(stored)}


def verify(record: Mapping[str, Any]) -> bool:
    """True when the record carries no checksum (an older line) or its checksum matches its fields."""
    return CHECK not in record or record[CHECK] == digest(record)


# -- shapes -----------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_real(value: Any) -> bool:
    return value is None or _is_real(value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _real_list(value: Any) -> bool:
    return isinstance(value, list) and all(_optional_real(v) for v in value)


def _fields(record: Mapping[str, Any], required: Mapping[str, tuple[Callable[[Any], bool], str]],
            optional: Mapping[str, tuple[Callable[[Any], bool], str]] = {}) -> str | None:
    for key, (ok, what) in required.items():
        if key not in record:
            return f"no {key!r}"
        if not ok(record[key]):
            return f"{key!r} is {json.dumps(record[key], default=str)[:40]}, not {what}"
    for key, (ok, what) in optional.items():
        if key in record and not ok(record[key]):
            return f"{key!r} is {json.dumps(record[key], default=str)[:40]}, not {what}"
    return None


_STR, _INT, _REAL = (_is_str, "text"), (_is_int, "an integer"), (_is_real, "a number")
_OPT_REAL = (_optional_real, "a number or null")

GENERATED = {"unit_key": _STR, "variant": _STR, "steps": _INT, "forward_passes": _INT, "seconds": _REAL}
GENERATED_OPTIONAL = {"image_sha256": _STR, "tokens_sha256": _STR, "seed": _INT, "scorer_calls": _INT,
                      "memory_mib": _OPT_REAL, "trajectory": _STR,
                      # cost columns (docs/rundir.md, "Cost columns"); absent from runs recorded before them
                      "rows_conditional": _INT, "rows_unconditional": _INT, "rows_perturbed": _INT,
                      "flops": _OPT_REAL, "peak_mib": _OPT_REAL, "resident_mib": _OPT_REAL,
                      "batch_images": _INT, "weight_mib": _OPT_REAL, "cost_note": _STR}
SET_ROW = {"metric": _STR, "value": _OPT_REAL, "std": _OPT_REAL, "n": _INT}
SET_ROW_OPTIONAL = {"warnings": (lambda v: v is None or (isinstance(v, list) and all(map(_is_str, v))),
                                 "a list of texts")}
INTERVAL_ROW = {"variant": _STR, "metric": _STR, "n_prompts": _INT}


def _rows(record: Mapping[str, Any], check_row: Callable[[Mapping[str, Any]], str | None]) -> str | None:
    problem_ = _fields(record, {"key": _STR, "rows": (lambda v: isinstance(v, list), "a list of rows")})
    if problem_:
        return problem_
    for number, row in enumerate(record["rows"], 1):
        if not isinstance(row, dict):
            return f"row {number} is not an object"
        problem_ = check_row(row)
        if problem_:
            return f"row {number}: {problem_}"
    return None


def _interval_row(row: Mapping[str, Any]) -> str | None:
    problem_ = _fields(row, INTERVAL_ROW)
    if problem_:
        return problem_
    replicates = row.get("jackknife", row.get("boot"))
    if not _real_list(replicates):
        return "no list of replicates ('jackknife')"
    return None


#: journal name → what is wrong with a record of it (None: nothing); journals not named here need only be objects
SHAPES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "generated": lambda r: _fields(r, GENERATED, GENERATED_OPTIONAL),
    "set_metrics": lambda r: _rows(r, lambda row: _fields(row, SET_ROW, SET_ROW_OPTIONAL)),
    "set_intervals": lambda r: _rows(r, _interval_row),
}


def problem(journal: str, record: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of a record of `journal`, or None."""
    shape = SHAPES.get(journal)
    return shape(record) if shape is not None else None

