"""A ``.qmd`` read line by line into what Quarto sees: code cells, shown code, prose, divs.

The book's checks (``tools/bookcheck.py``) and its PDF proxy (``tools/pdfproxy.py``) need
line numbers and need to know what reaches the PDF, which a notebook conversion loses:
so this reader keeps every line with its number and marks

- executable cells ```` ```{python} ```` (their ``#|`` options parsed as YAML),
- code that is only shown (```` ```python ````, ```` ```{.python} ````, ```` ```sh ````),
- prose, each line flagged ``web_only`` inside a ``.content-visible when-format="html"``
  div (or ``.content-hidden`` for ``pdf``/``typst``): Quarto leaves those out of the PDF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(.*)$")
_CELL = re.compile(r"^\{(python|r|julia|ojs|mermaid|dot)\b[^}]*\}\s*$")
_OPTION = re.compile(r"^#\s*\| ?")
_DIV = re.compile(r"^(:{3,})\s*(.*?)\s*$")
#: An inline expression, as Quarto finds them (tools/quarto.py INLINE, without the guard char).
INLINE = re.compile(r"`\{python\}[ \t]([^`]+)`")
_CODE_SPAN = re.compile(r"(`+)(?!\{python\})(.+?)\1")


def _web_only(attributes: str) -> bool:
    """Whether a div's attributes keep it out of the PDF (Quarto's conditional content)."""
    formats = re.search(r'when-format\s*=\s*"([^"]+)"', attributes)
    if not formats:
        return False
    if ".content-visible" in attributes:
        return formats.group(1) == "html"
    return ".content-hidden" in attributes and formats.group(1) in ("pdf", "typst")


@dataclass
class Line:
    number: int  # 1-based, in the file
    text: str
    web_only: bool = False


@dataclass
class Cell:
    """An executable code cell: its ``#|`` options and its body without them."""

    line: int  # the opening fence
    options: dict
    body: list[Line]
    web_only: bool = False
    option_lines: int = 0  # the ``#|`` lines, counted with the cell's lines

    @property
    def code(self) -> str:
        return "\n".join(line.text for line in self.body)

    @property
    def hidden(self) -> bool:
        """Code the reader never sees (``include: false`` or ``echo: false``)."""
        return self.options.get("include") is False or self.options.get("echo") is False

    @property
    def classes(self) -> list[str]:
        value = self.options.get("classes", [])
        return value.split() if isinstance(value, str) else list(value)

    @property
    def labels(self) -> list[str]:
        value = self.options.get("label", [])
        return [value] if isinstance(value, str) else list(value)

    @property
    def captions(self) -> list[tuple[str, str]]:
        """(option, text) of the captions the PDF prints."""
        found = []
        for key in ("fig-cap", "tbl-cap", "fig-subcap", "tbl-subcap"):
            value = self.options.get(key)
            for text in ([value] if isinstance(value, str) else value or []):
                found.append((key, str(text)))
        return found


@dataclass
class Chapter:
    path: Path
    prose: list[Line] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    #: code blocks shown, not run: (line of the fence, its info string, body, web_only)
    shown: list[tuple[int, str, list[Line], bool]] = field(default_factory=list)
    #: everything in file order: ("prose", Line), ("cell", Cell), ("shown", block)
    order: list[tuple[str, object]] = field(default_factory=list)


def options(lines: list[str], where: str) -> dict:
    """The ``#|`` options of a cell, as YAML (Quarto reads them so)."""
    block = [_OPTION.sub("", line, count=1) for line in lines]
    try:
        value = yaml.safe_load("\n".join(block)) if block else {}
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: the cell's #| options are not YAML: {error}") from None
    return value if isinstance(value, dict) else {}


def read(path: Path) -> Chapter:
    """Split a ``.qmd`` into prose, executable cells and shown code, with line numbers."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    chapter = Chapter(path)
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter: metadata, not text
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), 0)
        start = end + 1
    divs: list[bool] = []  # web_only flag of each open div
    i = start
    while i < len(lines):
        text, number = lines[i], i + 1
        web_only = any(divs)
        fence = _FENCE.match(text)
        if fence:
            marker, info = fence.groups()
            close = next((j for j in range(i + 1, len(lines))
                          if lines[j].startswith(marker[0] * len(marker)) and not lines[j].strip(marker[0]).strip()),
                         len(lines))
            body = [Line(j + 1, lines[j], web_only) for j in range(i + 1, close)]
            if _CELL.match(info):
                count = 0
                while count < len(body) and _OPTION.match(body[count].text):
                    count += 1
                cell = Cell(number, options([b.text for b in body[:count]], f"{path}:{number}"),
                            body[count:], web_only, count)
                chapter.cells.append(cell)
                chapter.order.append(("cell", cell))
            else:
                block = (number, info, body, web_only)
                chapter.shown.append(block)
                chapter.order.append(("shown", block))
            i = close + 1
            continue
        div = _DIV.match(text)
        if div and div.group(2):  # an opening fence belongs to its div
            divs.append(_web_only(div.group(2)))
            web_only = any(divs)
        elif div and divs:  # a closing one too
            divs.pop()
        line = Line(number, text, web_only)
        chapter.prose.append(line)
        chapter.order.append(("prose", line))
        i += 1
    return chapter


def without_code(text: str) -> str:
    """Prose without its code spans and inline expressions (for references and wording)."""
    return _CODE_SPAN.sub(" ", INLINE.sub(" ", text))


def printed(text: str, values: dict[str, str] | None = None) -> str:
    """Prose as the PDF prints it: each inline expression replaced by its executed value
    (nothing when not executed), code spans kept without their backticks."""
    text = INLINE.sub(lambda m: (values or {}).get(m.group(1).strip(), ""), text)
    return _CODE_SPAN.sub(lambda m: m.group(2), text)
