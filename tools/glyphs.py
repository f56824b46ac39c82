"""Which characters the book's PDF fonts and its chart renderer can draw, asked of each.

The PDF is typeset by Typst with the fonts it embeds (Libertinus Serif for text, New
Computer Modern Math, DejaVu Sans Mono for code; Quarto's Typst is the same build) and
falls back from one to the next; a character none of them has prints as a missing-glyph
box (the real render printed ``✅`` so).  Charts are PNGs drawn by vl-convert with the
fonts it finds on the machine that executes the chapters.

Rather than a list of code points kept by hand, each engine is asked: every character is
typeset alone, and one that comes out exactly like an unassigned code point (U+0378,
which no font has) is not drawable.  Typst runs with system fonts ignored, so the answer
is the same on every machine: the fonts every PDF of the book is guaranteed to have.
The chart answer is for the machine running the check: the team's machines and CI are of
one kind; a render elsewhere draws charts with that machine's fonts.
"""

from __future__ import annotations

import json
from functools import lru_cache

#: An unassigned code point: every engine draws it as "no glyph".
NOTHING = "\u0378"


def _typst_page(character: str) -> str:
    return (f'#page(width: auto, height: auto, margin: 2pt)'
            f'[#text(size: 24pt, "x\\u{{{ord(character):x}}}x")]')


@lru_cache(maxsize=64)
def _pdf_missing(characters: frozenset[str]) -> frozenset[str]:
    import typst

    ordered = sorted(characters) + [NOTHING]
    source = '#set text(font: "Libertinus Serif")\n' + "\n".join(map(_typst_page, ordered))
    pages = typst.compile(source.encode(), format="png", ppi=72, ignore_system_fonts=True)
    pages = pages if isinstance(pages, list) else [pages]
    return frozenset(c for c, page in zip(ordered, pages[:-1]) if page == pages[-1])


def pdf_missing(characters) -> set[str]:
    """The characters Typst's embedded fonts cannot draw (ASCII is never asked)."""
    asked = frozenset(c for c in characters if ord(c) > 126)
    return set(_pdf_missing(asked)) if asked else set()


def _vega_text(character: str, font: str | None) -> dict:
    text = {"x": {"value": 4}, "y": {"value": 24}, "text": {"value": f"x{character}x"},
            "fontSize": {"value": 20}, **({"font": {"value": font}} if font else {})}
    return {"$schema": "https://vega.github.io/schema/vega/v5.json", "width": 60, "height": 32,
            "marks": [{"type": "text", "encode": {"enter": text}}]}


@lru_cache(maxsize=64)
def _chart_missing(characters: frozenset[str], font: str | None) -> frozenset[str]:
    import vl_convert

    nothing = vl_convert.vega_to_png(json.dumps(_vega_text(NOTHING, font)), scale=1)
    return frozenset(c for c in characters
                     if vl_convert.vega_to_png(json.dumps(_vega_text(c, font)), scale=1) == nothing)


def chart_missing(characters, font: str | None = None) -> set[str]:
    """The characters vl-convert cannot draw in ``font`` (default: Vega's sans-serif)."""
    asked = frozenset(c for c in characters if ord(c) > 126)
    return set(_chart_missing(asked, font)) if asked else set()


def describe(characters) -> str:
    """``'✅' (U+2705)`` for each character, for messages."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in sorted(characters))
