"""The book's Altair theme and renderer: one chart output that serves the HTML site and the PDF.

Quarto picks ``text/html`` for HTML pages and, for Typst/LaTeX, ``image/svg+xml``
before ``image/png`` (GUIDE §2).  The renderer therefore returns interactive HTML
plus a static PNG, and never SVG.  Both speak French: the fr-FR number locale
travels inside each spec (``config.locale``) and is also handed to vega-embed and
vl-convert, so ``0.975`` with format ``.1%`` reads ``97,5 %`` everywhere.

HTML embedding (a decision, see :func:`to_html`): each chart is a small
``<div>`` + script (Altair's "universal" template) that loads vega, vega-lite and
vega-embed **from the jsDelivr CDN, at pinned versions, once per page**.  Inlining
the bundle (``vl_convert.vegalite_to_html(bundle=True)``) costs about 0.9 MB per
chart, repeated for every chart of a page; the CDN scripts are fetched once and
cached across the whole site.  The price: interactive charts need the network
when the page is read (the published site is online anyway); the PDF and the
PNG never do.

Drawing the PNG is the slow part (0.1–0.9 s a chart, against a few ms for the
HTML), so :func:`to_png` keeps each drawing in a content-addressed cache
(:mod:`labkit.charts._png_cache`): re-executing a chapter whose charts did not
change draws nothing and returns the same bytes.
"""

from __future__ import annotations

import base64
import struct
import uuid
from pathlib import Path

import altair as alt
import vl_convert as vlc
from altair.utils.html import spec_to_html

from labkit.charts._png_cache import cached_png

__all__ = [
    "THEME_NAME",
    "RENDERER_NAME",
    "OKABE_ITO",
    "PNG_SCALE",
    "theme_config",
    "theme",
    "enable",
    "render",
    "to_html",
    "to_png",
    "to_svg",
]

THEME_NAME = "labkit"
RENDERER_NAME = "labkit"
#: Static images are drawn at twice the nominal size: sharp on screens and in print.
PNG_SCALE = 2
#: Okabe & Ito's colour-blind-safe palette, yellow last (it is faint on white).
OKABE_ITO = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#56B4E9",
    "#CC79A7",
    "#000000",
    "#F0E442",
]
#: Width of one plot area; with axes and a legend a chart is about 640 px wide,
#: the width of Quarto's body column.
PLOT_WIDTH = 440
PLOT_HEIGHT = 270

_LOCALE = "fr-FR"
_CDN = "https://cdn.jsdelivr.net/npm"
# The versions vl-convert draws the PNG with: the page shows the same chart.
_VL_MINOR = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
_VL_VERSION = (
    "v" + _VL_MINOR.replace(".", "_") if _VL_MINOR in vlc.get_vegalite_versions() else None
)
_VERSIONS = {
    "vega_version": vlc.get_vega_version(),
    "vegalite_version": alt.SCHEMA_VERSION.lstrip("v"),
    "vegaembed_version": vlc.get_vega_embed_version(),
}
_EMBED_I18N = {
    "CLICK_TO_VIEW_ACTIONS": "Cliquer pour voir les actions",
    "PNG_ACTION": "Enregistrer en PNG",
    "SVG_ACTION": "Enregistrer en SVG",
    "SOURCE_ACTION": "Voir la source",
    "COMPILED_ACTION": "Voir le Vega compilé",
    "EDITOR_ACTION": "Ouvrir dans l'éditeur Vega",
}


def _locales() -> dict:
    return {
        "number": vlc.get_format_locale(_LOCALE),
        "time": vlc.get_time_format_locale(_LOCALE),
    }


def theme_config() -> dict:
    """The theme as a Vega-Lite top-level fragment (sizes, fonts, colours, fr-FR locale)."""
    axis = {
        "labelFontSize": 11,
        "titleFontSize": 12,
        "titleFontWeight": "normal",
        "titleColor": "#333",
        "labelColor": "#333",
        "gridColor": "#e8e8e8",
        "domainColor": "#888",
        "tickColor": "#888",
    }
    return {
        "config": {
            "background": "white",
            "locale": _locales(),
            "view": {
                "continuousWidth": PLOT_WIDTH,
                "continuousHeight": PLOT_HEIGHT,
                "stroke": "#ddd",
            },
            "title": {
                "fontSize": 15,
                "fontWeight": "bold",
                "anchor": "start",
                "subtitleFontSize": 12,
                "subtitleColor": "#555",
                "offset": 10,
            },
            "axis": axis,
            "legend": {
                "labelFontSize": 11,
                "titleFontSize": 12,
                "titleFontWeight": "normal",
                "labelLimit": 220,
                "symbolStrokeWidth": 2,
            },
            "header": {
                "labelFontSize": 12,
                "titleFontSize": 12,
                "titleFontWeight": "normal",
            },
            "range": {"category": OKABE_ITO},
            "line": {"strokeWidth": 2},
            "text": {"fontSize": 11},
        }
    }


