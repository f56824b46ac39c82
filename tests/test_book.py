"""The book renders: each class of defect a real Quarto render showed is caught here, without Quarto.

Every check (tools/bookcheck.py, tools/outputcheck.py, tools/pdfproxy.py, filters/print-code.lua) is proved on a
good fixture book (tests/fixtures/book) and on broken chapters (tests/fixtures/broken), each
put in place of the fixture's second chapter.  The tests named ``test_the_book_*`` run the
same checks on the real book: they fail until its chapters comply.  Each chapter executes
once per profile, in one test that runs every check of its outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT / "tools"))

import bookcheck  # noqa: E402
import notebooks  # noqa: E402
import outputcheck  # noqa: E402
import pdfproxy  # noqa: E402
import quarto  # noqa: E402
import scratch  # noqa: E402


def fixture_book(tmp_path: Path, second: str | None = None) -> Path:
    """A copy of the good fixture book, its second chapter replaced by ``broken/<second>.qmd``."""
    root = tmp_path / "book"
    shutil.copytree(FIXTURES / "book", root)
    if second:
        shutil.copy(FIXTURES / "broken" / f"{second}.qmd", root / "chapters" / "02-second.qmd")
    return root


def messages(problems) -> str:
    return "\n".join(map(str, problems))


# -- static checks ------------------------------------------------------------------------
def test_the_good_fixture_passes_every_static_check(tmp_path):
    assert bookcheck.check_book(fixture_book(tmp_path)) == []


@pytest.mark.parametrize("broken, check, expected", [
    ("duplicate-label", bookcheck.check_ids,
     ["02-second.qmd:5: label 'fig-premier-courbes' is already defined at chapters/01-premier.qmd:32"]),
    ("dangling-reference", bookcheck.check_references,
     ["02-second.qmd:3: @fig-nulle-part refers to nothing", "@inconnu2020 is neither a cross-reference"]),
    ("dead-link", bookcheck.check_links,
     ["02-second.qmd:3: link target '../_notebooks/03-absent.ipynb' does not exist",
      "02-second.qmd:3: link target 'figures/absente.png' does not exist"]),
    ("web-wording", bookcheck.check_wording,
     ["02-second.qmd:3: 'survol'", "02-second.qmd:3: 'souris'", "02-second.qmd:5: 'zoom'",
      "02-second.qmd:5: 'molette' only makes sense on the website but this fig-cap reaches the PDF"]),
    ("missing-glyph", bookcheck.check_characters, ["02-second.qmd:5: '✅' (U+2705) has no glyph in the PDF fonts"]),
    ("claims", bookcheck.check_claims,
     ['02-second.qmd:3: {expect="second-sans-verdict"} needs exactly one verdicts["second-sans-verdict"]',
      '02-second.qmd:4: {expect="premier-baisse"}: id already used at chapters/01-premier.qmd:18',
      '02-second.qmd:5: {guard="second-sans-garde"} needs exactly one guard("second-sans-garde", …)',
      '02-second.qmd:13: verdicts["second-sans-phrase"] = … needs exactly one […]{expect="second-sans-phrase"}',
      '02-second.qmd:14: guard("second-garde-orpheline", …) needs exactly one']),
    ("long-code", bookcheck.check_code_width,
     ["02-second.qmd:7: this code line has 102 characters and wraps in the PDF (at most 78)",
      "02-second.qmd:19: this code line has 101 characters"]),
    ("late-expectation", bookcheck.check_expectations_first,
     ['02-second.qmd:9: expectation "second-tardive" comes after the first results (cell at line 3)']),
])
def test_each_static_check_fails_on_its_broken_fixture(tmp_path, broken, check, expected):
    root = fixture_book(tmp_path, broken)
    chapters = bookcheck.book(root)
    problems = check(chapters, root)
    text = messages(problems).replace(f"{root}/", "")
    for line in expected:
        assert line in text
    assert len(problems) == len(expected), text


def test_web_only_divs_and_inline_code_are_not_printed_text(tmp_path):
    """The good fixture says "survolez" and "cliquez" inside html-only divs: not flagged."""
    root = fixture_book(tmp_path)
    assert "Survolez" in (root / "chapters" / "01-premier.qmd").read_text(encoding="utf-8")
    assert bookcheck.check_wording(bookcheck.book(root)) == []


def test_the_command_prints_one_line_per_problem_and_exits_1(tmp_path):
    good, broken = fixture_book(tmp_path / "good"), fixture_book(tmp_path / "broken", "duplicate-label")
    command = [sys.executable, str(ROOT / "tools" / "bookcheck.py"), "--root"]
    ok = subprocess.run([*command, str(good)], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, "")
    bad = subprocess.run([*command, str(broken)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout.strip().endswith("labels are global to the book, rename one")
    assert len(bad.stdout.splitlines()) == 1


def test_typst_draws_french_typography_but_not_emoji():
    import glyphs

    assert glyphs.pdf_missing("éàç«»’–—…\u202f\u00a0λ×−±≥²⁻⁴✅") == {"✅"}
    assert glyphs.chart_missing("éλ×−\u202f✅") == {"✅"}


# -- readability metrics (issue 21) --------------------------------------------------------
def test_metrics_count_code_prose_hidden_lines_and_string_tables(tmp_path):
    root = fixture_book(tmp_path, "metrics")
    chapter = bookcheck.book(root)[-1]
    values = bookcheck.metrics(chapter, inline={"a": "un deux", "b": "un deux trois quatre cinq six sept huit"})
    code = sum(len(cell.code) for cell in chapter.cells)
    assert values["code/prose"] == round(code / len("# Second chapitre {#sec-second}\n\nPeu de prose.\n"), 2)
    assert values["hidden lines"] == 8  # option lines count: they are lines of the cell
    assert values["long inline values"] == 1
    assert values["string tables"] == 3  # the f-string row, the header string, the " | ".join
    assert bookcheck.over_limits(values) == [f"code/prose = {values['code/prose']} (limit 1.0)",
                                             "string tables = 3 (limit 0)"]


@pytest.mark.parametrize("code, count", [
    ('row = f"| {name} | {value} |"', 1),
    ('rule = "|---|---|"', 1),
    ('line = " | ".join(cells)', 1),
    ('flags = 1 | 2', 0),
    ('text = "a|b"', 0),
    ('frame.to_markdown()', 0),
])
def test_string_tables_are_table_rows_rules_or_pipe_joins(code, count):
    assert bookcheck.string_tables(code) == count


def test_the_metrics_command_prints_a_table(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bookcheck.py"), "--metrics", "--root",
                             str(fixture_book(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert "| 01-premier.qmd | 0.3 | 10 | – | 0 |" in result.stdout  # 5 lines of code + 5 #| lines


# -- executed chapters ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed_fixtures(tmp_path_factory):
    """The good fixture's chapters and the broken ``outputs`` chapter, each executed once."""
    good, broken = (fixture_book(tmp_path_factory.mktemp(name), second)
                    for name, second in (("good", None), ("outputs", "outputs")))
    return {"good": [quarto.execute(path) for path in quarto.chapters(good)[1:]],
            "outputs": quarto.execute(broken / "chapters" / "02-second.qmd")}


