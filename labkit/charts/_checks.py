"""Checks at the builders' entry: the frame, its columns and values, and the rows a chart may embed."""

from __future__ import annotations

import pandas as pd

__all__ = ["MAX_ROWS", "require", "pick", "check_grid", "limit_rows"]

#: Most rows a chart embeds (also Altair's own default limit).
MAX_ROWS = 5000
# Columns of the tidy frames that are not grid (configuration) columns.
_NON_GRID = {
    "seed",
    "key",
    "diverged",
    "epoch",
    "split",
    "metric",
    "value",
    "layer",
    "layer_name",
    "quantity",
    "stat",
    "bin_left",
    "bin_right",
    "count",
    "actual",
    "predicted",
    "longitude",
    "latitude",
}


def require(frame, columns, builder: str) -> None:
    """A non-empty DataFrame with these columns (``None`` entries skipped: unused options)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{builder}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(
            f"{builder}: missing column(s) {missing}; the frame has {list(frame.columns)}"
        )
    if frame.empty:
        raise ValueError(f"{builder}: the frame is empty")


def pick(frame, column: str, wanted, builder: str) -> pd.DataFrame:
    """Rows whose ``column`` is in ``wanted``; an unknown value is an error naming the known ones."""
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    known = list(pd.unique(frame[column]))
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"{builder}: {column}={unknown} not in the frame; it has {known}")
    return frame[frame[column].isin(wanted)]


def check_grid(frame, used, builder: str) -> None:
    """Refuse to average over a grid column the chart does not show: that would mix configurations."""
    for column in frame.columns:
        if column in _NON_GRID or column in used or column.startswith("_"):
            continue
        values = frame[column].astype(str).unique()
        if len(values) > 1:
            shown = ", ".join(values[:5]) + (", …" if len(values) > 5 else "")
            raise ValueError(
                f"{builder}: column {column!r} takes {len(values)} values ({shown}) but the chart "
                f"does not show it; filter the frame (e.g. frame[frame[{column!r}] == ...]) "
                f"or pass it as color=/facet="
            )


def limit_rows(total: int, builder: str) -> None:
    """Refuse a chart that would embed more than MAX_ROWS rows: the page would grow heavy."""
    if total > MAX_ROWS:
        raise ValueError(
            f"{builder}: {total} rows to embed, more than {MAX_ROWS}; filter or aggregate first"
        )
