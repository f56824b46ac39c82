"""Render the book with Quarto (quick profile) and check the HTML pages and the PDF.

Needs the ``quarto`` binary (the publishing workflow installs it); skipped
otherwise.  The render happens in a temporary copy of the sources, as
``make quick`` does, so the working tree's ``_freeze/`` is never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit import quarto

ROOT = Path(__file__).resolve().parents[1]
QUARTO = shutil.which("quarto")
BANNER = "Brouillon — profil quick, résultats non représentatifs"

pytestmark = [
    pytest.mark.render,
    pytest.mark.skipif(QUARTO is None, reason="quarto is not on PATH: the render test needs the Quarto binary"),
]

# Placeholder chapters have no chart yet; kept in step with test_book.STRUCTURE_OPT_OUT.
from test_book import STRUCTURE_OPT_OUT  # noqa: E402


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """The quick profile rendered (HTML and PDF) from a copy of the sources."""
    copy = quarto.copy_project(tmp_path_factory.mktemp("render") / "book", ROOT)
    env = dict(os.environ)
    env.setdefault("LABKIT_RUNS_DIR", str(ROOT / "data" / "runs"))
    env.setdefault("LABKIT_DATA_DIR", str(ROOT / "data"))
    result = subprocess.run(
        [QUARTO, "render", str(copy), "--profile", "quick", "--no-execute-daemon"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return copy / "_book-quick"


def _pages() -> list[tuple[str, str]]:
    return [
        (chapter.relative_to(ROOT).as_posix(), chapter.relative_to(ROOT).with_suffix(".html").as_posix())
        for chapter in quarto.book_chapters(ROOT)
    ]


def test_every_chapter_has_its_page_with_the_draft_banner(rendered):
    for chapter, page in _pages():
        path = rendered / page
        assert path.is_file(), f"{chapter} has no page {page}"
        assert BANNER in path.read_text(encoding="utf-8"), f"{page} lacks the quick banner"


def test_charts_are_embedded_interactive(rendered):
    for chapter, page in _pages():
        if chapter.startswith("chapters/") and chapter not in STRUCTURE_OPT_OUT:
            html = (rendered / page).read_text(encoding="utf-8")
            assert "vega" in html.lower(), f"{page}: no Vega chart embedded"


def _page_count(pdf: Path) -> int:
    try:
        from pypdf import PdfReader
    except ImportError:
        data = pdf.read_bytes()
        counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", data, re.S)]
        return max(counts, default=len(re.findall(rb"/Type\s*/Page\b", data)))
    return len(PdfReader(str(pdf)).pages)


def test_the_pdf_is_a_book(rendered):
    pdfs = sorted(rendered.glob("*.pdf"))
    assert pdfs, f"no PDF in {rendered}"
    assert pdfs[0].read_bytes()[:4] == b"%PDF"
    assert _page_count(pdfs[0]) > 1