def test_the_good_fixture_passes_the_executed_checks(executed_fixtures):
    for done in executed_fixtures["good"]:
        assert outputcheck.check_executed(done, max_width=640, scale=2) == []


@pytest.mark.parametrize("expected", [
    "02-second.qmd:7: chart is 950 CSS px wide (1900 px PNG), over 640: it would shrink or overflow",
    "02-second.qmd:7: chart is 700 CSS px wide (600 px PNG), over 640",
    "02-second.qmd:7: chart output has ['text/html']: it needs text/html and image/png",
    "02-second.qmd:7: chart output has ['image/png', 'image/svg+xml', 'text/html']",
    "02-second.qmd:7: chart font sizes [8] px under 11 px",
    "02-second.qmd:3: inline `{python} \"97\\u202f%\"` shows a repr escape",
    "02-second.qmd:7: '✅' (U+2705) has no glyph in the PDF fonts",
    "02-second.qmd:7: '✅' (U+2705) has no glyph in vl-convert's fonts (charts)",
    "02-second.qmd:4: 'survolez' only makes sense on the website but this output reaches the PDF",
    "02-second.qmd:7: 'survol' only makes sense on the website but this output reaches the PDF",
    "02-second.qmd:7: a code line of this output has 82 characters and wraps in the PDF (at most 78)",
    "02-second.qmd:7: a line printed by this output has 90 characters and wraps in the PDF (at most 78)",
])
def test_each_executed_check_fails_on_the_broken_outputs(executed_fixtures, expected):
    problems = outputcheck.check_executed(executed_fixtures["outputs"], max_width=640, scale=2)
    assert expected in messages(problems)


