"""Charts of runs: curves over epochs (or layers), a measure against a setting, a two-way grid.

Each builder aggregates over seeds in pandas (mean, min–max, standard deviation), so a
chart embeds a few rows, and never drops a diverged run: it is counted in the legend
or the subtitle and marked by a cross.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from labkit import fr
from labkit.charts._output import MAX_WIDTH, OKABE_ITO
from labkit.charts._parts import (PLOT_HEIGHT, PLOT_WIDTH, check, color_channel, dash_channel,
                                  exact_axis, facet_of, finish, labelled, limit_rows, numbers, only,
                                  printable, refuse_mixed, roles, title_of, x_axis, y_scale_axis)

__all__ = ["curves", "by", "heatmap"]

ROLES = ("color", "dash", "facet")
KINDS = ("points", "bar", "line")
FACET_HEIGHT = 200


def _spread(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, min, max, standard deviation and number of finite values per group."""
    stats = rows.groupby(keys, sort=False, dropna=False)["value"].agg(
        mean="mean", low="min", high="max", sd="std", n="count").reset_index()
    return stats[stats["n"] > 0]


def _tooltips(names: dict, value_title: str, fmt: str, spread: bool) -> list:
    shown = [alt.Tooltip(f"{field}:N", title=title) for field, title in names.items() if title]
    values = [("mean", value_title), ("low", "min"), ("high", "max"), ("n", "graines")] if spread \
        else [("value", value_title)]
    return shown + [alt.Tooltip(f"{f}:Q", title=t, format=fmt if f != "n" else "d") for f, t in values]


# -- curves --------------------------------------------------------------------------------------
def curves(frame, *, x="epoch", y="value", color=None, dash=None, facet=None, log_y=False, percent=None,
           title, subtitle=None, x_title="Époque", y_title=None, color_title=None, dash_title=None,
           facet_title=None, rule=None):
    """A measure along ``x`` (epochs, layers): per (color, dash, facet) group the mean over seeds
    as a line and their min–max as a band.

    ``dash`` is a second categorical column drawn as stroke dash (normal vs uniform; train vs
    validation).  Rows whose ``split`` is ``test`` are diamonds, not a line.  A diverged run
    leaves its group's line (the others' mean is drawn), is counted in the legend
    ("divergé : k/n") and marked by a cross at its last finite point.  ``rule`` draws a
    dashed vertical line at that x.  ``percent`` shows fractions as percent (default: when
    the frame's ``metric`` is an accuracy).
    """
    builder = "curves"
    check(frame, builder, x, y, "seed", color, dash, facet)
    test = frame["split"].eq("test").to_numpy() if "split" in frame else np.zeros(len(frame), bool)
    refuse_mixed(frame[~test], [c for c in (color, dash, facet, x, "seed") if c], builder,
                 {"color": color, "dash": dash, "facet": facet}, (y,))
    if percent is None:
        percent = "metric" in frame and frame["metric"].astype(str).str.endswith("accuracy").all()
    data = pd.DataFrame({"x": pd.to_numeric(frame[x]), "value": numbers(frame[y]), "test": test}, index=frame.index)
    orders = roles(frame, data, color=color, dash=dash, facet=facet)
    orders["dash"] = [d for d in orders["dash"] if d in set(data.loc[~test, "dash"])]
    data["key"] = (frame["key"] if "key" in frame else
                   data[list(ROLES)].astype(str).agg("|".join, axis=1) + "|" + frame["seed"].astype(str))
    flagged = frame["diverged"].fillna(False).astype(bool) if "diverged" in frame else False
    data["diverged"] = (data["value"].isna() | flagged).groupby(data["key"]).transform("any")
    table = limit_rows(_curve_table(data, orders["facet"], rule), builder)
    notes = [_curve_key(table), *_diverged_in_legend(data, table, orders, bool(color))]

    y_title = title_of(y, y_title)
    titles = {"color": title_of(color, color_title), "dash": title_of(dash, dash_title),
              "facet": title_of(facet, facet_title)}
    printable(builder, x_title, y_title, *titles.values())
    scale_axis = y_scale_axis(table[["mean", "low", "high"]].to_numpy().ravel(), builder, log_y, percent)
    X = alt.X("x:Q", title=x_title, scale=alt.Scale(zero=False, nice=False), axis=x_axis(data["x"]))
    Y = {field: alt.Y(f"{field}:Q", title=y_title, **scale_axis) for field in ("low", "mean")}
    C = color_channel(orders["color"], titles["color"])
    D = dash_channel(orders["dash"], titles["dash"]) if dash else alt.Undefined
    tips = [alt.Tooltip("x:Q", title=x_title), *_tooltips(titles, y_title, ".1%" if percent else ".4~g", True)]
    layers = [only("curve").mark_area(opacity=0.16).encode(x=X, y=Y["low"], y2="high:Q", color=C, detail="dash:N"),
              only("curve").mark_line(strokeWidth=2).encode(x=X, y=Y["mean"], color=C, strokeDash=D),
              only("curve").mark_point(opacity=0, size=80, filled=True).encode(x=X, y=Y["mean"], tooltip=tips),
              only("test").mark_point(shape="diamond", filled=True, size=90, opacity=1).encode(
                  x=X, y=Y["mean"], color=C, tooltip=tips),
              only("cross").mark_point(shape="cross", filled=True, size=130, strokeWidth=0, opacity=1).encode(
                  x=X, y=Y["mean"], color=C),
              only("rule").mark_rule(color="#444", strokeDash=[4, 3], strokeWidth=1.5).encode(x=X)]
    chart = alt.layer(*layers, data=table)
    if facet:
        chart = facet_of(chart, orders["facet"], titles["facet"], FACET_HEIGHT)
    else:
        chart = chart.properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    return finish(chart, builder, title, subtitle, notes)


