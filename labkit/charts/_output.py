"""The book's look and its one chart output: the labkit theme, and a renderer whose
mimebundle serves both formats, interactive HTML for the site and a PNG for the PDF.

Quarto takes ``text/html`` for a web page and, for Typst or LaTeX, ``image/svg+xml``
before ``image/png`` (GUIDE §2): the bundle holds HTML and PNG and never SVG.  The
French number locale (decimal comma, narrow no-break spaces) travels in each spec's
``config.locale`` and is also handed to vega-embed and vl-convert, so ``0.975`` with
the format ``.1%`` reads ``97,5 %`` on the page, in the PNG and in ``chart.save()``.

Drawing a PNG takes 0.1 to 1 s a chart, against a few milliseconds for the HTML, and a
chapter is executed again and again with the same charts (each format, each render):
each drawing is kept in ``settings.cache_dir("charts")``, named by the sha256 of the spec
and the drawing options.  Deleting that folder only costs time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import uuid
from pathlib import Path

import altair as alt
import vl_convert as vlc
from altair.utils.html import spec_to_html

from labkit import settings
from labkit.store import write_atomically

__all__ = ["MAX_WIDTH", "PNG_SCALE", "OKABE_ITO", "FRENCH", "enable", "render", "to_png", "width_of"]

#: The PDF's text column (10 pt, A4) in CSS pixels: no chart may be wider, legends included.
MAX_WIDTH = 640
#: PNG pixels per CSS pixel: sharp in print, placed at its CSS size (the PNG records 96 × 2 dpi).
PNG_SCALE = 2
#: Okabe & Ito's colour-blind-safe palette; the faint yellow comes last.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442"]
#: d3-format's French locale: 1 234,5 · 97,5 % · −0,3 (narrow no-break spaces, minus sign).
FRENCH = {"decimal": ",", "thousands": "\u202f", "grouping": [3], "currency": ["", "\u00a0$"],
          "percent": "\u202f%", "minus": "\u2212"}
NAME = "labkit"
_VEGALITE = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]  # "6.4": the PNG draws what Altair wrote


def _theme() -> alt.theme.ThemeConfig:
    """Fonts of at least 11 px (titles 14, subtitles 12), legends under the plot, French numbers."""
    plain = {"titleFontWeight": "normal", "titleColor": "#222", "labelColor": "#222"}
    return {"config": {
        "locale": {"number": FRENCH},
        "background": "white",
        # DejaVu Sans has every glyph the labels use (10⁻⁵, λ, ∂, →); Liberation Sans, vl-convert's
        # default, lacks the superscript minus, and a label that has one was drawn in a serif.
        "font": "DejaVu Sans, Verdana, sans-serif",
        "view": {"stroke": None},
        "title": {"fontSize": 14, "subtitleFontSize": 12, "subtitleColor": "#444", "anchor": "start",
                  "offset": 8},
        "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#e6e6e6", **plain},
        "legend": {"labelFontSize": 11, "titleFontSize": 12, "orient": "bottom", "labelLimit": 300,
                   "layout": {"bottom": {"margin": 24}}, **plain},  # room between two legends side by side
        "header": {"labelFontSize": 12, "titleFontSize": 12, **plain},
        "text": {"fontSize": 11},
        "range": {"category": OKABE_ITO},
        "facet": {"spacing": 14},
        "concat": {"spacing": 14},
    }}


def to_png(chart, scale: float = PNG_SCALE) -> bytes:
    """The chart (Altair or a Vega-Lite dict) drawn offline, ``scale`` pixels per CSS pixel;
    read from the chart cache when this spec was drawn before."""
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    # vl-convert draws scale × ppi / 72 pixels per CSS pixel; record 96·scale dpi so that a PDF
    # places the image at its CSS size instead of `scale` times larger.
    options = {"vl_version": _VEGALITE, "scale": 72 / 96, "ppi": 96 * scale, "format_locale": FRENCH}
    key = hashlib.sha256(json.dumps([vlc.__version__, options, spec], sort_keys=True).encode()).hexdigest()
    path = settings.cache_dir("charts") / f"{key}.png"
    try:
        png = path.read_bytes()
        if png.startswith(b"\x89PNG") and png.endswith(b"IEND\xaeB`\x82"):  # whole, not cut short
            return png
    except OSError:
        pass
    png = vlc.vegalite_to_png(spec, **options)
    _keep(path, png)
    return png


def _keep(path: Path, content: bytes) -> None:
    """Write atomically: a reader never sees half a PNG.  A cache that cannot be written only
    costs time."""
    try:
        write_atomically(path, content)
    except OSError:
        pass


def _png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])  # the IHDR chunk: width, height


def width_of(chart) -> int:
    """The chart's drawn width in CSS pixels, legends, facets and paddings included."""
    return _png_size(to_png(chart, scale=1))[0]


def _html(spec: dict) -> str:
    """A vega-embed ``<div>`` with tooltips; vega loads once per page from the CDN."""
    return spec_to_html(spec, mode="vega-lite", vega_version=alt.VEGA_VERSION,
                        vegalite_version=alt.VEGALITE_VERSION, vegaembed_version=alt.VEGAEMBED_VERSION,
                        output_div=f"labkit-chart-{uuid.uuid4().hex[:12]}", fullhtml=False,
                        template="universal", embed_options={"formatLocale": FRENCH, "actions": False})


def render(spec: dict, **_) -> tuple[dict, dict]:
    """Altair renderer: interactive ``text/html`` and a static ``image/png``, no SVG.

    The PNG's metadata gives its CSS size, so a notebook shows it at 1×, not 2×.
    """
    png = to_png(spec)
    width, height = _png_size(png)
    bundle = {"text/html": _html(spec), "image/png": base64.b64encode(png).decode("ascii")}
    return bundle, {"image/png": {"width": width // PNG_SCALE, "height": height // PNG_SCALE}}


def enable() -> None:
    """Use the labkit theme and renderer for every chart from now on (idempotent)."""
    if NAME not in alt.theme.names():
        alt.theme.register(NAME, enable=False)(_theme)
    alt.theme.enable(NAME)
    if NAME not in alt.renderers.names():
        alt.renderers.register(NAME, render)
    alt.renderers.enable(NAME)