def test_printed_text_is_measured_without_its_colours(executed_fixtures):
    problems = outputcheck.check_executed(executed_fixtures["outputs"], max_width=640, scale=2)
    assert [m.split("/")[-1] for m in map(str, problems) if "line printed" in m] == [
        "02-second.qmd:7: a line printed by this output has 90 characters and wraps in the PDF (at most 78): "
        + "=" * 40 + "…"]


def test_the_proxy_prints_text_outputs_as_code_blocks_without_colours(executed_fixtures):
    done = executed_fixtures["outputs"]
    text = pdfproxy.markdown(done.path, done)
    assert "\n" + "─" * 76 + "\n" in text and "=" * 90 in text and "\x1b" not in text


def test_long_inline_values_are_counted_on_executed_values(executed_fixtures):
    chapter = bookcheck.qmd.read(executed_fixtures["outputs"].path)
    assert bookcheck.metrics(chapter, executed_fixtures["outputs"].inline)["long inline values"] == 1


def test_png_size_reads_the_header():
    assert outputcheck.png_size(pdfproxy.PLACEHOLDER) == (4, 3)


# -- the PDF proxy -------------------------------------------------------------------------
def test_the_pdf_proxy_compiles_the_good_fixture(tmp_path):
    assert pdfproxy.compile_pdf(fixture_book(tmp_path))[:4] == b"%PDF"


def test_the_pdf_proxy_compiles_the_good_fixture_with_its_executed_outputs(executed_fixtures):
    root = executed_fixtures["good"][0].path.parents[1]
    executed = {done.path: done for done in executed_fixtures["good"]}
    source = pdfproxy.typst_source(quarto.chapters(root), root, executed)
    assert "0,05 à la fin" in source and "confirmée" in source
    assert pdfproxy.compile_pdf(root, executed=executed)[:4] == b"%PDF"


@pytest.mark.parametrize("broken, error", [
    ("duplicate-label", "typst: label `<fig-premier-courbes>` occurs multiple times in the document"),
    ("dangling-reference", "typst: label `<fig-nulle-part>` does not exist in the document"),
])
def test_the_pdf_proxy_stops_on_typst_errors(tmp_path, broken, error):
    with pytest.raises(pdfproxy.ProxyError) as raised:
        pdfproxy.compile_pdf(fixture_book(tmp_path, broken))
    assert str(raised.value).startswith(error)


# -- the print edition ---------------------------------------------------------------------
QUARTO_CELLS = """\
::: {.cell .print-code execution_count=1}
``` {.python .cell-code}
model.compile(optimizer="sgd")
```
:::

::: {.cell execution_count=2}
``` {.python .cell-code}
plumbing = True
```

::: {.cell-output .cell-output-display}
the output stays
:::
:::

```python
shown_on_purpose = 1
```
"""


def test_print_code_keeps_the_code_of_print_code_cells_and_every_output():
    import pypandoc

    typ = pypandoc.convert_text(QUARTO_CELLS, "typst", format="markdown",
                                extra_args=[f"--lua-filter={pdfproxy.PRINT_FILTER}"])
    assert 'model.compile(optimizer="sgd")' in typ
    assert "the output stays" in typ and "shown_on_purpose = 1" in typ
    assert "plumbing" not in typ


def test_print_code_is_applied_to_the_typst_format_only():
    typst = quarto.config(ROOT)["format"]["typst"]
    assert {"path": "filters/print-code.lua", "at": "pre-ast"} in typst["filters"]
    assert "filters/print-code.lua" not in str(quarto.config(ROOT)["format"]["html"].get("filters"))
    assert (ROOT / "filters" / "print-code.lua").is_file()


