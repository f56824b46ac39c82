"""Training curves: a metric over the epochs, and its final value against a hyper-parameter."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import NamedTuple

import altair as alt
import numpy as np
import pandas as pd

from labkit.charts._checks import MAX_ROWS, check_grid, limit_rows, pick, require
from labkit.charts._french import (
    SPLIT_TITLES,
    article,
    field_title,
    labels,
    lower_first,
    metric_title,
    short,
)
from labkit.charts._renderer import OKABE_ITO, PLOT_HEIGHT, PLOT_WIDTH
from labkit.charts._seeds import (
    diverged_runs,
    divergence_notes,
    finite_values,
    run_ids,
    seed_stats,
    seeds_note,
)
from labkit.charts._style import (
    config_color,
    epoch_axis,
    fade,
    finish,
    formats,
    highlight,
    spread_tooltips,
)

__all__ = ["learning_curves", "final_metric"]

_DASHES = {"train": [6, 3], "validation": [1, 0], "test": [2, 2]}


# --------------------------------------------------------------------------- learning curves


def learning_curves(
    frame: pd.DataFrame,
    color: str,
    metric: str = "accuracy",
    splits: Sequence[str] = ("train", "validation"),
    log_y: bool = False,
    facet: str | None = None,
    title: str | None = None,
    color_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Metric against epoch: one colour per configuration, the mean over seeds as a line
    and the seed min–max as a band; train and validation told apart by the stroke dash.

    ``frame`` is a sweep history (``seed``, ``epoch``, ``split``, ``metric``, ``value``,
    grid columns).  Every grid column that varies must be ``color`` or ``facet``:
    averaging over it silently would mix configurations.  Test rows (final epoch only)
    are drawn as diamonds.  With ``log_y`` the y scale is logarithmic (losses).
    """
    require(frame, [color, facet, "seed", "epoch", "split", "metric", "value"], "learning_curves")
    legend_title = color_title or field_title(color)
    data, diverged = _curve_rows(frame, color, facet, metric, splits, log_y)
    data, order, facet_order = _label_rows(data, color, facet)
    suffix, notes = _divergence_legend(data, diverged, facet, legend_title)
    seeds = int(data.groupby(["config", *_facet_column(facet)])["run"].nunique().max())
    # Diverged configurations say so in the legend: "1 (divergé : 2/3)".
    data["config"] = data["config"].map(lambda c: suffix.get(c, c))
    order = [suffix.get(c, c) for c in order]
    table, thin_note = _curve_table(data, diverged, facet)

    numeric = pd.api.types.is_numeric_dtype(frame[color])
    marks = _curve_marks(table, order, numeric, metric, splits, log_y, legend_title)
    chart = _curve_panels(alt.layer(*_curve_layers(marks), data=table), facet, facet_order)
    subtitle = [_reading_note(seeds, splits), *notes, *thin_note]
    default = f"{metric_title(metric)} au fil des époques, par {lower_first(legend_title)}"
    return finish(chart, title or default, subtitle, description)


def _facet_column(facet: str | None) -> list[str]:
    """The panel column to group by, if the chart has panels."""
    return ["facet"] if facet else []


def _curve_rows(frame, color, facet, metric, splits, log_y) -> tuple[pd.DataFrame, set[str]]:
    """The rows to draw (one metric, the chosen splits) and the diverged runs."""
    builder = "learning_curves"
    _, data, diverged = _metric_rows(
        frame, [c for c in (color, facet) if c], metric, splits, builder
    )
    check_grid(data.drop(columns="run"), {color, facet}, builder)
    if log_y and (data["value"] <= 0).any():
        raise ValueError(f"{builder}: log_y=True but {metric} has values <= 0")
    return data, diverged


def _metric_rows(frame, config_cols, metric, splits, builder):
    """Every row with its run id, the rows of one metric on the chosen splits (non-finite
    values as NaN), and the diverged runs.

    Runs are identified and checked for divergence on the whole frame first: a run
    whose loss blew up is diverged on its accuracy curve too.
    """
    everything = frame.assign(run=run_ids(frame, config_cols))
    diverged = diverged_runs(everything, everything["run"])
    rows = pick(everything, "metric", metric, builder)
    rows = pick(rows, "split", splits, builder).copy()
    rows["value"] = finite_values(rows["value"])
    return everything, rows, diverged


