"""Checks of the book's sources for the defects a real Quarto render showed, without Quarto.

Each check returns problems as ``file:line: message`` and states its rule; the command
prints one line per problem and exits 1 when there is any::

    python tools/bookcheck.py             # every static check over the book (_quarto.yml)
    python tools/bookcheck.py --metrics   # readability metrics per chapter (issue 21)

Static checks read the ``.qmd`` files (``tools/qmd.py``); the checks of executed chapters
are in ``tools/outputcheck.py``.  The book is one Typst document in print, so identifiers
are checked across the whole book.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import glyphs  # noqa: E402
import qmd  # noqa: E402
import quarto  # noqa: E402
from labkit.charts._parts import WEBSITE_ONLY  # noqa: E402

ROOT = quarto.ROOT
#: A cross-reference as Quarto finds it in prose (the PDF proxy rewrites the same ones).
REFERENCE = re.compile(r"(?<![\w@])@((?:fig|tbl|sec|eq)-[\w-]*\w)")
_CITATION = re.compile(r"(?<![\w@\\])@(?!(?:fig|tbl|sec|eq|lst|thm)-)([A-Za-z][\w:.#$%&+?<>~/-]*\w)")
_ID = re.compile(r"\{#((?:fig|tbl|sec|eq)-[\w-]*\w)[\s}]")
_BIB_KEY = re.compile(r"^\s*@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
#: Words that only make sense with a mouse on the website (French, any inflection): the
#: stems labkit's charts refuse in their titles, as whole words here.
WEB_ONLY = re.compile(r"(?i)\b((?:" + "|".join(WEBSITE_ONLY) + r")\w*)\b")
#: Characters Pandoc and Typst put in the PDF from ASCII prose (smart quotes, dashes, ellipsis,
#: French quotes and spaces): asked of the fonts even when the sources never type them.
TYPOGRAPHY = "’‘“”–—…«»\u00a0\u202f"
_EXPECT = re.compile(r'\]\{expect="([^"]+)"\}')
_GUARD = re.compile(r'\]\{guard="([^"]+)"\}')
_GUARD_CALL = re.compile(r"""\bguard\(\s*["']([^"']+)["']""")
_VERDICT = re.compile(r"""\bverdicts\[\s*["']([^"']+)["']\s*\]\s*=(?!=)""")
_RESULTS = re.compile(r"\blabkit\.(?:sweep|train)\(|(?<![\w.])sweep\(")


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        try:
            name = self.path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            name = str(self.path)
        return f"{name}:{self.line}: {self.message}"


def book(root: Path = ROOT) -> list[qmd.Chapter]:
    """Every file of the book, in reading order, as ``_quarto.yml`` lists them."""
    return [qmd.read(path) for path in quarto.chapters(root)]


# -- identifiers and references -----------------------------------------------------------
def definitions(chapters: list[qmd.Chapter]) -> list[tuple[str, Path, int]]:
    """(id, file, line) of every ``#| label:`` and ``{#fig-|tbl-|sec-|eq-…}`` of the book."""
    found = []
    for chapter in chapters:
        found += [(label, chapter.path, cell.line) for cell in chapter.cells for label in cell.labels]
        found += [(m.group(1), chapter.path, line.number)
                  for line in chapter.prose for m in _ID.finditer(qmd.without_code(line.text) + " ")]
    return found


def check_ids(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: every label and id is unique across the book (the PDF is one Typst document,
    where a repeated label stops the build: ``label <fig-curves> occurs multiple times``)."""
    first: dict[str, tuple[Path, int]] = {}
    problems = []
    for name, path, line in definitions(chapters):
        if name in first:
            where = Problem(first[name][0], first[name][1], "")
            problems.append(Problem(path, line, f"label {name!r} is already defined at {str(where)[:-2]}: "
                                                "labels are global to the book, rename one"))
        else:
            first[name] = (path, line)
    return problems


def bibliography_keys(root: Path = ROOT) -> set[str]:
    files = quarto.config(root).get("bibliography", [])
    return {key for name in ([files] if isinstance(files, str) else files)
            for key in _BIB_KEY.findall((root / name).read_text(encoding="utf-8"))}


def _referring_text(chapter: qmd.Chapter):
    """(line, text) where references may be written: prose and cell captions."""
    for line in chapter.prose:
        yield line.number, qmd.without_code(line.text)
    for cell in chapter.cells:
        for _, caption in cell.captions:
            yield cell.line, caption


def check_references(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: every ``@fig-``/``@tbl-``/``@sec-``/``@eq-`` reference names a label or id defined
    somewhere in the book; every other ``@key`` is a citation and must be a key of the
    bibliography (``references.bib``)."""
    targets = {name for name, _, _ in definitions(chapters)}
    keys = bibliography_keys(root)
    problems = []
    for chapter in chapters:
        for number, text in _referring_text(chapter):
            problems += [Problem(chapter.path, number, f"@{name} refers to nothing: no label or {{#{name}}} "
                                                       "in the book")
                         for name in REFERENCE.findall(text) if name not in targets]
            problems += [Problem(chapter.path, number, f"@{key} is neither a cross-reference (fig-, tbl-, sec-, "
                                                       "eq-) nor a key of the bibliography")
                         for key in _CITATION.findall(text) if key not in keys]
    return problems


_LINK = re.compile(r"\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")


def check_links(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: every link to a local file resolves (Quarto warns "Unable to resolve link
    target"): the file exists, or it is a chapter's notebook that tools/notebooks.py writes
    before each render (``_notebooks/<chapter>.ipynb``)."""
    import notebooks

    written = {(root / notebooks.FOLDER / f"{c.path.stem}.ipynb").resolve()
               for c in chapters if c.path.parent.name == "chapters"}
    problems = []
    for chapter in chapters:
        for line in chapter.prose:
            for target in _LINK.findall(qmd.without_code(line.text)):
                if re.match(r"^([a-z][\w+.-]*:|#|@)", target):
                    continue
                path = (chapter.path.parent / target.split("#")[0]).resolve()
                if not path.exists() and path not in written:
                    problems.append(Problem(chapter.path, line.number, f"link target {target!r} does not exist"))
    return problems


# -- what reaches the PDF -----------------------------------------------------------------
def printed_text(chapter: qmd.Chapter, values: dict[str, str] | None = None):
    """(line, text, kind) of what the PDF prints from the sources: prose outside web-only
    divs (inline values substituted when given), captions, code shown in print."""
    for line in chapter.prose:
        if not line.web_only:
            yield line.number, qmd.printed(line.text, values), "prose"
    for cell in chapter.cells:
        if cell.web_only or cell.options.get("include") is False:
            continue
        for key, caption in cell.captions:
            yield cell.line, caption, key
        if shows_code_in_print(cell):
            yield from ((line.number, line.text, "code") for line in cell.body)
    for number, _, body, web_only in chapter.shown:
        if not web_only:
            yield from ((line.number, line.text, "code") for line in body)


def shows_code_in_print(cell: qmd.Cell) -> bool:
    """The print edition shows a cell's code only when the cell asks for it
    (``#| classes: print-code``, see filters/print-code.lua) and echoes it."""
    return "print-code" in cell.classes and not cell.hidden


def check_wording(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: no website-only instruction (survol, molette, cliquer, zoom, souris) in prose
    or captions that reach the PDF; put such sentences in a
    ``::: {.content-visible when-format="html"}`` div."""
    problems = []
    for chapter in chapters:
        for number, text, kind in printed_text(chapter):
            if kind != "code":
                problems += [Problem(chapter.path, number, f"{m.group(0)!r} only makes sense on the website but "
                                                           f"this {kind} reaches the PDF")
                             for m in WEB_ONLY.finditer(qmd.without_code(text))]
    return problems


def check_characters(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: every character the PDF prints from the sources (prose, captions, code shown,
    the book's title page) is one Typst's embedded fonts can draw (``tools/glyphs.py``)."""
    where: dict[str, tuple[Path, int]] = {}
    for chapter in chapters:
        for number, text, _ in printed_text(chapter):
            for character in text:
                where.setdefault(character, (chapter.path, number))
    cover = quarto.config(root).get("book", {})
    for key in ("title", "subtitle", "author"):
        for character in str(cover.get(key, "")):
            where.setdefault(character, (root / "_quarto.yml", 1))
    missing = glyphs.pdf_missing(set(where) | set(TYPOGRAPHY))
    return [Problem(*where.get(c, (root / "_quarto.yml", 1)),
                    f"{glyphs.describe([c])} has no glyph in the PDF fonts (it prints as a box): "
                    "use a character they have, e.g. a word") for c in sorted(missing)]


#: Characters of code a line of the PDF's code blocks holds (DejaVu Sans Mono in the A4,
#: 10 pt text column): a longer line wraps in the middle of an expression.
CODE_WIDTH = 78


def check_code_width(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: no line of code the PDF prints (``print-code`` cells, code blocks shown) is
    longer than :data:`CODE_WIDTH` characters."""
    return [Problem(chapter.path, number, f"this code line has {len(text)} characters and wraps in "
                                           f"the PDF (at most {CODE_WIDTH}): break it")
            for chapter in chapters for number, text, kind in printed_text(chapter)
            if kind == "code" and len(text) > CODE_WIDTH]


# -- guarded sentences and expectations ---------------------------------------------------
def _spans(chapter: qmd.Chapter, pattern: re.Pattern) -> list[tuple[str, int]]:
    return [(m.group(1), line.number) for line in chapter.prose for m in pattern.finditer(line.text)]


def _calls(chapter: qmd.Chapter, pattern: re.Pattern) -> list[tuple[str, int]]:
    return [(m.group(1), line.number) for cell in chapter.cells for line in cell.body
            for m in pattern.finditer(line.text)]


def check_claims(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: each ``[…]{guard="id"}`` has exactly one ``guard("id", …)`` in its chapter's code
    and each ``[…]{expect="id"}`` exactly one ``verdicts["id"] = …``, and the other way
    round; span ids are unique across the book (labkit.report finds a sentence by its id)."""
    problems = []
    seen: dict[str, tuple[Path, int]] = {}
    for chapter in chapters:
        for kind, span, call, code in (("guard", _GUARD, _GUARD_CALL, 'guard("{}", …)'),
                                       ("expect", _EXPECT, _VERDICT, 'verdicts["{}"] = …')):
            spans, calls = _spans(chapter, span), _calls(chapter, call)
            span_count, call_count = Counter(i for i, _ in spans), Counter(i for i, _ in calls)
            for id, number in spans:
                if call_count[id] != 1:
                    problems.append(Problem(chapter.path, number, f'{{{kind}="{id}"}} needs exactly one '
                                                                  f"{code.format(id)} in this chapter, found "
                                                                  f"{call_count[id]}"))
                if id in seen:
                    problems.append(Problem(chapter.path, number, f'{{{kind}="{id}"}}: id already used at '
                                                                  f"{str(Problem(*seen[id], ''))[:-2]}"))
                seen.setdefault(id, (chapter.path, number))
            for id, number in calls:
                if span_count[id] != 1:
                    problems.append(Problem(chapter.path, number, f"{code.format(id)} needs exactly one "
                                                                  f'[…]{{{kind}="{id}"}} in this chapter, found '
                                                                  f"{span_count[id]}"))
    return problems


def check_expectations_first(chapters: list[qmd.Chapter], root: Path = ROOT) -> list[Problem]:
    """Rule: every ``{expect=…}`` span comes before the chapter's first cell that produces
    results (``labkit.sweep(``, ``sweep(``, ``labkit.train(``): expectations are written
    before any result is seen."""
    problems = []
    for chapter in chapters:
        first = next((cell.line for cell in chapter.cells if _RESULTS.search(cell.code)), None)
        problems += [Problem(chapter.path, number, f'expectation "{id}" comes after the first results '
                                                   f"(cell at line {first}): move it before")
                     for id, number in _spans(chapter, _EXPECT) if first is not None and number > first]
    return problems


#: Each takes the book's chapters and its root folder.
STATIC_CHECKS = (check_ids, check_references, check_links, check_wording, check_characters, check_code_width,
                 check_claims, check_expectations_first)


def check_book(root: Path = ROOT) -> list[Problem]:
    chapters = book(root)
    problems = []
    for check in STATIC_CHECKS:
        problems += check(chapters, root)
    return problems


# -- readability metrics (issue 21) -------------------------------------------------------
LIMITS = {"code/prose": 1.0, "hidden lines": 60, "long inline values": 2, "string tables": 0}
LONG_INLINE_WORDS = 8
_TABLE_STRING = re.compile(r"^\s*\|.*\||\|\s*:?-{3,}|^\s*\|\s*$")


def string_tables(code: str) -> int:
    """Lines of code that build Markdown tables from strings: a string literal that is a
    table row (``"| a | b |"``, ``f"| {x} |"``), a rule (``"|---|"``) or a pipe joined
    (``" | ".join(...)``).  Tables come from data frames instead."""
    count = set()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return 0
    for index, token in enumerate(tokens):
        if token.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(re.sub(r"^([rRbBuU]*)[fF]([rR]*)", r"\1\2", token.string))
        except (ValueError, SyntaxError):
            value = token.string
        joined = (isinstance(value, str) and value.strip() == "|" and index + 2 < len(tokens)
                  and tokens[index + 1].string == "." and tokens[index + 2].string == "join")
        if isinstance(value, str) and (_TABLE_STRING.search(value) or joined):
            count.add(token.start[0])
    return len(count)


def metrics(chapter: qmd.Chapter, inline: dict[str, str] | None = None) -> dict[str, float | int | None]:
    """Issue 21's counts, on the ``.qmd``: code = characters of code-cell bodies without
    their ``#|`` lines; prose = characters outside code cells, inline expressions removed;
    hidden = non-blank lines of cells with ``include: false`` or ``echo: false``, their ``#|``
    option lines included (they are lines of the cell); long
    inline values = executed inline values of 8 words or more (``None`` when not executed)."""
    code = sum(len(cell.code) for cell in chapter.cells)
    outside = "\n".join(line.text for line in chapter.prose)
    outside += "".join("\n".join([info, *(line.text for line in body)]) for _, info, body, _ in chapter.shown)
    prose = len(qmd.INLINE.sub("", outside))
    return {
        "code/prose": round(code / prose, 2) if prose else float("inf"),
        "hidden lines": sum(cell.option_lines + sum(1 for line in cell.body if line.text.strip())
                            for cell in chapter.cells if cell.hidden),
        "long inline values": None if inline is None else sum(
            1 for value in inline.values() if len(value.split()) >= LONG_INLINE_WORDS),
        "string tables": sum(string_tables(cell.code) for cell in chapter.cells),
    }


def over_limits(values: dict) -> list[str]:
    return [f"{name} = {values[name]} (limit {limit})" for name, limit in LIMITS.items()
            if values.get(name) is not None and values[name] > limit]


def metrics_table(rows: dict[str, dict]) -> str:
    names = list(LIMITS)
    lines = ["| chapter | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for chapter, values in rows.items():
        cells = ["–" if values[n] is None else str(values[n]) for n in names]
        lines.append(f"| {chapter} | " + " | ".join(cells) + " |")
    lines.append("| limit | " + " | ".join(f"≤ {LIMITS[n]}" for n in names) + " |")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", action="store_true", help="readability metrics per chapter (issue 21)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the book's folder (with _quarto.yml)")
    args = parser.parse_args(argv)
    try:
        return _report(args)
    except (OSError, ValueError) as error:  # a file _quarto.yml lists is missing, a cell's #| is not YAML
        print(f"bookcheck: {error}", file=sys.stderr)
        return 2


def _report(args) -> int:
    if args.metrics:
        chapters = [c for c in book(args.root) if c.path.parent.name == "chapters"]
        rows = {c.path.name: metrics(c) for c in chapters}
        print(metrics_table(rows))
        print("(long inline values need an executed chapter: tests/test_book.py counts them)")
        return 1 if any(over_limits(v) for v in rows.values()) else 0
    problems = check_book(args.root)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