def _curve_table(data: pd.DataFrame, facets: list[str], rule) -> pd.DataFrame:
    """The rows of every layer: curves (mean, min–max over seeds), test diamonds, crosses at the
    last finite point of each diverged run, and the rule in every panel."""
    # A group keeps its healthy seeds; when every seed diverged, what they drew before.
    healthy = ~data["diverged"] | data.groupby(list(ROLES))["diverged"].transform("all")
    table = [_spread(data[healthy & ~data["test"]], [*ROLES, "x"]).assign(kind="curve"),
             _spread(data[healthy & data["test"]], [*ROLES, "x"]).assign(kind="test")]
    lost = data[data["diverged"] & ~data["test"]].dropna(subset=["value"]).sort_values("x")
    table.append(lost.groupby(["key", *ROLES]).tail(1).rename(columns={"value": "mean"}).assign(kind="cross"))
    if rule is not None:
        table.append(pd.DataFrame({"facet": facets, "x": float(rule), "kind": "rule"}))
    return pd.concat(table, ignore_index=True).drop(columns=["key", "diverged", "test"])


def _curve_key(table: pd.DataFrame) -> str:
    """How to read the chart, in the subtitle (the PDF has no tooltip)."""
    seeds = table.loc[table["kind"] == "curve", "n"].max()
    key = [f"trait : moyenne de {seeds:.0f} graines, bande : min–max" if seeds > 1 else "une graine par courbe"]
    key += ["losanges : test"] if "test" in set(table["kind"]) else []
    key += ["croix : dernière valeur finie d'un run divergé"] if "cross" in set(table["kind"]) else []
    text = " ; ".join(key)
    return text[:1].upper() + text[1:] + "."


def _diverged_in_legend(data, table, orders, by_color: bool) -> list[str]:
    """Each colour whose runs diverged says how many in its legend entry: "3 (divergé : 2/3)"."""
    runs = data.drop_duplicates("key").groupby("color", sort=False)["diverged"].agg(["sum", "count"])
    if not by_color:
        return [f"Runs divergés : {runs['sum'].sum()}/{runs['count'].sum()}."] if runs["sum"].sum() else []
    renamed = {c: f"{c} (divergé : {k}/{n})" for c, (k, n) in runs.iterrows() if k}
    table["color"] = table["color"].replace(renamed)
    orders["color"] = [renamed.get(c, c) for c in orders["color"]]
    return []


