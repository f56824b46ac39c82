"""What every builder shares: checked inputs, French labels for values, the axes, colour and
dash channels, the panel layout that fits the page, and titles free of website-only words."""

from __future__ import annotations

import json
import math
import textwrap

import altair as alt
import numpy as np
import pandas as pd

from labkit import fr
from labkit.charts._output import MAX_WIDTH, OKABE_ITO

#: The widest plot area: with a y axis and paddings a chart stays within MAX_WIDTH.
PLOT_WIDTH = MAX_WIDTH - 100
PLOT_HEIGHT = 280
#: Most rows a chart embeds in its page.
MAX_ROWS = 5000
#: Words (stems) that only make sense with a pointer; the PDF prints titles and legends.
#: The book's checks (tools/bookcheck.py) read the same list for the prose.
WEBSITE_ONLY = ("survol", "molette", "cliqu", "zoom", "souris")
#: Titles of the columns labkit's frames have (tidy tables, ``Sweep.final``), French names of their values.
TITLES = {"epoch": "Époque", "split": "Jeu", "seed": "Graine", "layer": "Couche", "layer_name": "Couche",
          "quantity": "Grandeur", "stat": "Statistique", "metric": "Mesure", "value": "Valeur",
          "bin_left": "Poids", "accuracy": "Exactitude", "loss": "Perte", "crossentropy": "Entropie croisée"}
WORDS = {"train": "entraînement", "validation": "validation", "test": "test", "std": "écart type",
         "mean": "moyenne", "activation": "activations", "gradient": "gradients",
         "weight_gradient": "gradients des poids"}
DASHES = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3]]


# -- inputs --------------------------------------------------------------------------------------
def check(frame, builder: str, *columns) -> None:
    """A non-empty DataFrame with these columns (``None`` for an option not used)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"charts.{builder}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(f"charts.{builder}: no column {missing[0]!r} in the frame; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"charts.{builder}: the frame is empty (filtered to nothing?)")


def numbers(values: pd.Series) -> pd.Series:
    """Floats, with ±inf as NaN: a mean or a min over seeds then skips them."""
    out = pd.to_numeric(values, errors="coerce").astype(float)
    return out.where(np.isfinite(out))


def roles(frame: pd.DataFrame, data: pd.DataFrame, **columns) -> dict[str, list[str]]:
    """Label columns named by role (``color``, ``facet``…) in ``data`` (``""`` when unused); their orders."""
    orders = {}
    for role, column in columns.items():
        data[role], orders[role] = labelled(frame, column) if column else ("", [""])
    return orders


def only(kind: str) -> alt.Chart:
    """A layer drawing the rows of one kind from the chart's single table."""
    return alt.Chart().transform_filter(alt.datum.kind == kind)


def refuse_mixed(data: pd.DataFrame, keys: list[str], builder: str, shown: dict, measured=()) -> None:
    """Each (keys) group holds one row: a second one means a column the chart does not show
    (a metric, a split, a grid setting) varies, and its values would be averaged together."""
    keys = list(dict.fromkeys(keys))  # colour may be the seed itself
    repeated = data.duplicated(keys, keep=False)
    if not repeated.any():
        return
    rows = data[repeated]
    hidden = [c for c in rows.columns if c not in (*keys, *shown.values(), *measured, "key", "diverged")
              and not c.startswith("_") and rows.groupby(keys, dropna=False)[c].nunique().max() > 1]
    if not hidden:
        raise ValueError(f"charts.{builder}: the frame repeats rows for the same {', '.join(keys)}; "
                         "drop the copies (frame.drop_duplicates())")
    column = hidden[0]
    values = ", ".join(map(str, pd.unique(rows[column])[:4]))
    raise ValueError(f"charts.{builder}: column {column!r} takes several values ({values}) for the same "
                     f"{', '.join(keys)}, and the chart would average them; filter the frame to one of them, "
                     f"or pass {column!r} as one of {', '.join(f'{k}=' for k in shown)}")


def limit_rows(table: pd.DataFrame, builder: str) -> pd.DataFrame:
    if len(table) > MAX_ROWS:
        raise ValueError(f"charts.{builder}: {len(table)} rows to embed in the page, more than {MAX_ROWS}; "
                         "filter the frame (fewer epochs, configurations or points)")
    return table


