"""Inside the network, layer by layer: signal statistics, weight norms and weight distributions from the probes."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from labkit.charts._checks import check_grid, limit_rows, pick, require
from labkit.charts._french import facet_suffix, field_title, labels, layer_names, lower_first
from labkit.charts._renderer import PLOT_HEIGHT, PLOT_WIDTH
from labkit.charts._seeds import seed_stats, seeds_note
from labkit.charts._style import (
    LINE_LEGEND,
    band_and_mean_line,
    color_scale,
    config_color,
    epoch_axis,
    fade,
    finish,
    highlight,
    spread_tooltips,
    viridis_scale,
)

__all__ = ["layer_stats", "weight_norms", "weight_histograms"]

_QUANTITY_TITLES = {"activation": "Activations", "gradient": "Gradients"}
_STAT_TITLES = {"std": "Écart-type", "mean": "Moyenne"}


# --------------------------------------------------------------------------- signal


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
    require(frame, [color, "seed", "epoch", "layer", "quantity", "stat", "value"], builder)
    data, epoch, hidden = _signal_rows(frame, color, quantities, stat, epoch, log_y)
    data["config"], order = labels(data, color)
    agg = seed_stats(data, ["config", "quantity_fr", "layer", "layer_name"])
    limit_rows(len(agg), builder)

    stat_fr = _STAT_TITLES.get(stat, stat)
    legend_title = color_title or field_title(color)
    colour = config_color(order, pd.api.types.is_numeric_dtype(frame[color]), legend_title)
    band, line = band_and_mean_line(
        _depth_axis(agg),
        f"{stat_fr} (échelle log)" if log_y else stat_fr,
        alt.Scale(type="log") if log_y else alt.Scale(zero=False),
        colour,
        highlight(order),
        tooltip=[
            alt.Tooltip("config:N", title=legend_title),
            alt.Tooltip("layer_name:N", title="Couche"),
            *spread_tooltips(f"{stat_fr} (moyenne)", ".3~g", "Graines"),
        ],
        point_size=35,
        opacity=0.15,
    )
    chart = _quantity_panels(alt.layer(band, line, data=agg), agg)
    moment = "Avant entraînement" if epoch == 0 else f"Époque {epoch}"
    subtitle = [f"{moment} ; moyenne des graines (trait) et min–max (bande)."]
    if hidden:
        subtitle.append(f"{hidden} valeur(s) nulle(s) ou non finie(s) non tracée(s) (échelle log).")
    default = f"{stat_fr} du signal couche par couche, par {lower_first(legend_title)}"
    return finish(chart, title or default, subtitle, description)


def _signal_rows(frame, color, quantities, stat, epoch, log_y) -> tuple[pd.DataFrame, int, int]:
    """The probe rows of one statistic at one epoch (the earliest unless given), in French,
    and how many values were blanked: non-finite ones, and zeros on a log axis."""
    builder = "layer_stats"
    data = pick(frame, "quantity", quantities, builder)
    data = pick(data, "stat", stat, builder)
    epoch = data["epoch"].min() if epoch is None else epoch
    data = pick(data, "epoch", [epoch], builder).copy()
    check_grid(data, {color}, builder)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    hidden = ~np.isfinite(data["value"]) | ((data["value"] <= 0) if log_y else False)
    data.loc[hidden, "value"] = np.nan
    data["quantity_fr"] = data["quantity"].map(_QUANTITY_TITLES).fillna(data["quantity"])
    data["layer_name"], _ = layer_names(data)
    return data, epoch, int(hidden.sum())


def _depth_axis(agg) -> alt.X:
    """Layers as numbers, input side on the left, one tick per layer."""
    return alt.X(
        "layer:Q",
        title="Couche (1 = près de l'entrée)",
        scale=alt.Scale(nice=False),
        axis=alt.Axis(values=sorted(agg["layer"].unique()), format="d"),
    )


def _quantity_panels(layered, agg):
    """Activations and gradients side by side, each with its own y range (they differ by decades)."""
    panels = list(pd.unique(agg["quantity_fr"]))
    width = max(190, (PLOT_WIDTH - 40) // len(panels))
    return (
        layered.properties(width=width, height=230)
        .facet(
            column=alt.Facet(
                "quantity_fr:N", title=None, sort=panels, header=alt.Header(labelFontSize=13)
            ),
        )
        .resolve_scale(y="independent")
    )


# --------------------------------------------------------------------------- weight norms


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
    require(frame, [facet, "seed", "epoch", "layer", "value"], builder)
    check_grid(frame, {facet}, builder)
    data = frame.copy()
    data["layer_name"], layer_order = layer_names(data)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    data["facet"], facet_order = labels(data, facet)
    agg = seed_stats(data, ["facet", "layer", "layer_name", "epoch"])
    limit_rows(len(agg), builder)
    band, line = band_and_mean_line(
        epoch_axis("Époque (0 = initialisation)"),
        "Norme de Frobenius du noyau",
        alt.Scale(type="log") if log_y else alt.Scale(zero=False),
        _layer_colour(layer_order),
        highlight(layer_order, field="layer_name"),
        tooltip=[
            alt.Tooltip("layer_name:N", title="Couche"),
            alt.Tooltip("epoch:Q", title="Époque"),
            *spread_tooltips("Norme (moyenne)", ".3~g", "Graines"),
        ],
        point_size=25,
    )
    chart = alt.layer(band, line, data=agg).properties(width=PLOT_WIDTH, height=PLOT_HEIGHT)
    if facet:
        chart = _norm_panels(chart, facet_order, facet_title or field_title(facet))
    default = "Norme des poids par couche au fil des époques" + facet_suffix(facet, facet_title)
    subtitle = [seeds_note(int(agg["n"].max()))]
    return finish(chart, title or default, subtitle, description)


def _layer_colour(layer_order) -> alt.Color:
    """One colour per layer in depth order: viridis, dark near the input, light near the output."""
    return alt.Color(
        "layer_name:N",
        title="Couche",
        sort=layer_order,
        legend=LINE_LEGEND,
        scale=viridis_scale(layer_order),
    )


def _norm_panels(chart, facet_order, facet_name):
    """One panel per ``facet`` value, at most three a row so the panels stay readable."""
    columns = min(len(facet_order), 3)
    return chart.properties(
        width=max(150, (PLOT_WIDTH - 20 * columns) // columns), height=200
    ).facet(
        facet=alt.Facet("facet:N", title=facet_name, sort=facet_order),
        columns=columns,
    )


# --------------------------------------------------------------------------- weight histograms


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
    require(frame, [facet, "seed", "epoch", "layer", "bin_left", "bin_right", "count"], builder)
    check_grid(frame, {facet}, builder)
    if epochs is None:
        epochs = sorted({frame["epoch"].min(), frame["epoch"].max()})
    bins, layer_order, facet_order = _histogram_bins(frame, epochs, facet)
    limit_rows(len(bins), builder)
    bins["epoch_label"] = bins["epoch"].map(_epoch_label)
    overlaid = _overlaid_epochs([_epoch_label(e) for e in sorted(epochs)])
    columns = len(facet_order) if facet else 1
    row = alt.Row(
        "layer_name:N",
        title=None,
        sort=layer_order,
        header=alt.Header(labelAngle=0, labelAlign="left", labelFontSize=12),
    )
    facet_name = facet_title or field_title(facet)
    column = {"column": alt.Column("facet:N", title=facet_name, sort=facet_order)} if facet else {}
    chart = (
        overlaid.properties(width=max(130, (PLOT_WIDTH - 30 * columns) // columns), height=70)
        .facet(data=bins, row=row, **column)
        .resolve_scale(x="independent", y="independent")
    )
    default = "Distribution des poids par couche" + facet_suffix(facet, facet_title)
    subtitle = ["Part des poids de la couche dans chaque intervalle (moyenne des graines)."]
    return finish(chart, title or default, subtitle, description)


def _epoch_label(epoch) -> str:
    """'initialisation (0)' or 'époque 10': the legend says which moment a histogram is."""
    return "initialisation (0)" if epoch == 0 else f"époque {epoch}"


def _histogram_bins(frame, epochs, facet) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Each bin's share of its layer's weights, averaged over seeds, with the histograms closed."""
    data = pick(frame.copy(), "epoch", list(epochs), "weight_histograms")
    data["layer_name"], layer_order = layer_names(data)
    data["facet"], facet_order = labels(data, facet)
    group = ["facet", "layer", "epoch", "seed"]
    data["share"] = data["count"] / data.groupby(group)["count"].transform("sum")
    keys = ["facet", "layer", "layer_name", "epoch"]
    bins = data.groupby([*keys, "bin_left", "bin_right"], sort=False)["share"].mean().reset_index()
    return _close_steps(bins.sort_values([*keys, "bin_left"]), keys), layer_order, facet_order