@pytest.mark.parametrize("to", ["html", "typst"])
def test_french_spacing_makes_the_spaces_of_high_punctuation_unbreakable(to):
    import pypandoc

    text = "Exactitude : 97 % ; vraiment ? Oui ! Le « petit hasard » reste `a : b` et $x : y$.\nLigne coupée\n: encore"
    out = pypandoc.convert_text(text, to, format="markdown", extra_args=[f"--lua-filter={pdfproxy.SPACING_FILTER}"])
    nbsp, semicolon = ("~", "\\;") if to == "typst" else ("\u00a0", ";")  # Typst writes U+00A0 as ~
    for joined in [f"Exactitude{nbsp}:", f"%\u202f{semicolon}", "vraiment\u202f?", "Oui\u202f!", f"«{nbsp}petit",
                   f"hasard{nbsp}»", f"coupée{nbsp}:"]:  # a source line wrapped before ":" too
        assert joined in out, joined
    assert "a : b" in out and ("x : y" in out or to == "html")  # code and math untouched
    assert str(pdfproxy.SPACING_FILTER.relative_to(ROOT)) in quarto.config(ROOT)["format"][to]["filters"]


def test_the_proxy_prints_only_the_code_of_print_code_cells(tmp_path):
    source = pdfproxy.typst_source(quarto.chapters(fixture_book(tmp_path)), tmp_path / "book")
    assert "results = sweep(" in source  # #| classes: print-code
    assert "from _fixture import chart\n" not in source  # an ordinary cell
    assert "model.fit(x_train" in source  # a ```python block