def _label_rows(data, color, facet) -> tuple[pd.DataFrame, list[str], list[str]]:
    """French labels for colours, panels and splits, with the legend orders of the first two."""
    data["config"], order = labels(data, color)
    facet_order = []
    if facet:
        data["facet"], facet_order = labels(data, facet)
    data["split_fr"] = data["split"].map(lambda s: SPLIT_TITLES.get(s, s))
    return data, order, facet_order


def _divergence_legend(data, diverged, facet, legend_title) -> tuple[dict[str, str], list[str]]:
    """Legend suffix per configuration and subtitle lines counting the diverged seeds.

    With panels the subtitle also names the panel, since a configuration may diverge
    in one panel only; the legend, shared by the panels, counts them all.
    """
    runs = data.groupby("run", sort=False).agg(label=("config", "first")).reset_index()
    runs["diverged"] = runs["run"].isin(diverged)
    suffix, notes = divergence_notes(runs, legend_title)
    if facet:
        panel = data.groupby("run", sort=False)["facet"].first().reindex(runs["run"]).to_numpy()
        where = runs["label"] + f", {lower_first(field_title(facet))} = " + panel
        _, notes = divergence_notes(runs.assign(label=where), legend_title)
    return suffix, notes


def _curve_table(data, diverged, facet) -> tuple[pd.DataFrame, list[str]]:
    """One table for every layer: mean and min–max per epoch, plus a row per diverged run.

    The ``kind`` column tells the layers apart (curve, test, diverged), so the page
    embeds the data once.
    """
    facet_col = _facet_column(facet)
    agg = seed_stats(data, ["config", *facet_col, "split", "split_fr", "epoch"])
    agg = agg[agg["n"] > 0]  # an epoch where every seed is non-finite has nothing to draw
    agg = agg.assign(kind=np.where(agg["split"] == "test", "test", "curve"))
    crosses = _last_finite(
        data[data["run"].isin(diverged)], ["run", "config", *facet_col, "split", "split_fr"]
    )
    agg, thin_note = _thin_epochs(agg, len(crosses))
    table = pd.concat([agg, crosses.drop(columns="run").assign(kind="diverged")], ignore_index=True)
    limit_rows(len(table), "learning_curves")
    return table, thin_note


