"""Aggregation over seeds and the bookkeeping of diverged runs, shared by the builders.

Charts show the mean and the min–max over seeds, never single runs, so they embed
few rows; a diverged run is never dropped silently, it is counted and named.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labkit.charts._french import lower_first

__all__ = [
    "run_ids",
    "diverged_runs",
    "finite_values",
    "seed_stats",
    "divergence_notes",
    "seeds_note",
]


def run_ids(frame, config_columns) -> pd.Series:
    """One id per run: the store key when present, else configuration + seed."""
    if "key" in frame.columns:
        return frame["key"].astype(str)
    parts = [frame[c].astype(str) for c in [*config_columns, "seed"] if c in frame.columns]
    out = parts[0]
    for part in parts[1:]:
        out = out + "|" + part
    return out


def diverged_runs(frame, runs: pd.Series) -> set[str]:
    """Runs flagged diverged, or with a non-finite value anywhere in their history."""
    bad = ~np.isfinite(pd.to_numeric(frame["value"], errors="coerce"))
    if "diverged" in frame.columns:
        bad = bad | frame["diverged"].fillna(False).astype(bool)
    return set(runs[bad])


def finite_values(values: pd.Series) -> pd.Series:
    """Numbers, with ±inf and unparsable entries as NaN: pandas' mean and min skip NaN, not inf."""
    numbers = pd.to_numeric(values, errors="coerce").copy()
    numbers.loc[~np.isfinite(numbers)] = np.nan
    return numbers


def seed_stats(frame, by, value="value") -> pd.DataFrame:
    """Mean, min, max and number of finite seeds per group."""
    grouped = frame.groupby(by, sort=False, dropna=False)[value]
    return grouped.agg(mean="mean", low="min", high="max", n="count").reset_index()


def divergence_notes(runs: pd.DataFrame, what: str | None) -> tuple[dict[str, str], list[str]]:
    """Legend suffix per configuration label and a subtitle line for diverged runs.

    ``runs`` has one row per run: ``label`` and ``diverged`` (bool); ``what`` names
    the configuration column (``None`` when there is a single configuration).
    """
    counts = runs.groupby("label", sort=False)["diverged"].agg(["sum", "count"])
    suffix, parts = {}, []
    for label, row in counts.iterrows():
        bad, total = int(row["sum"]), int(row["count"])
        if bad:
            suffix[label] = f"{label} (divergé : {bad}/{total})" if what else label
            where = f"{lower_first(what)} = {label} : " if what else ""
            parts.append(f"{where}{bad} graine{'s' if bad > 1 else ''} sur {total}")
    lines = (
        [f"Runs divergés (croix : dernière valeur finie) — {' ; '.join(parts)}."] if parts else []
    )
    return suffix, lines


def seeds_note(seeds: int) -> str:
    """How to read a line-and-band chart: the subtitle says what the line and the band are."""
    return (
        f"Moyenne sur {seeds} graines (trait) et min–max (bande)."
        if seeds > 1
        else "Une seule graine."
    )