# -- a measure against a setting -----------------------------------------------------------------
def by(frame, *, x, y, color=None, kind="points", log_x=False, log_y=False, percent=False, connect=True,
       title, subtitle=None, x_title=None, y_title=None, color_title=None):
    """A measure against a setting, one row per run (``sweep.final(...)``) or per measurement.

    ``kind="points"``: each seed a small point and the mean a line through x; ``"line"``:
    the same with a thicker mean line; ``"bar"``: the mean as a bar from zero, the seeds as
    points.  x is categorical in data order and its ticks are the exact values in French;
    ``log_x=True`` places positive numbers on a log axis, one tick per value.  The y axis
    is zoomed on the data (bars start at zero).  ``connect=False`` draws no line between the x
    values (categories with no order: models), only each mean's tick.  A run with no value
    and ``diverged`` true is a cross at the bottom of the plot, counted in the subtitle.
    """
    builder = "by"
    if kind not in KINDS:
        raise ValueError(f"charts.by: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "bar" and log_y:
        raise ValueError("charts.by: kind='bar' draws lengths from zero: drop log_y=, or use kind='points'")
    check(frame, builder, x, y, color)
    if "seed" in frame:  # one row per run: a second one for a seed mixes configurations
        refuse_mixed(frame, [c for c in (x, color, "seed") if c], builder, {"color": color}, (y,))
    data = pd.DataFrame({"value": numbers(frame[y])}, index=frame.index)
    data["label"], x_order = labelled(frame, x)
    orders = roles(frame, data, color=color, dash=None, facet=None)
    if "seed" in frame:
        data["seed"] = frame["seed"]
    if log_x:
        data["x"] = pd.to_numeric(frame[x], errors="coerce")
        if not (data["x"] > 0).all():
            raise ValueError(f"charts.by: log_x=True needs positive numbers, but {x!r} has "
                             f"{sorted(set(frame[x][~(data['x'] > 0)]), key=str)[:3]}; use log_x=False "
                             "(one evenly spaced tick per value)")
    flagged = frame["diverged"].fillna(False).astype(bool) if "diverged" in frame else False
    data["lost"] = data["value"].isna() & flagged
    means = _spread(data, ["label", *ROLES, *(["x"] if log_x else [])])
    table = limit_rows(pd.concat([data[~data["lost"]].dropna(subset=["value"]).assign(kind="seed"),
                                  means.assign(kind="mean"), data[data["lost"]].assign(kind="diverged")],
                                 ignore_index=True), builder)

    titles = {"label": title_of(x, x_title), "color": title_of(color, color_title)}
    y_title = title_of(y, y_title)
    printable(builder, y_title, *titles.values())
    if log_x:
        values = sorted(data["x"].unique())
        margin = (values[-1] / values[0]) ** 0.05 if len(values) > 1 else 2.0
        X = alt.X("x:Q", title=titles["label"], axis=exact_axis(values),
                  scale=alt.Scale(type="log", domain=[values[0] / margin, values[-1] * margin], nice=False))
    else:
        X = alt.X("label:N", title=titles["label"], sort=x_order, axis=alt.Axis(labelAngle=0),
                  scale=alt.Scale(type="band", paddingInner=0.3))
    channels = {"x": X, "color": color_channel(orders["color"], titles["color"], "circle") if color
                else alt.value(OKABE_ITO[0])}
    if not log_x and data.groupby("label")["color"].nunique().max() > 1:  # colours that share an x: side by side
        channels["xOffset"] = alt.XOffset("color:N", sort=orders["color"])
    scale_axis = y_scale_axis(data["value"], builder, log_y, percent, kind == "bar")
    Y = {field: alt.Y(f"{field}:Q", title=y_title, **scale_axis) for field in ("value", "mean")}
    fmt = ".1%" if percent else ".4~g"
    tips = {"mean": _tooltips(titles, y_title, fmt, True),
            "seed": _tooltips({**titles, "seed": "graine" if "seed" in data else None}, y_title, fmt, False)}
    if kind == "bar":
        layers = [only("mean").mark_bar(opacity=0.85).encode(y=Y["mean"], tooltip=tips["mean"], **channels),
                  only("seed").mark_point(filled=True, size=22, opacity=0.8).encode(
                      y=Y["value"], tooltip=tips["seed"], **{**channels, "color": alt.value("#222")})]
    else:
        layers = [only("seed").mark_point(filled=True, size=30, opacity=0.55).encode(
                      y=Y["value"], tooltip=tips["seed"], **channels)]
        if connect:
            layers.append(only("mean").mark_line(strokeWidth=3 if kind == "line" else 1.5).encode(
                y=Y["mean"], **channels))
        if kind == "points" or not connect:
            layers.append(only("mean").mark_tick(thickness=2, size=14).encode(
                y=Y["mean"], tooltip=tips["mean"], **channels))
    layers.append(only("diverged").mark_point(shape="cross", filled=True, size=110, strokeWidth=0, opacity=1)
                  .encode(y=alt.value(PLOT_HEIGHT - 6), tooltip=tips["seed"], **channels))
    chart = alt.layer(*layers, data=table).properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    return finish(chart, builder, title, subtitle, _by_notes(data, means, kind, titles["label"], connect))


def _by_notes(data, means, kind, x_title, connect=True) -> list[str]:
    """How to read the chart, and which settings lost runs: "Taux : 3 → 2/3"."""
    notes = []
    if (means["n"] > 1).any():
        notes.append("Barres : moyenne ; points : graines." if kind == "bar" else
                     f"Points : une graine ; {'trait' if connect else 'tiret'} : moyenne des graines.")
    counts = data.groupby(["label", "color"], sort=False)["lost"].agg(["sum", "count"])
    parts = [f"{label}{' / ' + c if c else ''} → {k}/{n}" for (label, c), (k, n) in counts.iterrows() if k]
    return notes + ([f"Croix en bas : runs divergés ({x_title} : {' ; '.join(parts)})."] if parts else [])


# -- two-way grid --------------------------------------------------------------------------------
def heatmap(frame, *, x, y, value, better="higher", percent=False, digits=1, title, subtitle=None,
            x_title=None, y_title=None, value_title=None, darker_label=None):
    """One cell per (x, y) configuration: colour = mean over seeds, text = the mean and, where
    two seeds or more, a second line "± s" (their standard deviation): a cell whose seeds
    range from 69,7 to 91,1 % never reads as a plain "83,4 %".

    One colour meaning across the book: darker is better (``better="higher"`` or ``"lower"``).
    Where lower is not simply better (a generalisation gap: a bad model may have none), say
    what darker means instead: ``darker_label="écart plus petit"``.
    A cell whose runs all diverged is grey and reads "divergé".
    """
    builder = "heatmap"
    if better not in ("higher", "lower"):
        raise ValueError(f"charts.heatmap: better must be 'higher' or 'lower', got {better!r}")
    check(frame, builder, x, y, value)
    if "seed" in frame:
        refuse_mixed(frame, [x, y, "seed"], builder, {"x": x, "y": y}, (value,))
    data = pd.DataFrame({"value": numbers(frame[value])}, index=frame.index)
    (data["x"], x_order), (data["y"], y_order) = labelled(frame, x), labelled(frame, y)
    data["lost"] = frame["diverged"].fillna(False).astype(bool) if "diverged" in frame else data["value"].isna()
    cells = limit_rows(_cells(data, better, percent, digits), builder)
    x_title, y_title, value_title = title_of(x, x_title), title_of(y, y_title), title_of(value, value_title)
    printable(builder, x_title, y_title, value_title)
    label_px = max(len(label) for label in y_order) * 7 + 40
    step = min(110, (MAX_WIDTH - label_px - 20) // len(x_order))
    if step < 50:
        raise ValueError(f"charts.heatmap: {len(x_order)} columns of {x!r} do not fit the page width; "
                         "swap x= and y= (rows may be many), or filter the frame")

    fmt = ".1%" if percent else f".{digits}f"
    base = alt.Chart(cells).encode(
        x=alt.X("x:N", title=x_title, sort=x_order, axis=alt.Axis(labelAngle=0, orient="top", labelLimit=step)),
        y=alt.Y("y:N", title=y_title, sort=y_order, axis=alt.Axis(labelLimit=label_px)),
        tooltip=[alt.Tooltip("x:N", title=x_title), alt.Tooltip("y:N", title=y_title),
                 *[alt.Tooltip(f"{f}:Q", title=t, format=fmt) for f, t in
                   (("mean", value_title), ("low", "min"), ("high", "max"))],
                 alt.Tooltip("n:Q", title="graines finies"), alt.Tooltip("lost:Q", title="runs divergés")])
    colour = alt.Color("mean:Q", title=value_title,
                       scale=alt.Scale(scheme="blues", reverse=better == "lower", zero=False),
                       legend=alt.Legend(format="%" if percent else alt.Undefined, gradientLength=220,
                                         direction="horizontal"))
    ink = alt.when(alt.datum.ink == "white").then(alt.value("white")).otherwise(alt.value("black"))
    # Vega centres a text's first line: a text of k lines is lifted by (k - 1) half-lines.
    texts = [base.transform_filter(alt.datum.lines == count).mark_text(lineBreak="\n", dy=-6.5 * (count - 1))
             .encode(text="text:N", color=ink) for count in sorted(set(cells["lines"]))]
    chart = alt.layer(base.mark_rect(color="#d9d9d9"), base.mark_rect(stroke="white").encode(color=colour),
                      *texts).properties(width=alt.Step(step), height=alt.Step(16 + 14 * cells["lines"].max()))

    fewest, most = int(cells["runs"].min()), int(cells["runs"].max())
    seeds = ("une graine" if most == 1 else f"moyenne de {f'{fewest} à {most}' if fewest < most else most} "
             "graines, ± : écart type entre graines" + (" (en points)" if percent else ""))
    darker = darker_label or f"meilleur ({'plus haut' if better == 'higher' else 'plus bas'})"
    printable(builder, darker)
    notes = [f"Case : {seeds} ; plus foncé = {darker}."]
    if cells["lost"].sum():
        notes.append(f"Runs divergés : {int(cells['lost'].sum())} (« div. k/n » ; case grise : tous divergés).")
    return finish(chart, builder, title, subtitle, notes)


def _cells(data: pd.DataFrame, better: str, percent: bool, digits: int) -> pd.DataFrame:
    """One row per cell: mean, spread and counts over seeds, the text written in it, and its ink
    (white on the darker half of the scale)."""
    cells = data.groupby(["x", "y"], sort=False).agg(
        mean=("value", "mean"), sd=("value", "std"), low=("value", "min"), high=("value", "max"),
        n=("value", "count"), runs=("value", "size"), lost=("lost", "sum")).reset_index()

    def text(cell) -> str:
        if not cell.n:
            return "divergé"
        lines = [fr.pct(cell.mean, digits) if percent else fr.num(cell.mean, digits)]
        lines += [f"±{fr.NBSP}{fr.num((100 if percent else 1) * cell.sd, digits)}"] if cell.n >= 2 else []
        return "\n".join(lines + ([f"div. {cell.lost}/{cell.runs}"] if cell.lost else []))

    cells["text"] = [text(cell) for cell in cells.itertuples()]
    cells["lines"] = cells["text"].str.count("\n") + 1
    low, high = cells["mean"].min(), cells["mean"].max()
    darkness = (cells["mean"] - low) / ((high - low) or 1)
    cells["ink"] = np.where((darkness if better == "higher" else 1 - darkness) > 0.55, "white", "black")
    return cells
