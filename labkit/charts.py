"""Altair chart builders for the book's figures, with French labels, the labkit theme and renderer.

Every builder takes a tidy DataFrame (a sweep's history or a probe frame),
aggregates it in pandas (mean and min–max over seeds) so the chart embeds at most
:data:`MAX_ROWS` rows, and returns a titled Altair chart whose ``description``
serves as alt text.  Diverged runs are never dropped: their configuration is
flagged in the legend ("divergé : 2/3") and the subtitle, and a cross marks their
last finite value.  Call :func:`enable` once (the chapters' hidden set-up cell) to
get the theme and the renderer that emits interactive HTML plus a PNG.
"""

from __future__ import annotations

import json
import math
import numbers
import textwrap
from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from labkit._renderer import OKABE_ITO, PLOT_HEIGHT, PLOT_WIDTH, enable, theme, to_png

__all__ = [
    # set-up and output
    "enable",
    "theme",
    "to_png",
    "field_title",
    "MAX_ROWS",
    # training
    "learning_curves",
    "final_metric",
    "heatmap",
    "metric_by",
    # probes
    "layer_stats",
    "weight_norms",
    "weight_histograms",
    # regression diagnostics
    "predicted_vs_actual",
    "residuals",
]

#: Most rows a chart embeds (also Altair's own default limit).
MAX_ROWS = 5000
#: Above this many configurations a dropdown helps pick one out.
DROPDOWN_ABOVE = 8
FADED = 0.12
#: Subtitle lines longer than this are wrapped (about 600 px at 12 px).
SUBTITLE_CHARS = 95

METRIC_TITLES = {
    "accuracy": "Exactitude",
    "loss": "Perte",
    "crossentropy": "Entropie croisée",
    "mae": "Erreur absolue moyenne (100 k$)",
    "rmse": "RMSE (100 k$)",
    "mse": "Erreur quadratique moyenne ((100 k$)²)",
}
SPLIT_TITLES = {"train": "entraînement", "validation": "validation", "test": "test"}
FIELD_TITLES = {
    "lr": "Taux d'apprentissage",
    "l2": "λ (pénalité L2)",
    "depth": "Profondeur (couches cachées)",
    "width": "Largeur (neurones par couche)",
    "units": "Neurones par couche",
    "init": "Initialisation",
    "initializer": "Initialisation",
    "activation": "Activation",
    "optimizer": "Optimiseur",
    "batch_size": "Taille de lot",
    "dropout": "Dropout",
    "epochs": "Époques",
    "model": "Modèle",
    "seed": "Graine",
    "epoch": "Époque",
    "layer": "Couche",
    "params": "Nombre de paramètres",
    "n_params": "Nombre de paramètres",
    "seconds_per_epoch": "Secondes par époque",
}
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
# Legend entries drawn as opaque strokes, whatever layer (band, cross) Vega-Lite takes them from.
_LINE_LEGEND = alt.Legend(symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3, symbolSize=300)
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_DASHES = {"train": [6, 3], "validation": [1, 0], "test": [2, 2]}


# --------------------------------------------------------------------------- helpers


def field_title(name: str) -> str:
    """French axis/legend title for a column name (the name itself when unknown)."""
    return FIELD_TITLES.get(name, name)


def _metric_title(metric: str, split: str | None = None) -> str:
    text = METRIC_TITLES.get(metric, metric)
    return f"{text} ({SPLIT_TITLES.get(split, split)})" if split else text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _formats(metric: str, values=None) -> tuple:
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


def _value_label(value) -> str:
    """A grid value as a French label: ``0,001``, ``10⁻⁵``, ``oui``."""
    if isinstance(value, (bool, np.bool_)):
        return "oui" if value else "non"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        text = f"{float(value):g}"
        if "e" in text:
            mantissa, exponent = text.split("e")
            power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
            return power if mantissa == "1" else f"{mantissa.replace('.', ',')}·{power}"
        return text.replace(".", ",")
    return str(value)


def _layer_label(name) -> str:
    """Keras-style layer names in French: hidden_2 → 'cachée 2', output → 'sortie'."""
    text = str(name)
    if text.startswith("hidden_"):
        return "cachée " + text[len("hidden_") :]
    return {"output": "sortie", "input": "entrée"}.get(text, text)


