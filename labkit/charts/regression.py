"""Regression diagnostics: predictions against actual values, and the residuals with their trend."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from labkit.charts._checks import MAX_ROWS, limit_rows, require
from labkit.charts._french import int_fr, labels, lower_first
from labkit.charts._renderer import OKABE_ITO, PLOT_HEIGHT, PLOT_WIDTH
from labkit.charts._style import finish

__all__ = ["predicted_vs_actual", "residuals"]

#: Axis titles of the two columns a residual plot may be drawn against.
_AXIS_TITLES = {"predicted": "Prédiction", "actual": "Valeur réelle"}


# --------------------------------------------------------------------------- shared steps


def _regression_frame(frame, actual, predicted, by, builder, reserve=0):
    """Rename to actual/predicted/model, drop non-finite predictions (counted in a note) and
    sample down to MAX_ROWS − ``reserve`` rows (room for the other layers' rows)."""
    require(frame, [actual, predicted], builder)
    columns = [actual, predicted] + ([by] if by in frame.columns else [])
    data = frame[columns].rename(columns={actual: "actual", predicted: "predicted"}).copy()
    data = data.astype({"actual": float, "predicted": float})
    by = by if by in frame.columns and frame[by].nunique() > 1 else None
    if by:
        data = data.rename(columns={by: "model"})
        data["model"], order = labels(data, "model")
    else:
        data["model"], order = "", [""]
    bad = ~np.isfinite(data["predicted"])
    notes = [f"{int(bad.sum())} prédiction(s) non finie(s) non tracée(s)."] if bad.any() else []
    data = data[~bad]
    data["residual"] = data["actual"] - data["predicted"]
    data, sample_note = _sample(data, "model" if by else None, MAX_ROWS - reserve)
    return data, order, by, notes + sample_note


def _sample(data: pd.DataFrame, by: str | None, limit: int) -> tuple[pd.DataFrame, list[str]]:
    """At most ``limit`` rows, shared evenly between groups; a fixed seed keeps pages stable."""
    if len(data) <= limit:
        return data, []
    groups = data.groupby(by, sort=False) if by else [(None, data)]
    per_group = limit // (data[by].nunique() if by else 1)
    parts = [g.sample(min(len(g), per_group), random_state=0) for _, g in groups]
    out = pd.concat(parts)
    return out, [f"Échantillon de {int_fr(len(out))} points sur {int_fr(len(data))} (tirage fixe)."]


def _point_tooltip(residual_title: str) -> list[alt.Tooltip]:
    """A block group's actual value, its prediction and the residual between them."""
    return [
        alt.Tooltip("actual:Q", title="Réel", format=".3~f"),
        alt.Tooltip("predicted:Q", title="Prédit", format=".3~f"),
        alt.Tooltip("residual:Q", title=residual_title, format="+.3~f"),
    ]


def _reference_rule(**mark) -> alt.Chart:
    """A dark reference rule; aggregated to one row (per panel), so it is drawn once, not once per point."""
    return (
        alt.Chart()
        .transform_aggregate(n="count()")
        .mark_rule(color="#333", strokeWidth=1.2, **mark)
    )


# --------------------------------------------------------------------------- predicted vs actual


def predicted_vs_actual(
    frame: pd.DataFrame,
    actual: str = "actual",
    predicted: str = "predicted",
    by: str = "model",
    title: str | None = None,
    unit: str = "100 k$",
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Predicted against actual values, one small translucent point per block group (4,000
    points stay readable as a density), with the y = x line of a perfect model; one panel
    per ``by`` value (e.g. ``model``) when there are several.  Both axes share one range.
    """
    builder = "predicted_vs_actual"
    data, order, by, notes = _regression_frame(frame, actual, predicted, by, builder)
    low, high = _shared_domain(data)
    scale = alt.Scale(domain=[low, high], nice=False)
    points = (
        alt.Chart()
        .mark_circle(size=10, opacity=0.3, color=OKABE_ITO[0])
        .encode(
            x=alt.X(
                "actual:Q",
                title=f"{_AXIS_TITLES['actual']} ({unit})",
                scale=scale,
                axis=alt.Axis(format="~g"),
            ),
            y=alt.Y(
                "predicted:Q",
                title=f"{_AXIS_TITLES['predicted']} ({unit})",
                scale=scale,
                axis=alt.Axis(format="~g"),
            ),
            tooltip=_point_tooltip("Réel − prédit"),
        )
    )
    diagonal = _reference_rule(strokeDash=[5, 4]).encode(
        x=alt.datum(low), y=alt.datum(low), x2=alt.datum(high), y2=alt.datum(high)
    )
    chart = _square_panels(alt.layer(points, diagonal, data=data), by, order, 360)
    subtitle = [f"{int_fr(len(data))} points ; tirets : prédiction parfaite (y = x).", *notes]
    return finish(
        chart, title or "Prédiction en fonction de la valeur réelle", subtitle, description
    )


def _shared_domain(data) -> list[float]:
    """One range for both axes, to the half unit, so the diagonal is the square's diagonal."""
    low = float(min(data["actual"].min(), data["predicted"].min()))
    high = float(max(data["actual"].max(), data["predicted"].max()))
    return [math.floor(low * 2) / 2, math.ceil(high * 2) / 2]


def _square_panels(chart, by, order, size):
    """Square plots (a 45° diagonal must look like one), three a row at most."""
    if not by:
        return chart.properties(width=size, height=size)
    columns = min(len(order), 3)
    side = max(180, (PLOT_WIDTH + 100 - 25 * columns) // columns)
    return chart.properties(width=side, height=side).facet(
        facet=alt.Facet("model:N", title=None, sort=order, header=alt.Header(labelFontSize=13)),
        columns=columns,
    )


# --------------------------------------------------------------------------- residuals


def residuals(
    frame: pd.DataFrame,
    actual: str = "actual",
    predicted: str = "predicted",
    against: str = "predicted",
    by: str = "model",
    bins: int = 20,
    title: str | None = None,
    unit: str = "100 k$",
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Residual (actual − predicted) against the prediction (or the actual value), with a
    zero line and the mean residual per quantile bin — a trend the cloud alone hides
    (e.g. the targets capped at 5.00001 pull residuals up at the right).
    """
    builder = "residuals"
    if against not in ("predicted", "actual"):
        raise ValueError(f"{builder}: against must be 'predicted' or 'actual', got {against!r}")
    # The trend's rows (one per bin and panel) come out of the points' row budget.
    reserve = bins * max(frame[by].nunique() if by in frame else 1, 1)
    data, order, by, notes = _regression_frame(frame, actual, predicted, by, builder, reserve)
    table = _with_trend(data, against, bins)
    limit_rows(len(table), builder)
    x_title = f"{_AXIS_TITLES[against]} ({unit})"
    layered = alt.layer(
        _residual_points(against, x_title, unit),
        _reference_rule().encode(y=alt.datum(0)),
        _trend_line(against, x_title),
        data=table,
    )
    against_fr = lower_first(_AXIS_TITLES[against])
    subtitle = [
        f"Orange : résidu moyen par tranche de {against_fr} ({bins} tranches de même effectif).",
        *notes,
    ]
    default = f"Résidus en fonction de la {against_fr}"
    return finish(_residual_panels(layered, by, order), title or default, subtitle, description)


def _with_trend(data, against, bins) -> pd.DataFrame:
    """The points plus, per panel, the mean residual in each quantile bin of ``against``.

    Quantile bins hold the same number of points, so sparse ends are not one noisy bin.
    """
    data["bin"] = data.groupby("model")[against].transform(
        lambda s: pd.qcut(s.rank(method="first"), q=min(bins, len(s)), labels=False)
    )
    trend = (
        data.groupby(["model", "bin"])
        .agg(**{against: (against, "mean"), "residual": ("residual", "mean")})
        .reset_index()
    )
    return pd.concat([data.assign(kind="point"), trend.assign(kind="trend")], ignore_index=True)


def _residual_points(against, x_title, unit):
    """The cloud of residuals, translucent: thousands of points read as a density."""
    return (
        alt.Chart()
        .transform_filter(alt.datum.kind == "point")
        .mark_circle(size=10, opacity=0.25, color=OKABE_ITO[0])
        .encode(
            x=alt.X(
                f"{against}:Q",
                title=x_title,
                scale=alt.Scale(zero=False),
                axis=alt.Axis(format="~g"),
            ),
            y=alt.Y(
                "residual:Q", title=f"Résidu : réel − prédit ({unit})", axis=alt.Axis(format="~g")
            ),
            tooltip=_point_tooltip("Résidu"),
        )
    )


def _trend_line(against, x_title):
    """The mean residual per bin, in orange over the blue cloud."""
    return (
        alt.Chart()
        .transform_filter(alt.datum.kind == "trend")
        .mark_line(
            color=OKABE_ITO[3],
            strokeWidth=2.5,
            point=alt.OverlayMarkDef(color=OKABE_ITO[3], size=20),
        )
        .encode(
            x=f"{against}:Q",
            y="residual:Q",
            tooltip=[
                alt.Tooltip(
                    f"{against}:Q", title=f"{x_title} (moyenne de la tranche)", format=".3~f"
                ),
                alt.Tooltip("residual:Q", title="Résidu moyen", format="+.3~f"),
            ],
        )
    )


def _residual_panels(layered, by, order):
    """One wide plot, or up to three panels a row, one per ``by`` value."""
    if not by:
        return layered.properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    columns = min(len(order), 3)
    return layered.properties(width=max(180, (PLOT_WIDTH + 100) // columns - 25), height=220).facet(
        facet=alt.Facet("model:N", title=None, sort=order), columns=columns
    )