def _last_finite(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per diverged run (and split): the epoch and value of its last finite point.

    A run with no finite value keeps a row with ``mean`` NaN: it is still in the
    chart data (and named in the legend), with nothing to draw.
    """
    if rows.empty:
        return pd.DataFrame(columns=[*by, "epoch", "mean", "diverged_at"])
    ordered = rows.sort_values("epoch")
    stops = ordered.groupby(by, sort=False)["epoch"].max().rename("diverged_at")
    finite = ordered.dropna(subset=["value"]).groupby(by, sort=False).tail(1)
    out = stops.reset_index().merge(finite[[*by, "epoch", "value"]], on=by, how="left")
    out["epoch"] = out["epoch"].fillna(out["diverged_at"])
    return out.rename(columns={"value": "mean"})


def _thin_epochs(agg: pd.DataFrame, extra_rows: int) -> tuple[pd.DataFrame, list[str]]:
    """Keep every k-th epoch (and the last) so the chart stays under MAX_ROWS rows."""
    if len(agg) + extra_rows <= MAX_ROWS:
        return agg, []
    step = math.ceil((len(agg) + extra_rows) / MAX_ROWS)
    last = agg["epoch"].max()
    keep = ((agg["epoch"] - 1) % step == 0) | (agg["epoch"] == last)
    return agg[keep], [f"Une époque sur {step} affichée (taille de la page)."]


class _CurveMarks(NamedTuple):
    """What the layers of a learning-curve chart share, so that they draw one legend."""

    x: alt.X
    y: alt.Y  # the mean, with the axis format
    band_y: alt.Y  # the band's lower edge: same title and scale
    colour: alt.Color
    picked: tuple  # highlight(): params, predicate
    dash: alt.StrokeDash
    tooltip: list
    legend_title: str
    tip_format: str


def _curve_marks(table, order, numeric, metric, splits, log_y, legend_title) -> _CurveMarks:
    """Axes, colour, dash and tooltip; the y title names the split when only one is drawn."""
    axis_format, tip_format = formats(metric, table[["mean", "low", "high"]].to_numpy(float))
    y_scale = alt.Scale(type="log", nice=False) if log_y else alt.Scale(zero=False)
    curve_splits = [s for s in splits if s != "test"]
    y_title = metric_title(
        metric, curve_splits[0] if len(curve_splits) == 1 and "test" not in splits else None
    )
    return _CurveMarks(
        x=epoch_axis(),
        y=alt.Y("mean:Q", title=y_title, scale=y_scale, axis=alt.Axis(format=axis_format)),
        band_y=alt.Y("low:Q", title=y_title, scale=y_scale),
        colour=config_color(order, numeric, legend_title),
        picked=highlight(order),
        dash=_split_dash(curve_splits),
        tooltip=[
            alt.Tooltip("config:N", title=legend_title),
            alt.Tooltip("split_fr:N", title="Jeu"),
            alt.Tooltip("epoch:Q", title="Époque"),
            *spread_tooltips("Moyenne", tip_format, "Graines finies"),
        ],
        legend_title=legend_title,
        tip_format=tip_format,
    )


def _split_dash(curve_splits: list[str]) -> alt.StrokeDash:
    """Dashed train, solid validation; the dash legend only when both are drawn.

    Test rows are left out: a single point at the last epoch, drawn as a diamond.
    """
    split_order = [SPLIT_TITLES.get(s, s) for s in curve_splits]
    return alt.StrokeDash(
        "split_fr:N",
        title="Jeu",
        sort=split_order,
        scale=alt.Scale(domain=split_order, range=[_DASHES.get(s, [1, 0]) for s in curve_splits]),
        legend=alt.Legend(symbolStrokeColor="#333") if len(curve_splits) > 1 else None,
    )


def _only(kind: str) -> alt.Chart:
    """A layer that draws the shared table's rows of one ``kind``."""
    return alt.Chart().transform_filter(alt.datum.kind == kind)


def _curve_layers(marks: _CurveMarks) -> list:
    """Band, line, hover points, test diamonds and divergence crosses, bottom to top."""
    return [
        _seed_band(marks),
        _mean_line(marks),
        _hover_points(marks),
        _test_diamonds(marks),
        _divergence_crosses(marks),
    ]


def _seed_band(marks: _CurveMarks):
    """The seeds' min–max, faint: the spread reads without hiding the lines."""
    _, predicate = marks.picked
    return (
        _only("curve")
        .mark_area()
        .encode(
            x=marks.x,
            y=marks.band_y,
            y2="high:Q",
            color=marks.colour,
            detail="split_fr:N",
            opacity=fade(predicate, 0.16, 0.03),
        )
    )


def _mean_line(marks: _CurveMarks):
    """The mean over seeds, dashed by split; it carries the legend selection."""
    params, predicate = marks.picked
    return (
        _only("curve")
        .mark_line()
        .encode(
            x=marks.x,
            y=marks.y,
            color=marks.colour,
            strokeDash=marks.dash,
            opacity=fade(predicate),
        )
        .add_params(*params)
    )


def _hover_points(marks: _CurveMarks):
    """Invisible points that light up under the pointer and give the tooltip (a line has none)."""
    hover = alt.selection_point(
        name="hover", on="pointerover", nearest=True, empty=False, clear="pointerout"
    )
    return (
        _only("curve")
        .mark_point(filled=True, size=40)
        .encode(
            x=marks.x,
            y="mean:Q",
            color=marks.colour,
            tooltip=marks.tooltip,
            opacity=alt.when(hover).then(alt.value(1)).otherwise(alt.value(0)),
        )
        .add_params(hover)
    )


def _test_diamonds(marks: _CurveMarks):
    """The test score, measured once at the end: a diamond, not a line."""
    _, predicate = marks.picked
    return (
        _only("test")
        .mark_point(shape="diamond", filled=True, size=70)
        .encode(
            x=marks.x,
            y="mean:Q",
            color=marks.colour,
            opacity=fade(predicate),
            tooltip=marks.tooltip,
        )
    )


def _divergence_crosses(marks: _CurveMarks):
    """A cross at each diverged run's last finite value: where and when it was lost."""
    _, predicate = marks.picked
    return (
        _only("diverged")
        .mark_point(shape="cross", filled=True, size=120, strokeWidth=0)
        .encode(
            x=marks.x,
            y="mean:Q",
            color=marks.colour,
            opacity=fade(predicate),
            tooltip=[
                alt.Tooltip("config:N", title=marks.legend_title),
                alt.Tooltip("split_fr:N", title="Jeu"),
                alt.Tooltip("diverged_at:Q", title="Divergé à l'époque"),
                alt.Tooltip("epoch:Q", title="Dernière époque finie"),
                alt.Tooltip("mean:Q", title="Dernière valeur finie", format=marks.tip_format),
            ],
        )
    )


def _curve_panels(layered, facet, facet_order):
    """One plot, or one narrower panel per ``facet`` value side by side."""
    if not facet:
        return layered.properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    width = max(170, (PLOT_WIDTH - 20 * len(facet_order)) // len(facet_order))
    return layered.properties(width=width, height=230).facet(
        column=alt.Facet("facet:N", title=field_title(facet), sort=facet_order),
    )


def _reading_note(seeds: int, splits: Sequence[str]) -> str:
    """The subtitle's key: what the line, the band, the dashes and the diamonds are."""
    return (
        seeds_note(seeds)
        + (
            " Tirets : entraînement ; trait plein : validation."
            if {"train", "validation"} <= set(splits)
            else ""
        )
        + (" Losanges : test, à la dernière époque." if "test" in splits else "")
    )


# --------------------------------------------------------------------------- final metric


def final_metric(
    frame: pd.DataFrame,
    param: str,
    metric: str = "accuracy",
    split: str = "validation",
    log_x: bool = False,
    color: str | None = None,
    title: str | None = None,
    x_title: str | None = None,
    color_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Final-epoch metric against a hyper-parameter: one point per seed, the mean as a line.

    With ``log_x`` (learning rate, λ) the x axis is logarithmic and ticks sit on the
    grid values.  A zero (λ = 0, no penalty) has no place on a log axis: it is drawn as
    a dashed horizontal reference line at its mean, labelled "λ = 0" — the baseline the
    other values are compared with, which reads better than a symlog axis whose
    spacing near 0 is arbitrary.  A diverged run is a cross at its last finite value.
    """
    builder = "final_metric"
    require(frame, [param, color, "seed", "epoch", "split", "metric", "value"], builder)
    check_grid(frame, {param, color}, builder)
    name = x_title or field_title(param)
    runs, order, x_order, notes = _labelled_runs(frame, param, color, metric, split, name)
    means = seed_stats(runs[~runs["diverged"]], ["config", param, "x_label"])
    means = means[means["n"] > 0]
    limit_rows(len(runs) + len(means), builder)

    numeric_x = pd.api.types.is_numeric_dtype(runs[param]) and not pd.api.types.is_bool_dtype(
        runs[param]
    )
    log_axis = numeric_x and log_x
    x, on_axis = _param_axis(runs, param, name, x_order, numeric_x, log_x)
    marks = _final_marks(frame, x, color, order, color_title, metric, split, runs, name)
    layers = [_means_line(means, param, log_axis, marks), _seed_points(runs, on_axis, param, marks)]
    subtitle = ["Points : une graine ; trait : moyenne des graines."]
    if log_axis and (means[param] <= 0).any():
        layers += _zero_reference(means[means[param] <= 0], marks)
        subtitle.append(
            f"Pointillés : {short(name)} = 0, qui n'a pas de place sur l'axe logarithmique."
        )
    subtitle += notes
    chart = alt.layer(*layers).properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    default = f"{metric_title(metric, split)} selon {article(name)}"
    return finish(chart, title or default, subtitle, description)


def _final_per_run(frame, metric, split, config_cols) -> pd.DataFrame:
    """One row per run: its value at the last epoch, or its last finite value if it diverged.

    Runs are listed from the whole frame, so a diverged run with no row for this
    metric/split (e.g. no test row) still appears, with ``value`` NaN.
    """
    everything, rows, diverged = _metric_rows(frame, config_cols, metric, split, "final_metric")
    runs = everything.groupby("run", sort=False)[[*config_cols, "seed"]].first()
    rows = rows.dropna(subset=["value"]).sort_values("epoch").groupby("run").tail(1)
    out = runs.join(rows.set_index("run")[["epoch", "value"]], how="left").reset_index()
    out["diverged"] = out["run"].isin(diverged)
    return out


def _labelled_runs(frame, param, color, metric, split, name):
    """The runs' final values with French labels, a status for the point shape, and
    the divergence notes, counted per x value (and colour): that is where the crosses sit."""
    runs = _final_per_run(frame, metric, split, [c for c in (param, color) if c])
    runs["config"], order = labels(runs, color)
    runs["x_label"], x_order = labels(runs, param)
    where = runs["x_label"] + (" / " + runs["config"] if color else "")
    _, notes = divergence_notes(runs.assign(label=where), name)
    runs["status"] = np.where(runs["diverged"], "divergé (dernière valeur finie)", "graine")
    return runs, order, x_order, notes


def _param_axis(runs, param, name, x_order, numeric_x, log_x) -> tuple[alt.X, pd.Series]:
    """The hyper-parameter axis and which runs sit on it (a zero cannot on a log axis).

    Numbers get a quantitative axis with ticks on the grid values (when few enough
    to read); other values (activation names) are evenly spaced points.
    """
    if not numeric_x:
        x = alt.X(
            "x_label:N",
            title=name,
            sort=x_order,
            scale=alt.Scale(type="point", padding=0.5),
            axis=alt.Axis(labelAngle=0),
        )
        return x, pd.Series(True, index=runs.index)
    on_axis = runs[param] > 0 if log_x else pd.Series(True, index=runs.index)
    ticks = sorted(runs.loc[on_axis, param].unique())
    x_axis = (
        alt.Axis(values=ticks, format="~g", labelOverlap=True)
        if len(ticks) <= 12
        else alt.Axis(format="~g")
    )
    return alt.X(f"{param}:Q", title=name, scale=_padded_scale(ticks, log_x), axis=x_axis), on_axis


def _padded_scale(values, log: bool) -> alt.Scale:
    """A scale whose domain reaches 5 % past the extreme values: no point sits on the plot's edge."""
    low, high = float(min(values)), float(max(values))
    if log:
        ratio = (high / low) ** 0.05 if high > low else 2.0
        return alt.Scale(type="log", domain=[low / ratio, high * ratio], nice=False)
    margin = 0.05 * (high - low) or max(abs(high) * 0.1, 1.0)
    return alt.Scale(domain=[low - margin, high + margin], nice=False, zero=False)


class _FinalMarks(NamedTuple):
    """What the layers of a final-metric chart share."""

    x: alt.X
    colour: object  # alt.Color by configuration, or one fixed colour
    params: list  # the legend selection (none without colours)
    opacity: object
    value_title: str  # 'Exactitude (validation)'
    axis_format: object
    tip_format: str
    name: str  # the hyper-parameter's title
    color_title: str | None


def _final_marks(frame, x, color, order, color_title, metric, split, runs, name) -> _FinalMarks:
    """Colours (one per ``color`` value, with the highlighting legend) and number formats."""
    axis_format, tip_format = formats(metric, runs["value"].to_numpy(float))
    colour, params, opacity = alt.value(OKABE_ITO[0]), [], alt.value(1)
    if color:
        color_title = color_title or field_title(color)
        colour = config_color(order, pd.api.types.is_numeric_dtype(frame[color]), color_title)
        params, predicate = highlight(order)
        opacity = fade(predicate)
    return _FinalMarks(
        x=x,
        colour=colour,
        params=params,
        opacity=opacity,
        value_title=metric_title(metric, split),
        axis_format=axis_format,
        tip_format=tip_format,
        name=name,
        color_title=color_title if color else None,
    )


def _seed_points(runs, on_axis, param, marks: _FinalMarks):
    """One point per seed, a cross for a diverged one (the shape legend appears only then)."""
    tooltip = [
        alt.Tooltip("x_label:N", title=marks.name),
        *([alt.Tooltip("config:N", title=marks.color_title)] if marks.color_title else []),
        alt.Tooltip("seed:Q", title="Graine"),
        alt.Tooltip("value:Q", title=marks.value_title, format=marks.tip_format),
        alt.Tooltip("status:N", title="Statut"),
    ]
    shown = runs.loc[
        on_axis.values, [param, "x_label", "config", "seed", "epoch", "value", "status"]
    ]
    shape = alt.Shape(
        "status:N",
        title=None,
        scale=alt.Scale(
            domain=["graine", "divergé (dernière valeur finie)"], range=["circle", "cross"]
        ),
        legend=alt.Legend(orient="bottom") if runs["diverged"].any() else None,
    )
    y = alt.Y(
        "value:Q",
        title=marks.value_title,
        scale=alt.Scale(zero=False),
        axis=alt.Axis(format=marks.axis_format),
    )
    return (
        alt.Chart(shown)
        .mark_point(size=50)
        .encode(
            x=marks.x,
            y=y,
            color=marks.colour,
            shape=shape,
            opacity=marks.opacity,
            tooltip=tooltip,
        )
        .add_params(*marks.params)
    )


def _mean_tooltip(marks: _FinalMarks) -> list[alt.Tooltip]:
    """The tooltip of a mean over seeds: which value, the mean, how many seeds."""
    return [
        alt.Tooltip("x_label:N", title=marks.name),
        alt.Tooltip("mean:Q", title="Moyenne", format=marks.tip_format),
        alt.Tooltip("n:Q", title="Graines"),
    ]


def _means_line(means, param, log_axis: bool, marks: _FinalMarks):
    """The mean over healthy seeds, joined across the grid (a zero is left to the reference line)."""
    rows = means[(means[param] > 0) if log_axis else np.ones(len(means), bool)]
    return (
        alt.Chart(rows)
        .mark_line(point=alt.OverlayMarkDef(size=30))
        .encode(
            x=marks.x,
            y=alt.Y("mean:Q", title=marks.value_title, axis=alt.Axis(format=marks.axis_format)),
            color=marks.colour,
            opacity=marks.opacity,
            tooltip=_mean_tooltip(marks),
        )
    )


def _zero_reference(rows, marks: _FinalMarks):
    """A dashed line at the mean of the zero setting, labelled at the right edge."""
    rule = (
        alt.Chart(rows)
        .mark_rule(strokeDash=[4, 4], strokeWidth=1.5)
        .encode(
            y="mean:Q",
            color=marks.colour,
            opacity=marks.opacity,
            tooltip=_mean_tooltip(marks),
        )
    )
    fmt = ".1%" if marks.tip_format.endswith("%") else ".3~g"
    label = json.dumps(short(marks.name) + " = 0 : ")
    text = (
        alt.Chart(rows)
        .transform_calculate(label=f"{label} + format(datum.mean, '{fmt}')")
        .mark_text(align="right", baseline="bottom", dx=-2, dy=-3, fontStyle="italic")
        .encode(
            x=alt.value(PLOT_WIDTH),
            y="mean:Q",
            text="label:N",
            color=marks.colour,
            opacity=marks.opacity,
        )
    )
    return [rule, text]