def _layer_names(data: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """French layer labels and their order by depth (``layer_name`` when present, else ``layer``)."""
    names = data["layer_name"] if "layer_name" in data else "couche " + data["layer"].astype(str)
    labels = names.map(_layer_label)
    order = list(
        pd.DataFrame({"l": data["layer"], "n": labels}).sort_values("l")["n"].drop_duplicates()
    )
    return labels, order


def _int_fr(count: int) -> str:
    """An integer with French digit grouping (narrow no-break space): 4 000."""
    return f"{int(count):,}".replace(",", "\u202f")


def _require(frame, columns, builder: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{builder}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(
            f"{builder}: missing column(s) {missing}; the frame has {list(frame.columns)}"
        )
    if frame.empty:
        raise ValueError(f"{builder}: the frame is empty")


def _pick(frame, column: str, wanted, builder: str) -> pd.DataFrame:
    """Rows whose ``column`` is in ``wanted``; an unknown value is an error naming the known ones."""
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    known = list(pd.unique(frame[column]))
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"{builder}: {column}={unknown} not in the frame; it has {known}")
    return frame[frame[column].isin(wanted)]


def _check_grid(frame, used, builder: str) -> None:
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


def _labels(frame, column: str | None) -> tuple[pd.Series, list[str]]:
    """French labels for a grid column and their order (numeric order when numeric)."""
    if column is None:
        return pd.Series("", index=frame.index), [""]
    values = frame[column]
    order = sorted(pd.unique(values), key=lambda v: (isinstance(v, str), v))
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        order = list(pd.unique(values))
    labels = {v: _value_label(v) for v in order}
    return values.map(labels), [labels[v] for v in order]


def _run_ids(frame, config_columns) -> pd.Series:
    """One id per run: the store key when present, else configuration + seed."""
    if "key" in frame.columns:
        return frame["key"].astype(str)
    parts = [frame[c].astype(str) for c in [*config_columns, "seed"] if c in frame.columns]
    out = parts[0]
    for part in parts[1:]:
        out = out + "|" + part
    return out


def _diverged_runs(frame, run_ids: pd.Series) -> set[str]:
    """Runs flagged diverged, or with a non-finite value anywhere in their history."""
    bad = ~np.isfinite(pd.to_numeric(frame["value"], errors="coerce"))
    if "diverged" in frame.columns:
        bad = bad | frame["diverged"].fillna(False).astype(bool)
    return set(run_ids[bad])


def _stats(frame, by, value="value") -> pd.DataFrame:
    """Mean, min, max and number of finite seeds per group."""
    grouped = frame.groupby(by, sort=False, dropna=False)[value]
    out = grouped.agg(mean="mean", low="min", high="max", n="count").reset_index()
    return out


def _divergence_notes(runs: pd.DataFrame, what: str | None) -> tuple[dict[str, str], list[str]]:
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
            where = f"{_lower_first(what)} = {label} : " if what else ""
            parts.append(f"{where}{bad} graine{'s' if bad > 1 else ''} sur {total}")
    lines = (
        [f"Runs divergés (croix : dernière valeur finie) — {' ; '.join(parts)}."] if parts else []
    )
    return suffix, lines


def _color_scale(order: Sequence[str], numeric: bool) -> alt.Scale:
    """Okabe–Ito for categories; viridis (without its faint yellow end) for ordered values."""
    if numeric and len(order) > 2:
        return alt.Scale(domain=list(order), scheme={"name": "viridis", "extent": [0, 0.85]})
    if len(order) <= len(OKABE_ITO):
        return alt.Scale(domain=list(order), range=OKABE_ITO[: max(len(order), 1)])
    return alt.Scale(domain=list(order), scheme={"name": "viridis", "extent": [0, 0.85]})


def _highlight(order: Sequence[str], field: str = "config"):
    """Legend-bound selection (click a legend entry) and, above 8 entries, a dropdown too.

    Returns the params and the opacity condition that fades the others.
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


def _finish(chart, title: str, subtitle: Sequence[str], description: str | None):
    """Title, subtitle lines wrapped to the page width (Vega does not wrap), alt text."""
    lines = [part for line in subtitle for part in textwrap.wrap(line, SUBTITLE_CHARS)]
    heading = alt.Title(title, subtitle=lines) if lines else alt.Title(title)
    return chart.properties(title=heading, description=description or title)


def _limit_rows(total: int, builder: str) -> None:
    if total > MAX_ROWS:
        raise ValueError(
            f"{builder}: {total} rows to embed, more than {MAX_ROWS}; filter or aggregate first"
        )


def _thin_epochs(agg: pd.DataFrame, extra_rows: int) -> tuple[pd.DataFrame, list[str]]:
    """Keep every k-th epoch (and the last) so the chart stays under MAX_ROWS rows."""
    if len(agg) + extra_rows <= MAX_ROWS:
        return agg, []
    step = math.ceil((len(agg) + extra_rows) / MAX_ROWS)
    last = agg["epoch"].max()
    keep = ((agg["epoch"] - 1) % step == 0) | (agg["epoch"] == last)
    return agg[keep], [f"Une époque sur {step} affichée (taille de la page)."]


def _epoch_axis(title="Époque") -> alt.X:
    return alt.X("epoch:Q", title=title, axis=alt.Axis(format="d", tickMinStep=1))


def _config_color(order, numeric, title):
    """Colour by configuration; every layer passes the same title so Vega-Lite merges one legend."""
    return alt.Color(
        "config:N",
        title=title,
        sort=list(order),
        scale=_color_scale(order, numeric),
        legend=_LINE_LEGEND,
    )


# --------------------------------------------------------------------------- training curves


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
    builder = "learning_curves"
    _require(frame, [color, facet, "seed", "epoch", "split", "metric", "value"], builder)
    config_cols = [c for c in (color, facet) if c]
    everything = frame.assign(run=_run_ids(frame, config_cols))
    diverged = _diverged_runs(everything, everything["run"])
    data = _pick(everything, "metric", metric, builder)
    data = _pick(data, "split", splits, builder).copy()
    _check_grid(data.drop(columns="run"), {color, facet}, builder)
    data["config"], order = _labels(data, color)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    data.loc[~np.isfinite(data["value"]), "value"] = np.nan
    if log_y and (data["value"] <= 0).any():
        raise ValueError(f"{builder}: log_y=True but {metric} has values <= 0")

    legend_title = color_title or field_title(color)
    facet_col = ["facet"] if facet else []
    if facet:
        data["facet"], facet_order = _labels(data, facet)
    runs = data.groupby("run", sort=False).agg(label=("config", "first")).reset_index()
    runs["diverged"] = runs["run"].isin(diverged)
    suffix, notes = _divergence_notes(runs, legend_title)
    if facet:  # the subtitle names the panel too
        panel = data.groupby("run", sort=False)["facet"].first().reindex(runs["run"]).to_numpy()
        where = runs["label"] + f", {_lower_first(field_title(facet))} = " + panel
        _, notes = _divergence_notes(runs.assign(label=where), legend_title)
    seeds = int(data.groupby(["config", *facet_col])["run"].nunique().max())
    data["config"] = data["config"].map(lambda c: suffix.get(c, c))
    order = [suffix.get(c, c) for c in order]
    data["split_fr"] = data["split"].map(lambda s: SPLIT_TITLES.get(s, s))

    agg = _stats(data, ["config", *facet_col, "split", "split_fr", "epoch"])
    agg = agg[agg["n"] > 0].assign(kind=np.where(agg["split"] == "test", "test", "curve"))
    marks = _last_finite(
        data[data["run"].isin(diverged)], ["run", "config", *facet_col, "split", "split_fr"]
    )
    agg, thin_note = _thin_epochs(agg, len(marks))
    table = pd.concat([agg, marks.drop(columns="run").assign(kind="diverged")], ignore_index=True)
    _limit_rows(len(table), builder)

    axis_format, tip_format = _formats(metric, table[["mean", "low", "high"]].to_numpy(float))
    y_scale = alt.Scale(type="log", nice=False) if log_y else alt.Scale(zero=False)
    numeric = pd.api.types.is_numeric_dtype(frame[color])
    params, predicate = _highlight(order)
    plain_color = _config_color(order, numeric, legend_title)
    opacity = alt.when(predicate).then(alt.value(1)).otherwise(alt.value(FADED))
    curve_splits = [s for s in splits if s != "test"]  # test: one point at the end, no line
    split_order = [SPLIT_TITLES.get(s, s) for s in curve_splits]
    dash = alt.StrokeDash(
        "split_fr:N",
        title="Jeu",
        sort=split_order,
        scale=alt.Scale(domain=split_order, range=[_DASHES.get(s, [1, 0]) for s in curve_splits]),
        legend=alt.Legend(symbolStrokeColor="#333") if len(curve_splits) > 1 else None,
    )
    x = _epoch_axis()
    y_title = _metric_title(
        metric, curve_splits[0] if len(curve_splits) == 1 and "test" not in splits else None
    )
    y = alt.Y("mean:Q", title=y_title, scale=y_scale, axis=alt.Axis(format=axis_format))
    tooltip = [
        alt.Tooltip("config:N", title=legend_title),
        alt.Tooltip("split_fr:N", title="Jeu"),
        alt.Tooltip("epoch:Q", title="Époque"),
        alt.Tooltip("mean:Q", title="Moyenne", format=tip_format),
        alt.Tooltip("low:Q", title="Min", format=tip_format),
        alt.Tooltip("high:Q", title="Max", format=tip_format),
        alt.Tooltip("n:Q", title="Graines finies"),
    ]

    def only(kind):
        return alt.Chart().transform_filter(alt.datum.kind == kind)

    band = (
        only("curve")
        .mark_area()
        .encode(
            x=x,
            y=alt.Y("low:Q", title=y_title, scale=y_scale),
            y2="high:Q",
            color=plain_color,
            detail="split_fr:N",
            opacity=alt.when(predicate).then(alt.value(0.16)).otherwise(alt.value(0.03)),
        )
    )
    line = (
        only("curve")
        .mark_line()
        .encode(
            x=x,
            y=y,
            color=_config_color(order, numeric, legend_title),
            strokeDash=dash,
            opacity=opacity,
        )
        .add_params(*params)
    )
    hover = alt.selection_point(
        name="hover", on="pointerover", nearest=True, empty=False, clear="pointerout"
    )
    points = (
        only("curve")
        .mark_point(filled=True, size=40)
        .encode(
            x=x,
            y="mean:Q",
            color=plain_color,
            tooltip=tooltip,
            opacity=alt.when(hover).then(alt.value(1)).otherwise(alt.value(0)),
        )
        .add_params(hover)
    )
    test = (
        only("test")
        .mark_point(shape="diamond", filled=True, size=70)
        .encode(
            x=x,
            y="mean:Q",
            color=plain_color,
            opacity=opacity,
            tooltip=tooltip,
        )
    )
    crosses = (
        only("diverged")
        .mark_point(shape="cross", filled=True, size=120, strokeWidth=0)
        .encode(
            x=x,
            y="mean:Q",
            color=plain_color,
            opacity=opacity,
            tooltip=[
                alt.Tooltip("config:N", title=legend_title),
                alt.Tooltip("split_fr:N", title="Jeu"),
                alt.Tooltip("diverged_at:Q", title="Divergé à l'époque"),
                alt.Tooltip("epoch:Q", title="Dernière époque finie"),
                alt.Tooltip("mean:Q", title="Dernière valeur finie", format=tip_format),
            ],
        )
    )
    chart = alt.layer(band, line, points, test, crosses, data=table)
    if not facet:
        chart = chart.properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    else:
        chart = chart.properties(
            width=max(170, (PLOT_WIDTH - 20 * len(facet_order)) // len(facet_order)), height=230
        )
        chart = chart.facet(
            column=alt.Facet("facet:N", title=field_title(facet), sort=facet_order),
        )
    subtitle = [
        (
            f"Moyenne sur {seeds} graines (trait) et min–max (bande)."
            if seeds > 1
            else "Une seule graine."
        )
        + (
            " Tirets : entraînement ; trait plein : validation."
            if {"train", "validation"} <= set(splits)
            else ""
        )
        + (" Losanges : test, à la dernière époque." if "test" in splits else ""),
        *notes,
        *thin_note,
    ]
    default = f"{_metric_title(metric)} au fil des époques, par {_lower_first(legend_title)}"
    return _finish(chart, title or default, subtitle, description)


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


# --------------------------------------------------------------------------- final metric


def _final_per_run(frame, metric, split, config_cols, builder) -> pd.DataFrame:
    """One row per run: its value at the last epoch, or its last finite value if it diverged.

    Runs are listed from the whole frame, so a diverged run with no row for this
    metric/split (e.g. no test row) still appears, with ``value`` NaN.
    """
    everything = frame.copy()
    everything["run"] = _run_ids(everything, config_cols)
    diverged = _diverged_runs(everything, everything["run"])
    runs = everything.groupby("run", sort=False)[[*config_cols, "seed"]].first()
    rows = _pick(everything, "metric", metric, builder)
    rows = _pick(rows, "split", split, builder).copy()
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows.loc[~np.isfinite(rows["value"]), "value"] = np.nan
    rows = rows.dropna(subset=["value"]).sort_values("epoch").groupby("run").tail(1)
    out = runs.join(rows.set_index("run")[["epoch", "value"]], how="left").reset_index()
    out["diverged"] = out["run"].isin(diverged)
    return out


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
    _require(frame, [param, color, "seed", "epoch", "split", "metric", "value"], builder)
    _check_grid(frame, {param, color}, builder)
    config_cols = [c for c in (param, color) if c]
    runs = _final_per_run(frame, metric, split, config_cols, builder)
    runs["config"], order = _labels(runs, color)
    runs["x_label"], x_order = _labels(runs, param)
    # Diverged runs are counted per x value (and colour): that is where the crosses sit.
    where = runs["x_label"] + (" / " + runs["config"] if color else "")
    _, notes = _divergence_notes(runs.assign(label=where), x_title or field_title(param))
    runs["status"] = np.where(runs["diverged"], "divergé (dernière valeur finie)", "graine")

    numeric_x = pd.api.types.is_numeric_dtype(runs[param]) and not pd.api.types.is_bool_dtype(
        runs[param]
    )
    axis_format, tip_format = _formats(metric, runs["value"].to_numpy(float))
    name = x_title or field_title(param)
    healthy = runs[~runs["diverged"]]
    means = _stats(healthy, ["config", param, "x_label"])
    means = means[means["n"] > 0]
    _limit_rows(len(runs) + len(means), builder)

    if numeric_x:
        on_axis = runs[param] > 0 if log_x else pd.Series(True, index=runs.index)
        ticks = sorted(runs.loc[on_axis, param].unique())
        x_axis = (
            alt.Axis(values=ticks, format="~g", labelOverlap=True)
            if len(ticks) <= 12
            else alt.Axis(format="~g")
        )
        x_scale = _padded_scale(ticks, log_x)
        x = alt.X(f"{param}:Q", title=name, scale=x_scale, axis=x_axis)
    else:
        on_axis = pd.Series(True, index=runs.index)
        x = alt.X(
            "x_label:N",
            title=name,
            sort=x_order,
            scale=alt.Scale(type="point", padding=0.5),
            axis=alt.Axis(labelAngle=0),
        )
    if color:
        numeric_color = pd.api.types.is_numeric_dtype(frame[color])
        colour = _config_color(order, numeric_color, color_title or field_title(color))
        params, predicate = _highlight(order)
        opacity = alt.when(predicate).then(alt.value(1)).otherwise(alt.value(FADED))
    else:
        colour, params, opacity = alt.value(OKABE_ITO[0]), [], alt.value(1)
    y = alt.Y(
        "value:Q",
        title=_metric_title(metric, split),
        scale=alt.Scale(zero=False),
        axis=alt.Axis(format=axis_format),
    )
    tooltip = [
        alt.Tooltip("x_label:N", title=name),
        *([alt.Tooltip("config:N", title=color_title or field_title(color))] if color else []),
        alt.Tooltip("seed:Q", title="Graine"),
        alt.Tooltip("value:Q", title=_metric_title(metric, split), format=tip_format),
        alt.Tooltip("status:N", title="Statut"),
    ]
    shown = runs.loc[
        on_axis.values, [param, "x_label", "config", "seed", "epoch", "value", "status"]
    ]
    points = (
        alt.Chart(shown)
        .mark_point(size=50)
        .encode(
            x=x,
            y=y,
            color=colour,
            shape=alt.Shape(
                "status:N",
                title=None,
                scale=alt.Scale(
                    domain=["graine", "divergé (dernière valeur finie)"], range=["circle", "cross"]
                ),
                legend=alt.Legend(orient="bottom") if runs["diverged"].any() else None,
            ),
            opacity=opacity,
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    mean_y = alt.Y("mean:Q", title=_metric_title(metric, split), axis=alt.Axis(format=axis_format))
    mean_rows = means[(means[param] > 0) if (numeric_x and log_x) else np.ones(len(means), bool)]
    line = (
        alt.Chart(mean_rows)
        .mark_line(point=alt.OverlayMarkDef(size=30))
        .encode(
            x=x,
            y=mean_y,
            color=colour,
            opacity=opacity,
            tooltip=[
                alt.Tooltip("x_label:N", title=name),
                alt.Tooltip("mean:Q", title="Moyenne", format=tip_format),
                alt.Tooltip("n:Q", title="Graines"),
            ],
        )
    )
    layers = [line, points]
    subtitle = ["Points : une graine ; trait : moyenne des graines."]
    if numeric_x and log_x and (means[param] <= 0).any():
        layers += _zero_reference(means[means[param] <= 0], colour, opacity, tip_format, name)
        subtitle.append(
            f"Pointillés : {_short(name)} = 0, qui n'a pas de place sur l'axe logarithmique."
        )
    subtitle += notes
    chart = alt.layer(*layers).properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    default = f"{_metric_title(metric, split)} selon {_article(name)}"
    return _finish(chart, title or default, subtitle, description)


def _padded_scale(values, log: bool) -> alt.Scale:
    """A scale whose domain reaches 5 % past the extreme values: no point sits on the plot's edge."""
    low, high = float(min(values)), float(max(values))
    if log:
        ratio = (high / low) ** 0.05 if high > low else 2.0
        return alt.Scale(type="log", domain=[low / ratio, high * ratio], nice=False)
    margin = 0.05 * (high - low) or max(abs(high) * 0.1, 1.0)
    return alt.Scale(domain=[low - margin, high + margin], nice=False, zero=False)


def _article(name: str) -> str:
    """'le taux d'apprentissage', 'la profondeur', 'λ'... for default titles."""
    lowered = _lower_first(name)
    feminine = ("profondeur", "largeur", "taille", "pénalité", "initialisation", "activation")
    if not lowered[:1].isalpha() or lowered[:1] in "λ":
        return lowered
    if lowered[:1] in "aeiouyéè":
        return "l'" + lowered
    return ("la " if lowered.startswith(feminine) else "le ") + lowered


def _short(name: str) -> str:
    """'λ (pénalité L2)' → 'λ': the name without its parenthesised gloss."""
    return name.split(" (")[0]


def _zero_reference(rows, colour, opacity, tip_format, name):
    """A dashed line at the mean of the zero setting, labelled at the right edge."""
    rule = (
        alt.Chart(rows)
        .mark_rule(strokeDash=[4, 4], strokeWidth=1.5)
        .encode(
            y="mean:Q",
            color=colour,
            opacity=opacity,
            tooltip=[
                alt.Tooltip("x_label:N", title=name),
                alt.Tooltip("mean:Q", title="Moyenne", format=tip_format),
                alt.Tooltip("n:Q", title="Graines"),
            ],
        )
    )
    fmt = ".1%" if tip_format.endswith("%") else ".3~g"
    text = (
        alt.Chart(rows)
        .transform_calculate(
            label=f"{json.dumps(_short(name) + ' = 0 : ')} + format(datum.mean, '{fmt}')"
        )
        .mark_text(align="right", baseline="bottom", dx=-2, dy=-3, fontStyle="italic")
        .encode(
            x=alt.value(PLOT_WIDTH),
            y="mean:Q",
            text="label:N",
            color=colour,
            opacity=opacity,
        )
    )
    return [rule, text]


# --------------------------------------------------------------------------- 2-D comparison


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
    _require(frame, [x, y, value], builder)
    data = frame.copy()
    data[value] = pd.to_numeric(data[value], errors="coerce")
    data.loc[~np.isfinite(data[value]), value] = np.nan
    data["x_label"], x_order = _labels(data, x)
    data["y_label"], y_order = _labels(data, y)
    cells = _stats(data, ["x_label", "y_label"], value)
    rows = data.groupby(["x_label", "y_label"], sort=False).size().rename("rows").reset_index()
    cells = cells.merge(rows, on=["x_label", "y_label"])
    if "diverged" in data:
        div = (
            data.groupby(["x_label", "y_label"])["diverged"]
            .sum()
            .rename("n_diverged")
            .reset_index()
        )
        cells = cells.merge(div, on=["x_label", "y_label"])
    else:
        cells["n_diverged"] = cells["rows"] - cells["n"]
    _limit_rows(len(cells), builder)
    low, high = cells["mean"].min(), cells["mean"].max()
    position = (cells["mean"] - low) / ((high - low) or 1)
    cells["ink"] = np.where(position < 0.55, "white", "black")
    cells.loc[cells["mean"].isna(), "ink"] = "black"

    x_enc = alt.X(
        "x_label:N", title=x_title or field_title(x), sort=x_order, axis=alt.Axis(labelAngle=0)
    )
    y_enc = alt.Y("y_label:N", title=y_title or field_title(y), sort=y_order)
    name = value_title or field_title(value)
    base = alt.Chart(cells).encode(
        x=x_enc,
        y=y_enc,
        tooltip=[
            alt.Tooltip("x_label:N", title=x_title or field_title(x)),
            alt.Tooltip("y_label:N", title=y_title or field_title(y)),
            alt.Tooltip("mean:Q", title=f"{name} (moyenne)", format=fmt),
            alt.Tooltip("low:Q", title="Min", format=fmt),
            alt.Tooltip("high:Q", title="Max", format=fmt),
            alt.Tooltip("n:Q", title="Graines finies"),
            alt.Tooltip("n_diverged:Q", title="Runs divergés"),
        ],
    )
    background = base.mark_rect(color="#d9d9d9")
    cells_layer = base.mark_rect().encode(
        color=alt.Color(
            "mean:Q",
            title=name,
            scale=alt.Scale(scheme="viridis"),
            legend=alt.Legend(format=fmt, gradientLength=max(60, 38 * len(y_order))),
        )
    )
    text = (
        base.transform_calculate(
            label=f"isValid(datum.mean) && isFinite(datum.mean) ? format(datum.mean, '{fmt}') : 'divergé'"
        )
        .mark_text(fontSize=12)
        .encode(
            text="label:N",
            color=alt.when(alt.datum.ink == "white")
            .then(alt.value("white"))
            .otherwise(alt.value("black")),
        )
    )
    chart = alt.layer(background, cells_layer, text).properties(
        width=alt.Step(max(60, min(110, PLOT_WIDTH // max(len(x_order), 1)))), height=alt.Step(38)
    )
    seeds = int(cells["rows"].max())
    subtitle = [
        f"Moyenne sur {seeds} graines par case ; détail au survol."
        if seeds > 1
        else "Une graine par case."
    ]
    if cells["n_diverged"].sum():
        subtitle.append(
            f"Runs divergés : {int(cells['n_diverged'].sum())} (cases grises : tous divergés)."
        )
    default = f"{name} selon {_article(x_title or field_title(x))} et {_article(y_title or field_title(y))}"
    return _finish(chart, title or default, subtitle, description)


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
    _require(frame, [x, y, color], builder)
    data = frame.copy()
    data[y] = pd.to_numeric(data[y], errors="coerce")
    data["x_label"], x_order = _labels(data, x)
    data["config"], order = _labels(data, color)
    stats = _stats(data, ["x_label", "config"], y)
    _limit_rows(len(stats) + (len(data) if kind == "dot" else 0), builder)
    fmt = fmt or (",d" if pd.api.types.is_integer_dtype(frame[y]) else ".3~g")
    name_y = y_title or field_title(y)
    x_enc = alt.X(
        "x_label:N", title=x_title or field_title(x), sort=x_order, axis=alt.Axis(labelAngle=0)
    )
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=kind == "bar")
    colour = (
        _config_color(
            order, pd.api.types.is_numeric_dtype(data[color]), color_title or field_title(color)
        )
        if color
        else alt.value(OKABE_ITO[0])
    )
    offset = {"xOffset": alt.XOffset("config:N", sort=order)} if color else {}
    tooltip = [
        alt.Tooltip("x_label:N", title=x_title or field_title(x)),
        *([alt.Tooltip("config:N", title=color_title or field_title(color))] if color else []),
        alt.Tooltip("mean:Q", title=f"{name_y} (moyenne)", format=fmt),
        alt.Tooltip("low:Q", title="Min", format=fmt),
        alt.Tooltip("high:Q", title="Max", format=fmt),
        alt.Tooltip("n:Q", title="Mesures"),
    ]
    base = alt.Chart(stats).encode(x=x_enc, **offset)
    y_mean = alt.Y("mean:Q", title=name_y, scale=y_scale, axis=alt.Axis(format=fmt))
    if kind == "bar":
        layers = [
            base.mark_bar().encode(y=y_mean, color=colour, tooltip=tooltip),
            base.mark_text(baseline="bottom", dy=-3).encode(
                y="mean:Q", text=alt.Text("mean:Q", format=fmt)
            ),
        ]
        if (stats["n"] > 1).any():
            layers.append(base.mark_rule(color="#333").encode(y="low:Q", y2="high:Q"))
    else:
        raw = data[["x_label", "config", y]].rename(columns={y: "value"})
        layers = [
            alt.Chart(raw)
            .mark_point(filled=True, size=45, opacity=0.7)
            .encode(
                x=x_enc,
                y=alt.Y("value:Q", title=name_y, scale=y_scale, axis=alt.Axis(format=fmt)),
                color=colour,
                tooltip=[alt.Tooltip("value:Q", title=name_y, format=fmt)],
                **offset,
            ),
            base.mark_tick(thickness=2, size=22).encode(y="mean:Q", color=colour, tooltip=tooltip),
        ]
    chart = alt.layer(*layers).properties(
        width=alt.Step(max(40, min(90, PLOT_WIDTH // max(len(x_order), 1)))), height=PLOT_HEIGHT
    )
    default = f"{name_y} selon {_article(x_title or field_title(x))}"
    subtitle = (
        ["Trait : moyenne ; points : mesures."] if kind == "dot" and (stats["n"] > 1).any() else []
    )
    return _finish(chart, title or default, subtitle, description)


# --------------------------------------------------------------------------- probes


def layer_stats(
    frame: pd.DataFrame,
    color: str,
    quantities: Sequence[str] = ("activation", "gradient"),
    stat: str = "std",
    epoch: int | None = None,
    log_y: bool = True,
    title: str | None = None,
    color_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Per-layer statistics from the ``signal`` probe: std of activations and gradients
    against depth, one line per configuration, log y, one panel per quantity.

    ``epoch`` defaults to the earliest probed epoch (at initialisation, the regime the
    Glorot/He arguments are about).  Zero or non-finite statistics cannot sit on a log
    axis: they are counted in the subtitle, not hidden silently.
    """
    builder = "layer_stats"
    _require(frame, [color, "seed", "epoch", "layer", "quantity", "stat", "value"], builder)
    data = _pick(frame, "quantity", quantities, builder)
    data = _pick(data, "stat", stat, builder)
    epoch = data["epoch"].min() if epoch is None else epoch
    data = _pick(data, "epoch", [epoch], builder).copy()
    _check_grid(data, {color}, builder)
    data["config"], order = _labels(data, color)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    hidden = ~np.isfinite(data["value"]) | ((data["value"] <= 0) if log_y else False)
    data.loc[hidden, "value"] = np.nan
    data["quantity_fr"] = (
        data["quantity"]
        .map({"activation": "Activations", "gradient": "Gradients"})
        .fillna(data["quantity"])
    )
    data["layer_name"], _ = _layer_names(data)
    agg = _stats(data, ["config", "quantity_fr", "layer", "layer_name"])
    _limit_rows(len(agg), builder)
    stat_fr = {"std": "Écart-type", "mean": "Moyenne"}.get(stat, stat)
    params, predicate = _highlight(order)
    numeric = pd.api.types.is_numeric_dtype(frame[color])
    opacity = alt.when(predicate).then(alt.value(1)).otherwise(alt.value(FADED))
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    layers_ticks = sorted(agg["layer"].unique())
    x = alt.X(
        "layer:Q",
        title="Couche (1 = près de l'entrée)",
        scale=alt.Scale(nice=False),
        axis=alt.Axis(values=layers_ticks, format="d"),
    )
    y_title = f"{stat_fr} (échelle log)" if log_y else stat_fr
    y = alt.Y("mean:Q", title=y_title, scale=y_scale, axis=alt.Axis(format="~g"))
    tooltip = [
        alt.Tooltip("config:N", title=color_title or field_title(color)),
        alt.Tooltip("layer_name:N", title="Couche"),
        alt.Tooltip("mean:Q", title=f"{stat_fr} (moyenne)", format=".3~g"),
        alt.Tooltip("low:Q", title="Min", format=".3~g"),
        alt.Tooltip("high:Q", title="Max", format=".3~g"),
        alt.Tooltip("n:Q", title="Graines"),
    ]
    base = alt.Chart().encode(x=x)
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("low:Q", title=y_title, scale=y_scale),
        y2="high:Q",
        color=_config_color(order, numeric, color_title or field_title(color)),
        opacity=alt.when(predicate).then(alt.value(0.15)).otherwise(alt.value(0.03)),
    )
    line = (
        base.mark_line(point=alt.OverlayMarkDef(filled=True, size=35))
        .encode(
            y=y,
            color=_config_color(order, numeric, color_title or field_title(color)),
            opacity=opacity,
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    panels = list(pd.unique(agg["quantity_fr"]))
    width = max(190, (PLOT_WIDTH - 40) // len(panels))
    chart = (
        alt.layer(band, line, data=agg)
        .properties(width=width, height=230)
        .facet(
            column=alt.Facet(
                "quantity_fr:N", title=None, sort=panels, header=alt.Header(labelFontSize=13)
            ),
        )
        .resolve_scale(y="independent")
    )
    subtitle = [
        f"{'Avant entraînement' if epoch == 0 else f'Époque {epoch}'} ; moyenne des graines (trait) et min–max (bande)."
    ]
    if hidden.any():
        subtitle.append(
            f"{int(hidden.sum())} valeur(s) nulle(s) ou non finie(s) non tracée(s) (échelle log)."
        )
    default = f"{stat_fr} du signal couche par couche, par {_lower_first(color_title or field_title(color))}"
    return _finish(chart, title or default, subtitle, description)


def weight_norms(
    frame: pd.DataFrame,
    facet: str | None = None,
    log_y: bool = False,
    title: str | None = None,
    facet_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Kernel norm of each layer over the epochs (``weight_norm`` probe), one colour per
    layer (viridis: dark near the input), one panel per value of ``facet`` (e.g. λ).
    Epoch 0 is the initialisation.
    """
    builder = "weight_norms"
    _require(frame, [facet, "seed", "epoch", "layer", "value"], builder)
    _check_grid(frame, {facet}, builder)
    data = frame.copy()
    data["layer_name"], layer_order = _layer_names(data)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    data["facet"], facet_order = _labels(data, facet)
    agg = _stats(data, ["facet", "layer", "layer_name", "epoch"])
    _limit_rows(len(agg), builder)
    params, predicate = _highlight(layer_order, field="layer_name")
    opacity = alt.when(predicate).then(alt.value(1)).otherwise(alt.value(FADED))
    colour = alt.Color(
        "layer_name:N",
        title="Couche",
        sort=layer_order,
        legend=_LINE_LEGEND,
        scale=alt.Scale(domain=layer_order, scheme={"name": "viridis", "extent": [0, 0.85]}),
    )
    x = _epoch_axis("Époque (0 = initialisation)")
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    tooltip = [
        alt.Tooltip("layer_name:N", title="Couche"),
        alt.Tooltip("epoch:Q", title="Époque"),
        alt.Tooltip("mean:Q", title="Norme (moyenne)", format=".3~g"),
        alt.Tooltip("low:Q", title="Min", format=".3~g"),
        alt.Tooltip("high:Q", title="Max", format=".3~g"),
        alt.Tooltip("n:Q", title="Graines"),
    ]
    base = alt.Chart().encode(x=x)
    band = base.mark_area().encode(
        y=alt.Y("low:Q", title="Norme de Frobenius du noyau", scale=y_scale),
        y2="high:Q",
        color=colour,
        opacity=alt.when(predicate).then(alt.value(0.15)).otherwise(alt.value(0.03)),
    )
    line = (
        base.mark_line(point=alt.OverlayMarkDef(filled=True, size=25))
        .encode(
            y=alt.Y(
                "mean:Q",
                title="Norme de Frobenius du noyau",
                scale=y_scale,
                axis=alt.Axis(format="~g"),
            ),
            color=colour,
            opacity=opacity,
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    chart = alt.layer(band, line, data=agg).properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    if facet:
        columns = min(len(facet_order), 3)
        chart = chart.properties(
            width=max(150, (PLOT_WIDTH - 20 * columns) // columns), height=200
        ).facet(
            facet=alt.Facet("facet:N", title=facet_title or field_title(facet), sort=facet_order),
            columns=columns,
        )
    default = "Norme des poids par couche au fil des époques"
    if facet:
        default += f", par {_lower_first(facet_title or field_title(facet))}"
    seeds = int(agg["n"].max())
    subtitle = [
        f"Moyenne sur {seeds} graines (trait) et min–max (bande)."
        if seeds > 1
        else "Une seule graine."
    ]
    return _finish(chart, title or default, subtitle, description)


def weight_histograms(
    frame: pd.DataFrame,
    epochs: Sequence[int] | None = None,
    facet: str | None = None,
    title: str | None = None,
    facet_title: str | None = None,
    description: str | None = None,
) -> alt.TopLevelMixin:
    """Weight distributions per layer (``weight_hist`` probe): one row per layer, the
    epochs overlaid in colour (default: first and last), one column per ``facet`` value.

    Counts become the share of the layer's weights in each bin (averaged over seeds)
    so layers of different sizes compare; each row has its own x range since
    initialisers scale weights with the layer's fan-in.
    """
    builder = "weight_histograms"
    _require(frame, [facet, "seed", "epoch", "layer", "bin_left", "bin_right", "count"], builder)
    _check_grid(frame, {facet}, builder)
    data = frame.copy()
    if epochs is None:
        epochs = sorted({data["epoch"].min(), data["epoch"].max()})
    data = _pick(data, "epoch", list(epochs), builder)
    data["layer_name"], layer_order = _layer_names(data)
    data["facet"], facet_order = _labels(data, facet)
    group = ["facet", "layer", "epoch", "seed"]
    data["share"] = data["count"] / data.groupby(group)["count"].transform("sum")
    keys = ["facet", "layer", "layer_name", "epoch"]
    bins = data.groupby([*keys, "bin_left", "bin_right"], sort=False)["share"].mean().reset_index()
    bins = _close_steps(bins.sort_values([*keys, "bin_left"]), keys)
    _limit_rows(len(bins), builder)
    bins["epoch_label"] = bins["epoch"].map(
        lambda e: "initialisation (0)" if e == 0 else f"époque {e}"
    )
    epoch_order = [("initialisation (0)" if e == 0 else f"époque {e}") for e in sorted(epochs)]
    params, predicate = _highlight(epoch_order, field="epoch_label")
    colour = alt.Color(
        "epoch_label:N",
        title="Moment",
        sort=epoch_order,
        legend=_LINE_LEGEND,
        scale=_color_scale(epoch_order, numeric=len(epoch_order) > 2),
    )
    x = alt.X(
        "bin_left:Q", title="Poids", axis=alt.Axis(format="~g", labelOverlap=True, tickCount=5)
    )
    y = alt.Y("share:Q", title="Part", axis=alt.Axis(format=".0%", tickCount=3))
    # Step outlines over a light fill: overlaid epochs stay distinct (bars would blend).
    fill = (
        alt.Chart()
        .mark_area(interpolate="step-after")
        .encode(
            x=x,
            y=y,
            color=colour,
            opacity=alt.when(predicate).then(alt.value(0.18)).otherwise(alt.value(0.02)),
        )
    )
    outline = (
        alt.Chart()
        .mark_line(interpolate="step-after", strokeWidth=1.6)
        .encode(
            x=x,
            y=y,
            color=colour,
            opacity=alt.when(predicate).then(alt.value(1)).otherwise(alt.value(FADED)),
            tooltip=[
                alt.Tooltip("layer_name:N", title="Couche"),
                alt.Tooltip("epoch_label:N", title="Moment"),
                alt.Tooltip("bin_left:Q", title="De", format=".3~g"),
                alt.Tooltip("bin_right:Q", title="À", format=".3~g"),
                alt.Tooltip("share:Q", title="Part des poids", format=".2%"),
            ],
        )
        .add_params(*params)
    )
    bars = alt.layer(fill, outline)
    columns = len(facet_order) if facet else 1
    width = max(130, (PLOT_WIDTH - 30 * columns) // columns)
    row = alt.Row(
        "layer_name:N",
        title=None,
        sort=layer_order,
        header=alt.Header(labelAngle=0, labelAlign="left", labelFontSize=12),
    )
    col = (
        {"column": alt.Column("facet:N", title=facet_title or field_title(facet), sort=facet_order)}
        if facet
        else {}
    )
    chart = (
        bars.properties(width=width, height=70)
        .facet(data=bins, row=row, **col)
        .resolve_scale(x="independent", y="independent")
    )
    default = "Distribution des poids par couche"
    if facet:
        default += f", par {_lower_first(facet_title or field_title(facet))}"
    subtitle = ["Part des poids de la couche dans chaque intervalle (moyenne des graines)."]
    return _finish(chart, title or default, subtitle, description)


def _close_steps(bins: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add, per histogram, a point at the last bin's right edge so a step-after line draws it."""
    last = bins.groupby(keys, sort=False).tail(1).copy()
    last["bin_left"] = last["bin_right"]
    return pd.concat([bins, last], ignore_index=True).sort_values(
        [*keys, "bin_left"], kind="stable"
    )


# --------------------------------------------------------------------------- regression


def _sample(data: pd.DataFrame, by: str | None, limit: int) -> tuple[pd.DataFrame, list[str]]:
    """At most ``limit`` rows, shared evenly between groups; a fixed seed keeps pages stable."""
    if len(data) <= limit:
        return data, []
    groups = data.groupby(by, sort=False) if by else [(None, data)]
    per_group = limit // (data[by].nunique() if by else 1)
    parts = [g.sample(min(len(g), per_group), random_state=0) for _, g in groups]
    out = pd.concat(parts)
    return out, [
        f"Échantillon de {_int_fr(len(out))} points sur {_int_fr(len(data))} (tirage fixe)."
    ]


def _regression_frame(frame, actual, predicted, by, builder, reserve=0):
    """Rename to actual/predicted/model, drop non-finite predictions (counted in a note) and
    sample down to MAX_ROWS − ``reserve`` rows (room for the other layers' rows)."""
    _require(frame, [actual, predicted], builder)
    columns = [actual, predicted] + ([by] if by in frame.columns else [])
    data = frame[columns].rename(columns={actual: "actual", predicted: "predicted"}).copy()
    data = data.astype({"actual": float, "predicted": float})
    by = by if by in frame.columns and frame[by].nunique() > 1 else None
    if by:
        data = data.rename(columns={by: "model"})
        data["model"], order = _labels(data, "model")
    else:
        data["model"], order = "", [""]
    bad = ~np.isfinite(data["predicted"])
    notes = [f"{int(bad.sum())} prédiction(s) non finie(s) non tracée(s)."] if bad.any() else []
    data = data[~bad]
    data["residual"] = data["actual"] - data["predicted"]
    data, sample_note = _sample(data, "model" if by else None, MAX_ROWS - reserve)
    return data, order, by, notes + sample_note


def _panels(chart, by, order, size):
    if not by:
        return chart.properties(width=size, height=size)
    columns = min(len(order), 3)
    side = max(180, (PLOT_WIDTH + 100 - 25 * columns) // columns)
    return chart.properties(width=side, height=side).facet(
        facet=alt.Facet("model:N", title=None, sort=order, header=alt.Header(labelFontSize=13)),
        columns=columns,
    )


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
    low = float(min(data["actual"].min(), data["predicted"].min()))
    high = float(max(data["actual"].max(), data["predicted"].max()))
    domain = [math.floor(low * 2) / 2, math.ceil(high * 2) / 2]
    scale = alt.Scale(domain=domain, nice=False)
    points = (
        alt.Chart()
        .mark_circle(size=10, opacity=0.3, color=OKABE_ITO[0])
        .encode(
            x=alt.X(
                "actual:Q", title=f"Valeur réelle ({unit})", scale=scale, axis=alt.Axis(format="~g")
            ),
            y=alt.Y(
                "predicted:Q", title=f"Prédiction ({unit})", scale=scale, axis=alt.Axis(format="~g")
            ),
            tooltip=[
                alt.Tooltip("actual:Q", title="Réel", format=".3~f"),
                alt.Tooltip("predicted:Q", title="Prédit", format=".3~f"),
                alt.Tooltip("residual:Q", title="Réel − prédit", format="+.3~f"),
            ],
        )
    )
    # Aggregated to one row (per panel), so the rule is drawn once, not once per point.
    diagonal = (
        alt.Chart()
        .transform_aggregate(n="count()")
        .mark_rule(color="#333", strokeDash=[5, 4], strokeWidth=1.2)
        .encode(
            x=alt.datum(domain[0]),
            y=alt.datum(domain[0]),
            x2=alt.datum(domain[1]),
            y2=alt.datum(domain[1]),
        )
    )
    chart = _panels(alt.layer(points, diagonal, data=data), by, order, 360)
    subtitle = [f"{_int_fr(len(data))} points ; tirets : prédiction parfaite (y = x).", *notes]
    return _finish(
        chart, title or "Prédiction en fonction de la valeur réelle", subtitle, description
    )


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
    data, order, by, notes = _regression_frame(
        frame,
        actual,
        predicted,
        by,
        builder,
        reserve=bins * max(frame[by].nunique() if by in frame else 1, 1),
    )
    data["bin"] = data.groupby("model")[against].transform(
        lambda s: pd.qcut(s.rank(method="first"), q=min(bins, len(s)), labels=False)
    )
    trend = (
        data.groupby(["model", "bin"])
        .agg(**{against: (against, "mean"), "residual": ("residual", "mean")})
        .reset_index()
    )
    table = pd.concat([data.assign(kind="point"), trend.assign(kind="trend")], ignore_index=True)
    _limit_rows(len(table), builder)
    x_title = f"Prédiction ({unit})" if against == "predicted" else f"Valeur réelle ({unit})"
    points = (
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
            tooltip=[
                alt.Tooltip("actual:Q", title="Réel", format=".3~f"),
                alt.Tooltip("predicted:Q", title="Prédit", format=".3~f"),
                alt.Tooltip("residual:Q", title="Résidu", format="+.3~f"),
            ],
        )
    )
    zero = (
        alt.Chart()
        .transform_aggregate(n="count()")
        .mark_rule(color="#333", strokeWidth=1.2)
        .encode(y=alt.datum(0))
    )
    line = (
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
    layered = alt.layer(points, zero, line, data=table)
    if by:
        columns = min(len(order), 3)
        chart = layered.properties(
            width=max(180, (PLOT_WIDTH + 100) // columns - 25), height=220
        ).facet(facet=alt.Facet("model:N", title=None, sort=order), columns=columns)
    else:
        chart = layered.properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    subtitle = [
        f"Orange : résidu moyen par tranche de {_against_fr(against)} ({bins} tranches de même effectif).",
        *notes,
    ]
    default = f"Résidus en fonction de {'la prédiction' if against == 'predicted' else 'la valeur réelle'}"
    return _finish(chart, title or default, subtitle, description)


def _against_fr(against: str) -> str:
    return "prédiction" if against == "predicted" else "valeur réelle"