# -- French labels -------------------------------------------------------------------------------
def number_labels(values) -> list[str]:
    """French labels of exact values, one format for a whole axis: ``0,001 · 0,3 · 1 · 3``, or
    powers of ten for all as soon as one value needs it: ``0 · 10⁻⁵ · 3·10⁻⁴ · 10⁻²``."""
    values = [float(v) for v in values]
    tiny = any(v and not 1e-3 <= abs(v) < 1e6 for v in values if math.isfinite(v))
    return [fr.MISSING if not math.isfinite(v) else fr.power_of_ten(v) if tiny and v else fr.exact(v) for v in values]


def labelled(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str]]:
    """Each row's label for ``column`` and the labels in data order (the order of the grid)."""
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=False)
    values = pd.Series(uniques)
    if pd.api.types.is_bool_dtype(values):
        names = ["oui" if v else "non" for v in values]
    elif pd.api.types.is_integer_dtype(values):
        names = [fr.num(int(v)) for v in values]
    elif pd.api.types.is_float_dtype(values):
        names = number_labels(values)
    else:
        names = [fr.MISSING if v is None or v != v else WORDS.get(v, str(v)) for v in values]
    return np.asarray(names, dtype=object)[codes], list(dict.fromkeys(names))


def title_of(column: str | None, given: str | None) -> str | None:
    return given if given is not None else TITLES.get(column, column)


# -- axes and channels ---------------------------------------------------------------------------
def x_axis(values) -> alt.Axis:
    """A measured x (epochs, layers): a tick at each value when they are few, else whole steps
    for whole numbers, so an axis never reads 1,0 · 1,5 · 2,0 for layers 1 and 2."""
    values = sorted(pd.unique(pd.Series(values).dropna()))
    if len(values) <= 12:
        return exact_axis(values)
    whole = all(float(v).is_integer() for v in values)
    return alt.Axis(tickMinStep=1) if whole else alt.Axis()


def exact_axis(values, percent: bool = False) -> alt.Axis:
    """Ticks at exactly these values, labelled in French: never "1, 2, 2, 3, 3"; ``percent``
    labels fractions as percentages (0,02 → 2 %)."""
    values = [float(v) for v in values]
    names = [f"{label}{fr.NNBSP}%" for label in number_labels([100 * v for v in values])] if percent \
        else number_labels(values)
    labels = json.dumps(names, ensure_ascii=False)
    return alt.Axis(values=values, labelExpr=f"{labels}[indexof({json.dumps(values)}, datum.value)]")


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten within [low, high]; with fewer than three, their 2 and 5 multiples too;
    on a range narrower than that, round steps (0,2 · 0,25 · 0,3), never raw data values."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for multiples in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [float(f"{m}e{e}") for e in decades for m in multiples if low <= m * 10.0 ** e <= high]
        if len(ticks) >= 3:
            return ticks[::math.ceil(len(ticks) / 8)]
    rough = (high - low) / 4
    step = min((m * 10.0 ** math.floor(math.log10(rough)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - rough))
    return [float(f"{k * step:.12g}") for k in range(math.ceil(low / step), math.floor(high / step) + 1)]


def y_scale_axis(values, builder: str, log=False, percent=False, zero=False) -> dict:
    """Scale and axis of a measure: zoomed on the data unless ``zero``, percent from fractions,
    and on a log scale ticks at powers of ten in one French format (10⁻³ or 0,001, never both)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not log:
        return {"scale": alt.Scale(zero=bool(zero)), "axis": alt.Axis(format="%" if percent else alt.Undefined)}
    if values.size and values.min() <= 0:
        raise ValueError(f"charts.{builder}: log_y=True but some values are ≤ 0 (the smallest is "
                         f"{values.min():g}); filter them out or use log_y=False")
    low, high = (values.min(), values.max()) if values.size else (0.1, 1.0)
    margin = (high / low) ** 0.04 if high > low else 1.5
    low, high = _round_end(low / margin, -1), _round_end(high * margin, +1)
    return {"scale": alt.Scale(type="log", domain=[low, high], nice=False),
            "axis": exact_axis(log_ticks(low, high), percent=percent)}


def _round_end(end: float, direction: int) -> float:
    """A log axis' end moved out to the next 1-2-5 value when it is that close (within a
    factor 1.25), so that the data's end is labelled rather than left below the last tick."""
    exponent = math.floor(math.log10(end))
    steps = [m * 10.0 ** e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 2, 5)]
    nearest = max(s for s in steps if s <= end) if direction < 0 else min(s for s in steps if s >= end)
    return nearest if max(nearest / end, end / nearest) <= 1.25 else end


