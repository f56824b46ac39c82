"""Render the quick profile with a real Quarto, as ``make quick`` does, and check the result.

Skipped where ``quarto`` is not on PATH (the team's machines); the publishing workflow
runs it.  The render happens in a scratch copy of the sources (tools/scratch.py), so the
working tree's ``_freeze/`` is never touched, and the kernel's Python is set here
(``QUARTO_PYTHON``): run straight through pytest, Quarto would otherwise pick a Python
without labkit or Jupyter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import quarto  # noqa: E402
import scratch  # noqa: E402

QUARTO = shutil.which("quarto")
pytestmark = pytest.mark.skipif(QUARTO is None, reason="quarto is not on PATH: the render test needs Quarto")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """The quick profile rendered (HTML and PDF) from a scratch copy of the sources."""
    copy = scratch.copy_project(tmp_path_factory.mktemp("render") / "book")
    env = {**os.environ, "QUARTO_PYTHON": sys.executable,
           "LABKIT_DATA_DIR": os.environ.get("LABKIT_DATA_DIR", str(ROOT / "data"))}
    result = subprocess.run([QUARTO, "render", str(copy), "--profile", "quick"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return copy / "_book-quick"


def test_every_chapter_has_its_page(rendered):
    for chapter in quarto.chapters(ROOT):
        page = chapter.relative_to(ROOT).with_suffix(".html")
        assert (rendered / page).is_file(), f"no page {page}"


def test_no_reference_is_left_unresolved(rendered):
    unresolved = {page.relative_to(rendered).as_posix(): len(re.findall("quarto-unresolved-ref", page.read_text()))
                  for page in rendered.rglob("*.html")}
    assert {page: count for page, count in unresolved.items() if count} == {}


def test_the_pdf_has_pages(rendered):
    from pypdf import PdfReader

    pdfs = sorted(rendered.glob("*.pdf"))
    assert pdfs, f"no PDF in {rendered}"
    assert len(PdfReader(pdfs[0]).pages) > 1
