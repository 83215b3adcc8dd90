"""Checks of a tidy score table before any statistic: one row per unit × metric, finite values, distinct prompts.

Every statistic of `metrics.stats` and `metrics.ranking` assumes that a row is one observation. Three
things break that silently, and are caught here (docs/report.md, "The statistics"):

* **duplicate rows** (the same variant, metric, prompt and seed twice): a win rate would count them
  twice while Bradley–Terry (which pivots) would not. Identical copies are dropped with a warning;
  copies with different values are an error, since no one can say which is right;
* **non-finite values** (±inf): means become ±inf and every comparison with them is a win or a loss.
  They are left out like missing scores, with a warning that counts them;
* **repeated prompt texts**: identical text and seed give identical images, so prompt ids that share
  a text are one unit of analysis. The column ``cluster`` (the text) is added for the statistics,
  and units that repeat an earlier prompt id's (text, seed) are dropped with a warning naming them.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from mgt_common.errors import UserError

KEYS = ["variant", "metric", "prompt_id", "seed"]


def validate_scores(scores: pd.DataFrame, prompt_text: Mapping[str, str] | None = None,
                    what: str = "scores") -> tuple[pd.DataFrame, list[str]]:
    """The checked table (with a ``cluster`` column) and the warnings to show; `UserError` if unusable.

    ``prompt_text`` maps prompt ids to their texts (from ``samples.csv``); without it an existing
    ``cluster`` column is kept, else every prompt id is its own cluster.
    """
    missing = [c for c in [*KEYS, "value"] if c not in scores.columns]
    if missing:
        raise UserError(f"{what}: lacks columns {missing}")
    out = scores.copy()
    warnings: list[str] = []
    values = pd.to_numeric(out["value"], errors="coerce").astype(float)
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        bad = out.loc[infinite]
        per_metric = ", ".join(f"{m}: {n}" for m, n in bad.groupby("metric").size().items())
        warnings.append(f"{int(infinite.sum())} scores are infinite ({per_metric}) and were left out like missing ones")
        values[infinite] = np.nan
    out["value"] = values

    dup = out.duplicated(KEYS, keep=False)
    if dup.any():
        groups = out.loc[dup].groupby(KEYS, sort=True, dropna=False)["value"]
        conflicting = groups.nunique(dropna=False) > 1
        if conflicting.any():
            first = conflicting[conflicting].index[0]
            raise UserError(f"{what}: {int(conflicting.sum())} units have more than one different score, e.g. "
                            f"variant {first[0]!r}, metric {first[1]!r}, prompt {first[2]!r}, seed {first[3]}; "
                            "a table must hold one row per unit and metric (was a run merged twice?)")
        n_extra = int(out.duplicated(KEYS).sum())
        warnings.append(f"{what}: {n_extra} duplicate rows (same variant, metric, prompt and seed) were counted once")
        out = out.drop_duplicates(KEYS)

    ids = out["prompt_id"].astype(str)
    if prompt_text is None and "cluster" in out.columns:
        out["cluster"] = out["cluster"].astype(str)  # already given (e.g. by a caller that knows the texts)
    else:
        text = prompt_text or {}
        out["cluster"] = [text.get(i, f"\0id:{i}") for i in ids]
    units = out[["prompt_id", "seed", "cluster"]].drop_duplicates(["prompt_id", "seed"])
    # the first prompt id (in sorted order) of each (text, seed) keeps its units; the others are copies
    keep = units.sort_values(["cluster", "seed", "prompt_id"]).drop_duplicates(["cluster", "seed"])
    copies = units.merge(keep[["cluster", "seed", "prompt_id"]].rename(columns={"prompt_id": "kept"}),
                         on=["cluster", "seed"])
    copies = copies[copies["prompt_id"] != copies["kept"]]
    if len(copies):
        named = copies.groupby("kept")["prompt_id"].agg(lambda s: ", ".join(sorted(set(map(str, s)))))
        listing = "; ".join(f"{ids_} = {kept}" for kept, ids_ in named.items())
        warnings.append(f"prompts with the text and seed of an earlier prompt give identical images and were counted "
                        f"once ({listing})")
        drop = pd.MultiIndex.from_frame(copies[["prompt_id", "seed"]])
        here = pd.MultiIndex.from_frame(out[["prompt_id", "seed"]])
        out = out[~here.isin(drop)]
    reseeded = (units.drop_duplicates(["prompt_id"]).groupby("cluster")["prompt_id"].nunique() > 1)
    reseeded = reseeded[reseeded].index.difference(copies["cluster"].unique()) if len(copies) else reseeded[reseeded].index
    if len(reseeded):
        warnings.append(f"{len(reseeded)} prompt texts appear under several prompt ids with different seeds; "
                        "the statistics count each text as one prompt")
    return out.reset_index(drop=True), warnings
