"""Checks of an executed chapter: what its outputs and inline values put in the PDF.

A chapter executed by ``tools/quarto.py`` (as Quarto's Jupyter engine runs it) is checked
for what the sources alone cannot show: the charts' outputs and width, the characters and
wording of inline values, tables and chart text.  ``tests/test_book.py`` executes each
chapter once per profile and runs these checks on it.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import glyphs  # noqa: E402
import qmd  # noqa: E402
import quarto  # noqa: E402
from bookcheck import CODE_WIDTH, WEB_ONLY, Problem  # noqa: E402

#: Chart legibility in print.  The PDF's text column is labkit.charts.MAX_WIDTH = 640 CSS px
#: wide (A4, 10 pt, Quarto's Typst margins).  A chart's CSS width is the width its output's
#: metadata declares (labkit's renderer gives it), else its PNG's pixels / 2 (the PNG twin is
#: drawn 2 device px per CSS px, and records 192 dpi so that Typst prints it at CSS size).
#: Rule: CSS width ≤ MAX_WIDTH, so the chart prints at its own size, never shrunk, and its
#: fonts, all ≥ 11 CSS px (checked on its spec), print at ≥ 11 px = 8.25 pt.
MIN_FONT_PX = 11
DEFAULT_SCALE = 2
#: Terminal colours (Keras' ``summary()`` prints through rich): Quarto strips them from the
#: text outputs it prints in the PDF.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def png_size(data: str | bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its header (base64 text as in a notebook, or bytes)."""
    raw = base64.b64decode(data) if isinstance(data, str) else data
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", raw[16:24])


def chart_specs(html: str) -> list[dict]:
    """The Vega-Lite specs embedded in an HTML output (the JSON object holding ``$schema``)."""
    decoder, specs, position = json.JSONDecoder(), [], 0
    for match in re.finditer(r"[(=,:]\s*(\{)", html):
        if match.start(1) < position:
            continue
        try:
            value, end = decoder.raw_decode(html, match.start(1))
        except ValueError:
            continue
        if isinstance(value, dict) and "$schema" in value:
            specs.append(value)
            position = end
    return specs


_DRAWN_KEYS = {"title", "subtitle", "text", "labelExpr"}


def chart_texts(spec) -> list[str]:
    """Every string a chart may draw: titles, subtitles, text marks, axis and legend titles,
    and string values of its data (tick labels, legend entries)."""
    found = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in _DRAWN_KEYS and isinstance(value, (str, list)):
                found += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
            elif key in ("datasets", "values"):
                rows = value.values() if isinstance(value, dict) else [value]
                found += [v for rows_ in rows if isinstance(rows_, list) for row in rows_ if isinstance(row, dict)
                          for v in row.values() if isinstance(v, str)]
            else:
                found += chart_texts(value)
    elif isinstance(spec, list):
        for item in spec:
            found += chart_texts(item)
    return found


def chart_font_sizes(spec) -> list[float]:
    """Every font size a spec sets (``fontSize``, ``titleFontSize``, ``labelFontSize``…)."""
    if isinstance(spec, dict):
        return [v for k, v in spec.items() if k.lower().endswith("fontsize") and isinstance(v, (int, float))] + [
            size for v in spec.values() for size in chart_font_sizes(v)]
    if isinstance(spec, list):
        return [size for item in spec for size in chart_font_sizes(item)]
    return []


def _is_chart(data: dict) -> bool:
    return "image/png" in data or "vega" in str(data.get("text/html", "")).lower()


def _printed_output(output: dict) -> str:
    """The text an output puts in the PDF (Quarto prefers markdown, then plain text)."""
    if output.get("output_type") == "stream":
        return ANSI.sub("", str(output.get("text", "")))
    data = output.get("data", {})
    if _is_chart(data):
        return ""
    return str(data.get("text/markdown") or ANSI.sub("", str(data.get("text/plain") or "")))


def printed_text(output: dict) -> str | None:
    """The text an output prints as a code block in the PDF (a stream, or a display whose
    only printable form is plain text: Keras' ``summary()``), colours stripped; else None."""
    data = output.get("data", {})
    if output.get("output_type") == "stream" or not ({"text/markdown", "image/png"} & set(data)):
        return _printed_output(output) or None
    return None


def _cells_with_outputs(done: quarto.Executed):
    chapter = qmd.read(done.path)
    code_cells = [c for c in done.notebook.cells if c.cell_type == "code"]
    for source_cell, cell in zip(chapter.cells, code_cells):
        if source_cell.web_only or source_cell.options.get("include") is False \
                or source_cell.options.get("output") is False:
            continue
        yield source_cell, cell.get("outputs", [])


