"""Altair figures for the book: French labels, the spread over seeds, diverged runs in view,
one output that is interactive on the website and a PNG in the PDF.

Every builder takes a tidy pandas frame (a sweep's history or ``final``, a probe, a
dataset), aggregates it in pandas so the chart embeds few rows, and returns a titled
Altair chart whose ``description`` is its alt text.  Every chart fits the PDF's text
column (:data:`MAX_WIDTH` CSS pixels, legends and panels included) with fonts of 11 px
or more, and names categories with the Okabe–Ito colours.  Call :func:`enable` once,
in a chapter's hidden set-up cell.

    curves         a measure over epochs (or layers): mean over seeds, min–max band
    by             a measure against a setting: seeds as points, mean as a line or bar
    heatmap        a two-way grid: mean and ± spread in each cell, darker is better
    histograms     weight histograms as density steps (rows of layers, columns of λ)
    scatter        predicted vs actual, residuals with a binned-median trend
    distributions  one small histogram per column of a dataset
"""

from labkit.charts._output import FRENCH, MAX_WIDTH, OKABE_ITO, enable, to_png, width_of
from labkit.charts._training import by, curves, heatmap
from labkit.charts._values import distributions, histograms, scatter

__all__ = [
    # set-up and output
    "enable", "to_png", "width_of", "MAX_WIDTH", "OKABE_ITO", "FRENCH",
    # builders
    "curves", "by", "heatmap", "histograms", "scatter", "distributions",
]