def _close_steps(bins: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add, per histogram, a point at the last bin's right edge so a step-after line draws it."""
    last = bins.groupby(keys, sort=False).tail(1).copy()
    last["bin_left"] = last["bin_right"]
    return pd.concat([bins, last], ignore_index=True).sort_values(
        [*keys, "bin_left"], kind="stable"
    )


def _overlaid_epochs(epoch_order: list[str]):
    """The epochs' histograms overlaid: step outlines over a light fill.

    Overlaid bars would blend into a third colour; outlines stay distinct.
    """
    params, predicate = highlight(epoch_order, field="epoch_label")
    colour = alt.Color(
        "epoch_label:N",
        title="Moment",
        sort=epoch_order,
        legend=LINE_LEGEND,
        scale=color_scale(epoch_order, numeric=len(epoch_order) > 2),
    )
    x = alt.X(
        "bin_left:Q", title="Poids", axis=alt.Axis(format="~g", labelOverlap=True, tickCount=5)
    )
    y = alt.Y("share:Q", title="Part", axis=alt.Axis(format=".0%", tickCount=3))
    fill = (
        alt.Chart()
        .mark_area(interpolate="step-after")
        .encode(x=x, y=y, color=colour, opacity=fade(predicate, 0.18, 0.02))
    )
    outline = (
        alt.Chart()
        .mark_line(interpolate="step-after", strokeWidth=1.6)
        .encode(
            x=x,
            y=y,
            color=colour,
            opacity=fade(predicate),
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
    return alt.layer(fill, outline)