def check_executed(done: quarto.Executed, *, max_width: int | None = None, scale: float | None = None,
                   chart_font: str | None = None) -> list[Problem]:
    """Rules on an executed chapter (what the PDF gets from its outputs):

    - every chart output has ``text/html`` (website) and ``image/png`` (PDF), and no
      ``image/svg+xml`` (Quarto's Typst path would take the SVG first);
    - every chart is at most ``max_width`` CSS px wide (see ``MIN_FONT_PX``: declared width,
      else PNG pixels / ``scale``) and every font size its spec sets is ≥ 11 px;
    - no inline value shows a repr escape (``\\u202f``) instead of its character;
    - every character of inline values, Markdown/plain/stream outputs is drawable by the
      PDF fonts, every character of chart text by vl-convert;
    - no website-only wording in inline values, outputs or chart text;
    - no line of a code block printed by an output (a function's source shown verbatim)
      longer than ``bookcheck.CODE_WIDTH`` characters.
    """
    if max_width is None or scale is None:
        from labkit import charts

        max_width = charts.MAX_WIDTH if max_width is None else max_width
        scale = DEFAULT_SCALE if scale is None else scale
    problems, printed, chart_text = [], [], []
    for source_cell, outputs in _cells_with_outputs(done):
        where = (done.path, source_cell.line)
        for output in outputs:
            data = output.get("data", {})
            printed.append((where, _printed_output(output)))
            problems += _wide_lines(where, _fenced_lines(str(data.get("text/markdown", ""))),
                                    "code line of this output")
            problems += _wide_lines(where, (printed_text(output) or "").splitlines(),
                                    "line printed by this output")
            if not _is_chart(data):
                continue
            missing = [m for m in ("text/html", "image/png") if m not in data]
            if missing or "image/svg+xml" in data:
                problems.append(Problem(*where, f"chart output has {sorted(data)}: it needs text/html and "
                                                "image/png, and no image/svg+xml"))
            if "image/png" in data:
                pixels, _ = png_size(data["image/png"])
                width = output.get("metadata", {}).get("image/png", {}).get("width") or pixels / scale
                if width > max_width:
                    problems.append(Problem(*where, f"chart is {width:g} CSS px wide ({pixels} px PNG), over "
                                                    f"{max_width}: it would shrink or overflow the PDF column"))
            for spec in chart_specs(str(data.get("text/html", ""))):
                small = sorted({s for s in chart_font_sizes(spec) if s < MIN_FONT_PX})
                if small:
                    problems.append(Problem(*where, f"chart font sizes {small} px under {MIN_FONT_PX} px"))
                chart_text += [(where, text) for text in chart_texts(spec)]
    first_use = {}  # expression → line of its first use in the prose
    for line in qmd.read(done.path).prose:
        for match in qmd.INLINE.finditer(line.text):
            first_use.setdefault(match.group(1).strip(), line.number)
    for expression, value in done.inline.items():
        printed.append(((done.path, first_use.get(expression, 1)), value))
        if re.search(r"\\+[ux][0-9a-fA-F]{2}", value):
            problems.append(Problem(done.path, first_use.get(expression, 1),
                                    f"inline `{{python}} {expression}` shows a repr escape: {value!r}; "
                                    "return a str (labkit.fr) rather than a repr"))
    problems += _character_problems(printed, glyphs.pdf_missing, "the PDF fonts")
    problems += _character_problems(chart_text, lambda cs: glyphs.chart_missing(cs, chart_font),
                                    "vl-convert's fonts (charts)")
    for where, text in printed + chart_text:
        problems += [Problem(*where, f"{m.group(0)!r} only makes sense on the website but this output "
                                     "reaches the PDF") for m in WEB_ONLY.finditer(text)]
    return problems


def _wide_lines(where, lines, what: str) -> list[Problem]:
    """Lines printed in a code block of the PDF that wrap (``what``: whose lines they are)."""
    return [Problem(*where, f"a {what} has {len(line)} characters and wraps in the PDF "
                            f"(at most {CODE_WIDTH}): {line.strip()[:40]}…")
            for line in lines if len(line) > CODE_WIDTH]


def _fenced_lines(markdown: str) -> list[str]:
    """The lines of a Markdown output's fenced code blocks (a function's source shown)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines()]


def _character_problems(texts, missing_of, fonts: str) -> list[Problem]:
    where: dict[str, tuple[Path, int]] = {}
    for place, text in texts:
        for character in text:
            where.setdefault(character, place)
    return [Problem(*where[c], f"{glyphs.describe([c])} has no glyph in {fonts}: it prints as a box")
            for c in sorted(missing_of(set(where)))]
