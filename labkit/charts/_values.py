"""Charts of values themselves: weight histograms, regression diagnostics, a dataset's columns."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from labkit import fr
from labkit.charts._output import MAX_WIDTH, OKABE_ITO
from labkit.charts._parts import (PLOT_WIDTH, check, color_channel, facet_of, finish, limit_rows, numbers,
                                  only, panels, printable, refuse_mixed, roles, title_of)

__all__ = ["histograms", "scatter", "distributions"]

ROW_HEIGHT = 90
TREND_BINS = 20


# -- weight histograms ---------------------------------------------------------------------------
def _mean_density(part: pd.DataFrame) -> pd.DataFrame:
    """The density (count / total / bin width) averaged over seeds, as the vertices of a
    closed step line.  Seeds bin their own range: each seed's share of values is first
    moved onto common bins, in proportion to how much of each of its bins they cover."""
    bins = int(part.groupby("seed").size().max())
    edges = np.linspace(part["left"].min(), part["right"].max(), bins + 1)
    shares = []
    for _, one in part.groupby("seed"):
        left, right, count = (one[c].to_numpy()[None, :] for c in ("left", "right", "count"))
        covered = np.clip(np.minimum(edges[1:, None], right) - np.maximum(edges[:-1, None], left), 0, None)
        shares.append((covered / (right - left) * count).sum(axis=1) / count.sum())
    mean = np.mean(shares, axis=0) / np.diff(edges)
    return pd.DataFrame({"x": [edges[0], *edges[:-1], edges[-1], edges[-1]],
                         "density": [0.0, *mean, mean[-1], 0.0], "step": range(bins + 3)})


def histograms(frame, *, value_left="bin_left", value_right="bin_right", count="count", color=None,
               facet_row=None, facet_column=None, shared_y=True, title, subtitle=None, x_title=None,
               y_title="Densité", color_title=None):
    """Histograms (the ``weight_hist`` probe) as step lines of density, averaged over seeds:
    e.g. ``color="epoch"`` (before and after training), ``facet_row="layer_name"``,
    ``facet_column="λ"``.  Along a row the axes are shared, so the columns compare;
    each row has its own, since layers differ in scale.  ``shared_y=False`` gives each
    panel its own density axis: a tall spike in one column no longer flattens the others."""
    builder = "histograms"
    check(frame, builder, value_left, value_right, count, color, facet_row, facet_column)
    shown = {"color": color, "facet_row": facet_row, "facet_column": facet_column}
    seed = ["seed"] if "seed" in frame else []
    refuse_mixed(frame, [c for c in (color, facet_row, facet_column) if c] + seed + [value_left], builder,
                 shown, (value_right, count))
    data = pd.DataFrame({"left": numbers(frame[value_left]), "right": numbers(frame[value_right]),
                         "count": numbers(frame[count]), "seed": frame["seed"] if seed else 0})
    orders = roles(frame, data, color=color, row=facet_row, column=facet_column)
    table = limit_rows(data.dropna().groupby(["color", "row", "column"], sort=False)
                       .apply(_mean_density, include_groups=False).reset_index(level=[0, 1, 2]), builder)
    own_axes = 0 if shared_y else 45 * (len(orders["column"]) - 1)  # a density axis beside each panel
    columns, width = panels(len(orders["column"]), axis_px=80 + own_axes, widest=len(orders["column"]), least=95)
    if columns < len(orders["column"]):
        raise ValueError(f"charts.histograms: {len(orders['column'])} columns do not fit the page width "
                         f"({MAX_WIDTH} px); filter the frame to {columns} values of {facet_column!r}")

    x_title, color_title = title_of(value_left, x_title), title_of(color, color_title)
    printable(builder, x_title, y_title, color_title, facet_column)
    colour = color_channel(orders["color"], color_title) if color else alt.value(OKABE_ITO[0])
    rows = []
    for index, row in enumerate(orders["row"]):
        last = index == len(orders["row"]) - 1
        chart = alt.Chart(table[table["row"] == row]).mark_line(interpolate="step-after", strokeWidth=1.6).encode(
            x=alt.X("x:Q", title=x_title if last else None, axis=alt.Axis(tickCount=5, labelOverlap=True)),
            y=alt.Y("density:Q", title=y_title, axis=alt.Axis(tickCount=3)),
            color=colour, order="step:Q",
            tooltip=[alt.Tooltip("color:N", title=color_title), alt.Tooltip("x:Q", title=x_title, format=".3~g"),
                     alt.Tooltip("density:Q", title=y_title, format=".3~g")],
        ).properties(width=width, height=ROW_HEIGHT)
        if facet_column:
            chart = chart.facet(column=alt.Column("column:N", sort=orders["column"], header=alt.Header(
                labels=index == 0), title=facet_column if index == 0 else None))
            if not shared_y:
                chart = chart.resolve_scale(y="independent")
        rows.append(chart.properties(title=alt.Title(row, fontSize=12, anchor="start")) if facet_row else chart)
    seeds = int(data["seed"].nunique())
    notes = [f"Densité = part des valeurs par unité de {x_title.lower()}"
             + (f", moyenne de {seeds} graines" if seeds > 1 else "")
             + (" ; axes communs le long d'une ligne." if shared_y else " ; axe des densités propre à chaque panneau.")]
    chart = alt.vconcat(*rows).resolve_scale(x="independent", y="independent") if len(rows) > 1 else rows[0]
    return finish(chart, builder, title, subtitle, notes)


# -- regression diagnostics ----------------------------------------------------------------------
def _trend(group: pd.DataFrame) -> pd.DataFrame:
    """Median of y per quantile bin of x (bins of equal counts: the sparse ends are not noise)."""
    bins = pd.qcut(group["x"].rank(method="first"), q=min(TREND_BINS, len(group)), labels=False)
    return group.groupby(bins)[["x", "y"]].median()


def scatter(frame, *, x, y, color=None, facet=None, diagonal=False, trend=False, sample=4000, title,
            subtitle=None, x_title=None, y_title=None, color_title=None):
    """Points of y against x (predicted vs actual, residuals vs a variable): ``diagonal`` adds the
    y = x line on square axes; ``trend`` the median of y per bin of x, computed on every point;
    at most ``sample`` points are drawn (a seeded sample, said in the subtitle)."""
    builder = "scatter"
    check(frame, builder, x, y, color, facet)
    if not isinstance(sample, int) or sample < 1:
        raise ValueError(f"charts.scatter: sample must be a number of points >= 1, got {sample!r}")
    data = pd.DataFrame({"x": numbers(frame[x]), "y": numbers(frame[y])}, index=frame.index)
    orders = roles(frame, data, color=color, facet=facet)
    missing, data = int(data[["x", "y"]].isna().any(axis=1).sum()), data.dropna(subset=["x", "y"])
    if data.empty:
        raise ValueError(f"charts.scatter: no row has finite {x!r} and {y!r}")
    shown = data
    if len(data) > sample:  # seeded, and kept in the frame's order: a sorted frame draws its last rows on top
        shown = data.iloc[np.sort(np.random.default_rng(0).choice(len(data), sample, replace=False))]
    table = [shown.assign(kind="point")]
    notes = [f"Échantillon de {fr.num(len(shown))} points sur {fr.num(len(data))} (tirage fixe)"
             if len(shown) < len(data) else f"{fr.num(len(data))} points"]
    if missing:
        notes.append(f"{fr.num(missing)} lignes non finies écartées")
    x_title, y_title, color_title = title_of(x, x_title), title_of(y, y_title), title_of(color, color_title)
    printable(builder, x_title, y_title, color_title)
    if trend:
        groups = data.groupby(["color", "facet"], sort=False)
        table.append(groups.apply(_trend, include_groups=False).reset_index(level=[0, 1]).assign(kind="trend"))
        notes.append(f"trait : médiane par tranche de {x_title.lower()} ({TREND_BINS} tranches de même effectif)")
    scale = alt.Scale(zero=False)
    if diagonal:
        low, high = float(data[["x", "y"]].min().min()), float(data[["x", "y"]].max().max())
        scale = alt.Scale(domain=[low, high], nice=False)
        table.append(pd.DataFrame({"facet": orders["facet"], "x": low, "y": low, "x2": high, "y2": high,
                                   "kind": "diagonal"}))
        notes.append("tirets : y = x")
    table = limit_rows(pd.concat(table, ignore_index=True), builder)

    X, Y = alt.X("x:Q", title=x_title, scale=scale), alt.Y("y:Q", title=y_title, scale=scale)
    colour = color_channel(orders["color"], color_title, symbol="circle") if color else alt.value(OKABE_ITO[0])
    tips = [alt.Tooltip("x:Q", title=x_title, format=".3~g"), alt.Tooltip("y:Q", title=y_title, format=".3~g")]
    chart = alt.layer(
        only("point").mark_circle(size=12, opacity=0.35).encode(x=X, y=Y, color=colour, tooltip=tips),
        only("trend").mark_line(strokeWidth=2.5).encode(
            x=X, y=Y, color=colour if color else alt.value(OKABE_ITO[3]), tooltip=tips),
        only("diagonal").mark_rule(color="#333", strokeDash=[5, 4]).encode(x=X, y=Y, x2="x2:Q", y2="y2:Q"),
        data=table)
    if facet:
        chart = facet_of(chart, orders["facet"], None, None if diagonal else 200)
    else:
        side = 400 if diagonal else PLOT_WIDTH
        chart = chart.properties(width=side, height=400 if diagonal else 280)
    return finish(chart, builder, title, subtitle, [" ; ".join(notes) + "."])


# -- a dataset's columns -------------------------------------------------------------------------
def distributions(frame, columns, *, bins=30, columns_per_row=4, title, subtitle=None):
    """One small histogram per column, wrapped into rows that fit the page; each has its own axes."""
    builder = "distributions"
    columns = [columns] if isinstance(columns, str) else list(columns)
    check(frame, builder, *columns)
    parts = []
    for column in columns:
        values = numbers(frame[column]).dropna().to_numpy()
        if not values.size:
            raise ValueError(f"charts.distributions: column {column!r} has no finite number")
        counts, edges = np.histogram(values, bins=bins)
        parts.append(pd.DataFrame({"variable": column, "left": edges[:-1],
                                   "right": edges[1:], "count": counts}))
    table = limit_rows(pd.concat(parts, ignore_index=True), builder)
    wrap, width = panels(len(columns), axis_px=0, widest=columns_per_row)
    width -= 50  # each panel draws its own count axis
    chart = alt.Chart(table).mark_bar(color=OKABE_ITO[0], stroke="white", strokeWidth=0.3).encode(
        x=alt.X("left:Q", title=None, scale=alt.Scale(zero=False, nice=False),
                axis=alt.Axis(tickCount=3, labelOverlap=True, labelFlush=True)),
        x2="right:Q",
        y=alt.Y("count:Q", title=None, axis=alt.Axis(tickCount=3)), y2=alt.datum(0),
        tooltip=[alt.Tooltip("variable:N", title="variable"), alt.Tooltip("left:Q", title="de", format=".4~g"),
                 alt.Tooltip("right:Q", title="à", format=".4~g"), alt.Tooltip("count:Q", title="effectif")],
    ).properties(width=width, height=ROW_HEIGHT).facet(
        facet=alt.Facet("variable:N", title=None, sort=columns), columns=wrap,
    ).resolve_scale(x="independent", y="independent")
    notes = [f"Effectif par intervalle ({bins} intervalles de même largeur par variable)."]
    return finish(chart, builder, title, subtitle, notes)