def _theme():
    return theme_config()


def _register_theme() -> None:
    if THEME_NAME not in alt.theme.names():
        alt.theme.register(THEME_NAME, enable=False)(_theme)


def theme() -> None:
    """Enable the labkit theme (registered on import)."""
    _register_theme()
    alt.theme.enable(THEME_NAME)


def to_html(spec: dict, output_div: str | None = None) -> str:
    """An HTML fragment that draws ``spec`` interactively with vega-embed.

    Altair's "universal" template loads the three libraries from the CDN once per
    page (later charts find them already loaded) and works with or without
    require.js, which Quarto adds on some pages.  Vega/vega-embed versions are
    those vl-convert draws the PNG with, so the page and the PDF show one chart.
    """
    embed_options = {
        "renderer": "svg",
        "formatLocale": vlc.get_format_locale(_LOCALE),
        "timeFormatLocale": vlc.get_time_format_locale(_LOCALE),
        "actions": {"export": True, "source": False, "compiled": False, "editor": False},
        "i18n": _EMBED_I18N,
        "downloadFileName": "figure",
    }
    return spec_to_html(
        spec,
        mode="vega-lite",
        base_url=_CDN,
        output_div=output_div or f"labkit-chart-{uuid.uuid4().hex[:12]}",
        embed_options=embed_options,
        fullhtml=False,
        template="universal",
        **_VERSIONS,
    )


def _spec(chart) -> dict:
    return chart if isinstance(chart, dict) else chart.to_dict()


def to_png(chart, path: str | Path | None = None, scale: float = PNG_SCALE) -> bytes:
    """Draw ``chart`` (an Altair chart or a Vega-Lite dict) as PNG bytes, offline.

    The image has ``scale`` pixels per chart pixel and records 96 × ``scale`` dpi,
    so a PDF places it at the chart's CSS size rather than ``scale`` times larger.
    Written to ``path`` too when one is given.  Drawn once per content: the same
    spec with the same options is read back from the chart cache.
    """
    spec = _spec(chart)
    # vl-convert multiplies pixels by scale × ppi / 72; ask for `scale` pixels at 96·scale ppi.
    options = {
        "vl_version": _VL_VERSION,
        "scale": 72 / 96,
        "ppi": 96 * scale,
        "format_locale": _LOCALE,
        "time_format_locale": _LOCALE,
    }
    engine = {"vl_convert": vlc.__version__, "options": options}
    png = cached_png(spec, engine, lambda: vlc.vegalite_to_png(spec, **options))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(png)
    return png


def to_svg(chart) -> str:
    """Draw ``chart`` as SVG text (for checks: the renderer never emits SVG)."""
    return vlc.vegalite_to_svg(
        _spec(chart),
        vl_version=_VL_VERSION,
        format_locale=_LOCALE,
        time_format_locale=_LOCALE,
    )


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def render(spec: dict, **metadata) -> tuple[dict, dict]:
    """Altair renderer: ``text/html`` (interactive) and ``image/png`` (static), no SVG.

    The PNG metadata gives the nominal size so notebooks show it at 1×, not 2×.
    """
    png = to_png(spec)
    width, height = _png_size(png)
    bundle = {
        "text/html": to_html(spec),
        "image/png": base64.b64encode(png).decode("ascii"),
    }
    meta = {"image/png": {"width": round(width / PNG_SCALE), "height": round(height / PNG_SCALE)}}
    return bundle, meta


def _register_renderer() -> None:
    if RENDERER_NAME not in alt.renderers.names():
        alt.renderers.register(RENDERER_NAME, render)


def enable() -> None:
    """Use the labkit renderer and theme for every chart displayed from now on; in a kernel,
    validate each distinct spec once (:mod:`labkit.charts._display`)."""
    from labkit.charts import _display

    _register_renderer()
    theme()
    alt.renderers.enable(RENDERER_NAME)
    _display.register()


_register_theme()
_register_renderer()