def color_channel(order: list[str], title: str | None, symbol: str = "stroke"):
    """Okabe–Ito in data order: eight levels stay distinct (viridis makes neighbours alike)."""
    if len(order) > len(OKABE_ITO):
        raise ValueError(f"{len(order)} colours cannot be told apart (at most {len(OKABE_ITO)}): "
                         "filter the frame or use facet=")
    legend = alt.Legend(symbolType=symbol, symbolStrokeWidth=3, symbolOpacity=1, symbolSize=120,
                        columns=legend_columns(order)) if order != [""] else None
    return alt.Color("color:N", title=title, sort=order, legend=legend,
                     scale=alt.Scale(domain=order, range=OKABE_ITO[: len(order)]))


def dash_channel(order: list[str], title: str | None):
    if len(order) > len(DASHES):
        raise ValueError(f"{len(order)} dash patterns cannot be told apart (at most {len(DASHES)})")
    return alt.StrokeDash("dash:N", title=title, sort=order,
                          scale=alt.Scale(domain=order, range=DASHES[: len(order)]),
                          legend=alt.Legend(symbolType="stroke", symbolStrokeColor="#333", symbolSize=300,
                                            columns=legend_columns(order)))


def legend_columns(labels: list[str]) -> int:
    """Legend entries per row under the plot, so the legend stays as wide as the page."""
    widest = max(len(label) for label in labels) * 7 + 40
    return max(1, min(len(labels), int((MAX_WIDTH - 60) // widest)))


def panels(count: int, axis_px: int = 95, widest: int = 3, least: int = 140) -> tuple[int, int]:
    """Columns and panel width for ``count`` panels, wrapped to stay within the page."""
    columns = max(1, min(count, widest, (MAX_WIDTH - axis_px) // (least + 14)))
    return columns, (MAX_WIDTH - axis_px - 14 * (columns - 1)) // columns


def facet_of(chart, facet_order: list[str], title: str | None, height: int | None = None):
    """One panel per value, wrapped into rows that fit the page (square panels by default).

    When the last row is not full, each panel carries its own x axis: with one axis per
    column under the last row, Vega-Lite would draw an axis under the empty place too."""
    columns, width = panels(len(facet_order))
    faceted = chart.properties(width=width, height=height or width).facet(
        facet=alt.Facet("facet:N", title=title, sort=facet_order), columns=columns)
    return faceted.resolve_axis(x="independent") if len(facet_order) % columns else faceted


# -- titles --------------------------------------------------------------------------------------
def _lines(text, width: int) -> list[str]:
    parts = [text] if isinstance(text, str) else list(text or [])
    return [line for part in parts for line in textwrap.wrap(str(part), width)]


def printable(builder: str, *texts) -> None:
    """Refuse words that only make sense on the website: the PDF prints every title."""
    for text in texts:
        for line in _lines(text, 10_000):
            found = [word for word in WEBSITE_ONLY if word in line.lower()]
            if found:
                raise ValueError(f"charts.{builder}: {line!r} mentions {found[0]!r}, which the printed book "
                                 "cannot do; say it in a tooltip or in the website's prose instead")


def finish(chart, builder: str, title, subtitle, notes: list[str]):
    """Title and subtitle wrapped to the page width (Vega does not wrap), and the alt text."""
    if not title:
        raise ValueError(f"charts.{builder}: title= is required (the figure's heading in French)")
    printable(builder, title, subtitle)
    heading, lines = _lines(title, 68), _lines(subtitle, 96) + _lines(notes, 96)
    description = " ".join([*heading, *lines])
    return chart.properties(title=alt.Title(heading, subtitle=lines or alt.Undefined),
                            description=description)
