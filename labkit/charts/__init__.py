"""Altair chart builders for the book's figures, with French labels, the labkit theme and renderer.

Every builder takes a tidy DataFrame (a sweep's history or a probe frame),
aggregates it in pandas (mean and min–max over seeds) so the chart embeds at most
:data:`MAX_ROWS` rows, and returns a titled Altair chart whose ``description``
serves as alt text.  Diverged runs are never dropped: their configuration is
flagged in the legend ("divergé : 2/3") and the subtitle, and a cross marks their
last finite value.  Call :func:`enable` once (the chapters' hidden set-up cell) to
get the theme and the renderer that emits interactive HTML plus a PNG.

One module per kind of figure: :mod:`~labkit.charts.curves` (training curves),
:mod:`~labkit.charts.grids` (comparisons across settings), :mod:`~labkit.charts.layers`
(probes inside the network), :mod:`~labkit.charts.regression` (regression
diagnostics); the internal modules hold what they share (``_french``, ``_checks``,
``_seeds``, ``_style``) and the theme and renderer (``_renderer``).
"""

# Besides __all__, the names the flat module had stay reachable (noqa: F401): chapter 4
# reads ``charts.OKABE_ITO`` for its own charts, the tests ``charts._value_label``.
from labkit.charts._checks import MAX_ROWS
from labkit.charts._french import FIELD_TITLES, METRIC_TITLES, SPLIT_TITLES  # noqa: F401
from labkit.charts._french import field_title
from labkit.charts._french import value_label as _value_label  # noqa: F401
from labkit.charts._renderer import OKABE_ITO, PLOT_HEIGHT, PLOT_WIDTH  # noqa: F401
from labkit.charts._renderer import enable, theme, to_png
from labkit.charts._style import DROPDOWN_ABOVE, FADED, SUBTITLE_CHARS  # noqa: F401
from labkit.charts.curves import final_metric, learning_curves
from labkit.charts.grids import heatmap, metric_by
from labkit.charts.layers import layer_stats, weight_histograms, weight_norms
from labkit.charts.regression import predicted_vs_actual, residuals

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
