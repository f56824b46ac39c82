"""The marks' shared look: number formats, colour scales, the legend that highlights, tooltips, titles.

Every builder draws configurations the same way (one colour each, a legend entry
that picks one out and fades the others), so a reader learns it once.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import altair as alt
import numpy as np

from labkit.charts._renderer import OKABE_ITO

__all__ = [
    "DROPDOWN_ABOVE",
    "FADED",
    "SUBTITLE_CHARS",
    "LINE_LEGEND",
    "formats",
    "viridis_scale",
    "color_scale",
    "config_color",
    "highlight",
    "fade",
    "spread_tooltips",
    "epoch_axis",
    "band_and_mean_line",
    "finish",
]

#: Above this many configurations a dropdown helps pick one out.
DROPDOWN_ABOVE = 8
FADED = 0.12
#: Subtitle lines longer than this are wrapped (about 600 px at 12 px).
SUBTITLE_CHARS = 95
# Legend entries drawn as opaque strokes, whatever layer (band, cross) Vega-Lite takes them from.
LINE_LEGEND = alt.Legend(symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3, symbolSize=300)


def formats(metric: str, values=None) -> tuple:
    """Axis and tooltip number formats: percent for accuracy, 4 significant digits otherwise.

    A narrow accuracy range (all within 5 points) gets one decimal on the axis, or
    the ticks would read "97 %" five times.
    """
    if metric != "accuracy":
        return alt.Undefined, ".4~g"
    span = (
        np.nanmax(values) - np.nanmin(values)
        if values is not None and np.isfinite(values).any()
        else 1
    )
    return (".1%" if span < 0.05 else ".0%"), ".2%"


def viridis_scale(order: Sequence[str]) -> alt.Scale:
    """Viridis for ordered values, without its yellow end, which is faint on white."""
    return alt.Scale(domain=list(order), scheme={"name": "viridis", "extent": [0, 0.85]})


def color_scale(order: Sequence[str], numeric: bool) -> alt.Scale:
    """Okabe–Ito for categories; viridis for ordered values (or too many categories)."""
    if numeric and len(order) > 2:
        return viridis_scale(order)
    if len(order) <= len(OKABE_ITO):
        return alt.Scale(domain=list(order), range=OKABE_ITO[: max(len(order), 1)])
    return viridis_scale(order)


def config_color(order, numeric, title):
    """Colour by configuration; every layer passes the same title so Vega-Lite merges one legend."""
    return alt.Color(
        "config:N",
        title=title,
        sort=list(order),
        scale=color_scale(order, numeric),
        legend=LINE_LEGEND,
    )


def highlight(order: Sequence[str], field: str = "config"):
    """Legend-bound selection (click a legend entry) and, above 8 entries, a dropdown too.

    Returns the params and the predicate that is true for the picked entries.
    """
    params = [alt.selection_point(name="legend_pick", fields=[field], bind="legend")]
    if len(order) > DROPDOWN_ABOVE:
        params.append(
            alt.selection_point(
                name="menu_pick",
                fields=[field],
                bind=alt.binding_select(
                    options=[None, *order], labels=["Toutes", *order], name="Configuration : "
                ),
            )
        )
    predicate = params[0] if len(params) == 1 else params[0] & params[1]
    return params, predicate


def fade(predicate, shown=1, hidden=FADED):
    """Opacity ``shown`` where ``predicate`` holds, ``hidden`` elsewhere: the others step back."""
    return alt.when(predicate).then(alt.value(shown)).otherwise(alt.value(hidden))


def spread_tooltips(mean_title: str, fmt: str, count_title: str) -> list[alt.Tooltip]:
    """Tooltip lines for a mean over seeds: the mean, its min and max, and how many went in."""
    return [
        alt.Tooltip("mean:Q", title=mean_title, format=fmt),
        alt.Tooltip("low:Q", title="Min", format=fmt),
        alt.Tooltip("high:Q", title="Max", format=fmt),
        alt.Tooltip("n:Q", title=count_title),
    ]


def epoch_axis(title="Époque") -> alt.X:
    """Epochs are whole numbers: integer ticks, never 2.5."""
    return alt.X("epoch:Q", title=title, axis=alt.Axis(format="d", tickMinStep=1))


def band_and_mean_line(x, y_title, y_scale, colour, picked, tooltip, point_size, **band_mark):
    """The seeds' min–max as a faint band under their mean as a line with points.

    ``picked`` is :func:`highlight`'s (params, predicate): the line carries the
    legend selection, and both layers fade when another entry is picked.
    """
    params, predicate = picked
    base = alt.Chart().encode(x=x)
    band = base.mark_area(**band_mark).encode(
        y=alt.Y("low:Q", title=y_title, scale=y_scale),
        y2="high:Q",
        color=colour,
        opacity=fade(predicate, 0.15, 0.03),
    )
    line = (
        base.mark_line(point=alt.OverlayMarkDef(filled=True, size=point_size))
        .encode(
            y=alt.Y("mean:Q", title=y_title, scale=y_scale, axis=alt.Axis(format="~g")),
            color=colour,
            opacity=fade(predicate),
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    return band, line


def finish(chart, title: str, subtitle: Sequence[str], description: str | None):
    """Title, subtitle lines wrapped to the page width (Vega does not wrap), alt text."""
    lines = [part for line in subtitle for part in textwrap.wrap(line, SUBTITLE_CHARS)]
    heading = alt.Title(title, subtitle=lines) if lines else alt.Title(title)
    return chart.properties(title=heading, description=description or title)