# -- configuration, notebooks, the quick profile's copy ------------------------------------
def _lists(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _lists(value, path + (key,))
    elif isinstance(node, list):
        yield path


def test_the_quick_profile_repeats_no_list_renders_elsewhere_and_never_freezes():
    base = yaml.safe_load((ROOT / "_quarto.yml").read_text(encoding="utf-8"))
    quick = yaml.safe_load((ROOT / "_quarto-quick.yml").read_text(encoding="utf-8"))
    def get(node, path):
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    # profiles concatenate lists: a list the base also has would repeat its items
    assert [path for path in _lists(quick) if isinstance(get(base, path), list)] == []
    assert quick["project"]["output-dir"] == "_book-quick" != base["project"]["output-dir"]
    assert quick["execute"]["freeze"] is False
    assert quarto.config(ROOT, "quick")["book"]["chapters"] == base["book"]["chapters"]


def test_notebooks_exist_before_the_render_and_reach_the_site():
    project = quarto.config(ROOT)["project"]
    assert project["pre-render"] == "tools/notebooks.py" and (ROOT / project["pre-render"]).is_file()
    assert project["resources"] == [f"{notebooks.FOLDER}/*.ipynb"]
    assert f"/{notebooks.FOLDER}/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_notebooks_are_written_per_chapter_unexecuted(tmp_path):
    root = fixture_book(tmp_path)
    written = notebooks.write(root)
    assert [p.relative_to(root).as_posix() for p in written] == [
        "_notebooks/01-premier.ipynb", "_notebooks/02-second.ipynb"]
    notebook = nbformat.read(written[0], as_version=4)
    nbformat.validate(notebook)
    assert "chapters/01-premier.qmd" in notebook.cells[0].source
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_the_scratch_copy_leaves_out_outputs_freeze_and_data(tmp_path):
    root = fixture_book(tmp_path)
    for name in ("_freeze/x.json", "data/runs/full/r.json", "_book/index.html", "_notebooks/a.ipynb"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    copy = scratch.copy_project(tmp_path / "copy", root)
    assert (copy / "chapters" / "01-premier.qmd").is_file()
    assert not any((copy / name).exists() for name in ("_freeze", "data", "_book", "_notebooks"))
    with pytest.raises(ValueError, match="must be outside"):
        scratch.copy_project(root / "chapters" / "copy", root)
    assert scratch.copy_project(tmp_path / "copy", root) == copy  # an earlier copy is replaced


def test_the_scratch_copy_never_replaces_a_folder_it_did_not_make(tmp_path):
    root = fixture_book(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    for destination in (tmp_path, tmp_path / "notes"):  # the checkout's parent, a user's folder
        with pytest.raises(ValueError, match="not a scratch copy"):
            scratch.copy_project(destination, root)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine" and (root / "_quarto.yml").is_file()


def test_the_workflows_are_valid_github_workflows():
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- make book without Quarto --------------------------------------------------------------
def _fake_checkout(tmp_path: Path, pip_fails: bool = True) -> Path:
    """The Makefiles in a folder whose venv is a stub: its pip fails like quarto-cli offline."""
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    for name in ("Makefile", "book.mk", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, checkout / name)
    python = checkout / ".venv" / "bin" / "python"
    python.write_text("#!/bin/sh\n" + ("echo 'Traceback (most recent call last):' >&2\n"
                                       "echo 'ValueError: nothing to open' >&2\nexit 1\n" if pip_fails else "exit 0\n"))
    python.chmod(0o755)
    (checkout / ".venv" / ".installed-test").touch()
    return checkout


def _make(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(checkout)}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None or os.path.exists("/usr/bin/quarto"),
                    reason="needs make, and no quarto in /usr/bin")
def test_make_book_without_quarto_says_so_in_one_message(tmp_path):
    result = _make(_fake_checkout(tmp_path), "book", "QUARTO=")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(errors) == 1 and errors[0].startswith("Quarto is missing: make book needs Quarto >= 1.10.")
    assert "make book QUARTO=/path/to/quarto" in errors[0] and "Traceback" not in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_book_renders_with_the_quarto_it_is_given(tmp_path):
    checkout = _fake_checkout(tmp_path)
    quarto_bin = tmp_path / "quarto"
    quarto_bin.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\necho "$QUARTO_PYTHON" >> {tmp_path}/args\n')
    quarto_bin.chmod(0o755)
    result = _make(checkout, "book", f"QUARTO={quarto_bin}")
    assert result.returncode == 0, result.stderr
    args, python = (tmp_path / "args").read_text().splitlines()
    assert args == "render --execute-daemon 60"
    assert python == str(checkout / ".venv" / "bin" / "python")


# -- the book itself: these pass once the chapters comply ----------------------------------
BOOK_CHAPTERS = [p.relative_to(ROOT).as_posix() for p in quarto.chapters(ROOT) if p.parent.name == "chapters"]


def test_the_book_passes_every_static_check():
    assert messages(bookcheck.check_book(ROOT)) == ""


@pytest.mark.parametrize("chapter", BOOK_CHAPTERS, ids=lambda chapter: Path(chapter).stem)
def test_the_book_chapter_meets_the_readability_limits(chapter):
    assert bookcheck.over_limits(bookcheck.metrics(bookcheck.qmd.read(ROOT / chapter))) == []


def test_the_book_pdf_proxy_compiles():
    assert pdfproxy.compile_pdf(ROOT)[:4] == b"%PDF"


@pytest.mark.parametrize("profile", ["full", "quick"])
@pytest.mark.parametrize("chapter", BOOK_CHAPTERS, ids=lambda chapter: Path(chapter).stem)
def test_the_book_chapter_executes_and_passes_the_executed_checks(chapter, profile, tmp_path):
    """One execution per chapter and profile, every check of its outputs on it: the full
    profile from a copy of the committed store with ``LABKIT_REQUIRE_CACHED=1`` (nothing
    trains), the quick one in the session's scratch store.  (One test rather than one per
    check: pytest-xdist's loadgroup did not keep grouped tests on one worker here.)"""
    env = {}
    if profile == "full":
        shutil.copytree(ROOT / "data" / "runs" / "full", tmp_path / "runs" / "full")
        env = {"LABKIT_REQUIRE_CACHED": "1", "LABKIT_RUNS_DIR": str(tmp_path / "runs")}
    try:
        done = quarto.execute(ROOT / chapter, profile="quick" if profile == "quick" else "", env=env)
    except quarto.ChapterError as error:
        pytest.fail(f"{chapter} does not execute in the {profile} profile: {error}")
    problems = messages(outputcheck.check_executed(done))
    long = {e: v for e, v in done.inline.items() if len(v.split()) >= bookcheck.LONG_INLINE_WORDS}
    if len(long) > bookcheck.LIMITS["long inline values"]:
        problems += f"\n{len(long)} inline values of {bookcheck.LONG_INLINE_WORDS} words or more: {long}"
    assert problems == ""
