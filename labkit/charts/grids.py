"""Comparisons across a grid of settings: a two-way heatmap, and one measure across the values of one setting."""

from __future__ import annotations

from typing import NamedTuple

import altair as alt
import numpy as np
import pandas as pd

from labkit.charts._checks import limit_rows, require
from labkit.charts._french import article, field_title, labels
from labkit.charts._renderer import OKABE_ITO, PLOT_HEIGHT, PLOT_WIDTH
from labkit.charts._seeds import finite_values, seed_stats
from labkit.charts._style import config_color, finish, spread_tooltips

__all__ = ["heatmap", "metric_by"]


# --------------------------------------------------------------------------- heatmap


def heatmap(
    frame: pd.DataFrame,
    x: str,
    y: str,
    value: str = "value",
    fmt: str = ".1%",
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    value_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """A two-way comparison (e.g. initialiser × activation) as coloured cells with the value written in.

    Several rows per cell (seeds) are averaged; the tooltip gives min, max and the
    number of seeds.  A cell whose runs all diverged (value NaN) is grey and reads
    "divergé"; a ``diverged`` column, when present, is counted into the tooltip.
    The text is white on dark cells and black on light ones (viridis is dark at the low end).
    """
    builder = "heatmap"
    require(frame, [x, y, value], builder)
    cells, x_order, y_order = _cells(frame, x, y, value)
    limit_rows(len(cells), builder)
    x_name, y_name = x_title or field_title(x), y_title or field_title(y)
    name = value_title or field_title(value)
    base = alt.Chart(cells).encode(
        x=alt.X("x_label:N", title=x_name, sort=x_order, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("y_label:N", title=y_name, sort=y_order),
        tooltip=[
            alt.Tooltip("x_label:N", title=x_name),
            alt.Tooltip("y_label:N", title=y_name),
            *spread_tooltips(f"{name} (moyenne)", fmt, "Graines finies"),
            alt.Tooltip("n_diverged:Q", title="Runs divergés"),
        ],
    )
    grey = base.mark_rect(color="#d9d9d9")  # shows through where a cell has no mean
    chart = alt.layer(grey, _coloured_cells(base, name, fmt, len(y_order)), _cell_text(base, fmt))
    chart = chart.properties(
        width=alt.Step(max(60, min(110, PLOT_WIDTH // max(len(x_order), 1)))), height=alt.Step(38)
    )
    default = f"{name} selon {article(x_name)} et {article(y_name)}"
    return finish(chart, title or default, _cell_notes(cells), description)


def _cells(frame, x, y, value) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per cell: mean, min–max and counts of seeds, diverged runs, and the text's ink."""
    data = frame.copy()
    data[value] = finite_values(data[value])
    data["x_label"], x_order = labels(data, x)
    data["y_label"], y_order = labels(data, y)
    keys = ["x_label", "y_label"]
    cells = seed_stats(data, keys, value)
    rows = data.groupby(keys, sort=False).size().rename("rows").reset_index()
    cells = cells.merge(rows, on=keys)
    if "diverged" in data:
        diverged = data.groupby(keys)["diverged"].sum().rename("n_diverged").reset_index()
        cells = cells.merge(diverged, on=keys)
    else:  # without the flag, a non-finite value is what tells a diverged run
        cells["n_diverged"] = cells["rows"] - cells["n"]
    low, high = cells["mean"].min(), cells["mean"].max()
    position = (cells["mean"] - low) / ((high - low) or 1)
    # Viridis is dark at the low end; a grey (NaN) cell compares False and gets black.
    cells["ink"] = np.where(position < 0.55, "white", "black")
    return cells, x_order, y_order


def _coloured_cells(base, name, fmt, rows: int):
    """The cells coloured by their mean; the gradient legend as tall as the grid."""
    return base.mark_rect().encode(
        color=alt.Color(
            "mean:Q",
            title=name,
            scale=alt.Scale(scheme="viridis"),
            legend=alt.Legend(format=fmt, gradientLength=max(60, 38 * rows)),
        )
    )


def _cell_text(base, fmt):
    """The value written in each cell, or "divergé" where no run gave a finite one."""
    label = f"isValid(datum.mean) && isFinite(datum.mean) ? format(datum.mean, '{fmt}') : 'divergé'"
    return (
        base.transform_calculate(label=label)
        .mark_text(fontSize=12)
        .encode(
            text="label:N",
            color=alt.when(alt.datum.ink == "white")
            .then(alt.value("white"))
            .otherwise(alt.value("black")),
        )
    )


def _cell_notes(cells) -> list[str]:
    """Subtitle: how many seeds a cell averages, and how many runs diverged."""
    seeds = int(cells["rows"].max())
    notes = [
        f"Moyenne sur {seeds} graines par case ; détail au survol."
        if seeds > 1
        else "Une graine par case."
    ]
    if cells["n_diverged"].sum():
        notes.append(
            f"Runs divergés : {int(cells['n_diverged'].sum())} (cases grises : tous divergés)."
        )
    return notes


# --------------------------------------------------------------------------- one measure by setting


class _Comparison(NamedTuple):
    """What the layers of a :func:`metric_by` chart share."""

    x: alt.X
    offset: dict  # side by side by colour, when there is a colour
    y_scale: alt.Scale
    y_title: str
    fmt: str
    colour: object
    tooltip: list


def metric_by(
    frame: pd.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    kind: str = "dot",
    fmt: str | None = None,
    log_y: bool = False,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    color_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """A simple comparison of ``y`` across the values of ``x`` (e.g. parameter count or
    seconds per epoch against depth): ``kind="bar"`` (bars of the mean, value written
    on top) or ``"dot"`` (one point per row plus the mean as a tick).
    """
    builder = "metric_by"
    if kind not in ("bar", "dot"):
        raise ValueError(f"{builder}: kind must be 'bar' or 'dot', got {kind!r}")
    require(frame, [x, y, color], builder)
    data, stats, x_order, order = _comparison_rows(frame, x, y, color, kind)
    fmt = fmt or (",d" if pd.api.types.is_integer_dtype(frame[y]) else ".3~g")
    x_name, y_name = x_title or field_title(x), y_title or field_title(y)
    colour, colour_name = _comparison_colour(data, color, order, color_title)
    shared = _Comparison(
        x=alt.X("x_label:N", title=x_name, sort=x_order, axis=alt.Axis(labelAngle=0)),
        offset={"xOffset": alt.XOffset("config:N", sort=order)} if color else {},
        # Bars start at zero (their length is the value); dots zoom on the values' range.
        y_scale=alt.Scale(type="log") if log_y else alt.Scale(zero=kind == "bar"),
        y_title=y_name,
        fmt=fmt,
        colour=colour,
        tooltip=_comparison_tooltip(x_name, y_name, colour_name, fmt),
    )
    if kind == "bar":
        layers = _bar_layers(stats, shared)
    else:
        layers = _dot_layers(
            stats, data[["x_label", "config", y]].rename(columns={y: "value"}), shared
        )
    chart = alt.layer(*layers).properties(
        width=alt.Step(max(40, min(90, PLOT_WIDTH // max(len(x_order), 1)))), height=PLOT_HEIGHT
    )
    default = f"{y_name} selon {article(x_name)}"
    several = kind == "dot" and (stats["n"] > 1).any()
    subtitle = ["Trait : moyenne ; points : mesures."] if several else []
    return finish(chart, title or default, subtitle, description)


def _comparison_rows(frame, x, y, color, kind):
    """The rows with French labels, and their mean, min–max and count per ``x`` (and colour)."""
    data = frame.copy()
    data[y] = pd.to_numeric(data[y], errors="coerce")
    data["x_label"], x_order = labels(data, x)
    data["config"], order = labels(data, color)
    stats = seed_stats(data, ["x_label", "config"], y)
    # A dot chart embeds the rows too, a bar chart only their means.
    limit_rows(len(stats) + (len(data) if kind == "dot" else 0), "metric_by")
    return data, stats, x_order, order


def _comparison_colour(data, color, order, color_title):
    """One colour per ``color`` value and its legend title, or the palette's first colour alone."""
    if not color:
        return alt.value(OKABE_ITO[0]), None
    colour_name = color_title or field_title(color)
    numeric = pd.api.types.is_numeric_dtype(data[color])
    return config_color(order, numeric, colour_name), colour_name


def _comparison_tooltip(x_name, y_name, colour_name, fmt) -> list[alt.Tooltip]:
    """The setting (and colour, if any), then the mean, min–max and number of measures."""
    return [
        alt.Tooltip("x_label:N", title=x_name),
        *([alt.Tooltip("config:N", title=colour_name)] if colour_name else []),
        *spread_tooltips(f"{y_name} (moyenne)", fmt, "Mesures"),
    ]


def _bar_layers(stats, shared: _Comparison) -> list:
    """Bars of the mean with the value written on top, and a min–max rule where rows repeat."""
    base = alt.Chart(stats).encode(x=shared.x, **shared.offset)
    mean = alt.Y(
        "mean:Q", title=shared.y_title, scale=shared.y_scale, axis=alt.Axis(format=shared.fmt)
    )
    layers = [
        base.mark_bar().encode(y=mean, color=shared.colour, tooltip=shared.tooltip),
        base.mark_text(baseline="bottom", dy=-3).encode(
            y="mean:Q", text=alt.Text("mean:Q", format=shared.fmt)
        ),
    ]
    if (stats["n"] > 1).any():
        layers.append(base.mark_rule(color="#333").encode(y="low:Q", y2="high:Q"))
    return layers


def _dot_layers(stats, raw, shared: _Comparison) -> list:
    """Every measure as a point (a few per setting, so the spread shows), the mean as a tick."""
    y = alt.Y(
        "value:Q", title=shared.y_title, scale=shared.y_scale, axis=alt.Axis(format=shared.fmt)
    )
    points = (
        alt.Chart(raw)
        .mark_point(filled=True, size=45, opacity=0.7)
        .encode(
            x=shared.x,
            y=y,
            color=shared.colour,
            tooltip=[alt.Tooltip("value:Q", title=shared.y_title, format=shared.fmt)],
            **shared.offset,
        )
    )
    mean = (
        alt.Chart(stats)
        .encode(x=shared.x, **shared.offset)
        .mark_tick(thickness=2, size=22)
        .encode(y="mean:Q", color=shared.colour, tooltip=shared.tooltip)
    )
    return [points, mean]
