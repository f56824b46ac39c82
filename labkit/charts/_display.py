"""Chart display in a kernel: each distinct Vega-Lite spec is validated once, not at every display.

Altair validates a chart's whole spec (layers, encodings, parameters, transforms;
not the data rows) against the Vega-Lite JSON schema each time the chart is
displayed: up to 0.1 s a chart here (the book's layered charts 0.06–0.09 s), and a
chapter displays about a dozen charts each time it is executed.
Validation is a pure function of the spec and the schema, so its success is
remembered: keyed by the sha256 of the spec's JSON, Altair's version and its
Vega-Lite schema version, in memory and as empty marker files next to the PNG cache
(:func:`labkit.paths.chart_cache_dir`), so that a new kernel benefits too.  A spec
never seen before, or seen and found invalid, is validated exactly as Altair does,
with Altair's error.  Only the successful outcome is stored; deleting the markers
is always safe.

The hook is IPython's mime-bundle formatter registered for Altair's top-level
charts (:func:`register`, called by :func:`labkit.charts.enable`), which IPython
consults before a chart's own ``_repr_mimebundle_``; the bundle then comes from
the active Altair renderer, as in Altair.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import altair as alt

from labkit.paths import chart_cache_dir

__all__ = ["register", "displayed_spec", "validation_key"]

#: Specs known valid in this process (keys of :func:`validation_key`).
_KNOWN_VALID: set[str] = set()
#: The context Altair's own ``_repr_mimebundle_`` builds the spec with.
_DISPLAY_CONTEXT = {"pre_transform": False}


def validation_key(spec: dict) -> str | None:
    """sha256 of what validation depends on, or ``None`` for a spec that is not plain JSON."""
    try:
        text = json.dumps([alt.__version__, alt.SCHEMA_VERSION, spec], separators=(",", ":"),
                          allow_nan=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _marker(key: str) -> Path | None:
    try:
        return chart_cache_dir() / "valid" / key
    except (OSError, RuntimeError):  # e.g. no home folder to put ~/.cache in
        return None


def _known_valid(key: str) -> bool:
    if key in _KNOWN_VALID:
        return True
    marker = _marker(key)
    if marker is not None and marker.is_file():
        _KNOWN_VALID.add(key)
        return True
    return False


def _remember_valid(key: str) -> None:
    _KNOWN_VALID.add(key)
    marker = _marker(key)
    if marker is None:
        return
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # an unwritable cache only costs the next kernel one validation


def displayed_spec(chart: alt.TopLevelMixin) -> dict:
    """The spec Altair would display for ``chart``, validated unless this spec already was.

    Raises Altair's own error for an invalid spec.
    """
    spec = chart.to_dict(validate=False, context=dict(_DISPLAY_CONTEXT))
    key = validation_key(spec)
    if key is not None and _known_valid(key):
        return spec
    spec = chart.to_dict(context=dict(_DISPLAY_CONTEXT))  # validates, raising on an invalid spec
    if key is not None:
        _remember_valid(key)
    return spec


def _mimebundle(chart: alt.TopLevelMixin):
    """What Altair's ``_repr_mimebundle_`` returns, with :func:`displayed_spec`."""
    try:
        spec = displayed_spec(chart)
    except Exception:
        alt.utils.display_traceback(in_ipython=True)  # as Altair: Jupyter would hide the error
        return {}
    renderer = alt.renderers.get()
    return renderer(spec) if renderer else {}


def register() -> None:
    """Display Altair charts through :func:`displayed_spec` in this IPython kernel (if any)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.mimebundle_formatter.for_type(alt.TopLevelMixin, _mimebundle)
