"""A proxy of the book's PDF built without Quarto: Pandoc (PyPI ``pypandoc_binary``) writes
Typst, Typst (PyPI ``typst``) compiles it, and Typst's errors stop the build as in Quarto.

What it covers: the book as ONE Typst document, so the errors that stop Quarto's PDF and
then break every cross-reference of the website — a label defined twice
(``label <fig-curves> occurs multiple times``), a reference or citation with no target —,
Pandoc's warnings on the book's Markdown (a stray ``$`` that opens a formula), and the
print edition's code filter (``filters/print-code.lua``), applied on the way.

How: each file of ``_quarto.yml`` is turned into Pandoc Markdown shaped like the
Markdown Quarto's Jupyter engine writes: a cell becomes a ``.cell`` div holding its code
(``.cell-code``, unless ``echo: false``) and, for a ``fig-`` label, an image with the
cell's ``fig-cap`` and ``{#fig-…}``; for a ``tbl-`` label, a table captioned
``: tbl-cap {#tbl-…}``.  Web-only divs are left out; inline expressions become their
executed values when given, else ``0``; ``$$…$$ {#eq-…}`` gets a Typst label and a
cross-reference ``@fig-…`` is written as Typst's own reference (Pandoc would make it a
citation).

What it does not cover: Quarto's own Typst template (the orange-book cover, callout boxes,
fonts) and Lua filters, its cross-reference pass (it relies on Typst's), execution
(outputs are placeholders unless executed notebooks are passed), and page layout — the
PDF's look is checked with a real Quarto (tests/test_render.py).

    python tools/pdfproxy.py [--out book.pdf] [--executed]

``--executed`` executes each file first (full profile, from the store) so that the proxy
holds the real outputs: charts as their PNG, tables, printed text — a preview of the print
edition's content and length.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bookcheck  # noqa: E402
import outputcheck  # noqa: E402
import qmd  # noqa: E402
import quarto  # noqa: E402

ROOT = quarto.ROOT
PRINT_FILTER = ROOT / "filters" / "print-code.lua"
SPACING_FILTER = ROOT / "filters" / "french-spacing.lua"
#: A 4 × 3 white PNG: where the book has a chart, the proxy has this.
PLACEHOLDER = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAIAAAA7ljmRAAAAFElEQVR4nGP8//8/AwwwMSABFA4Aby0DA"
                               "yMYAwQAAAAASUVORK5CYII=")
_EQUATION_ID = re.compile(r"(\$\$)\s*\{#(eq-[\w-]+)\}")
#: Pandoc would write ``@fig-x`` as a citation; Quarto resolves it as a cross-reference,
#: which in Typst is a reference to the label: written as raw Typst.
#: Typst numbers equations only when asked: a reference to an unnumbered one is an error.
_HEADER = '#set math.equation(numbering: "(1)")'


def _header(root: Path) -> str:
    """The proxy's Typst preamble: its own settings and the book's ``include-in-header`` texts."""
    typst_format = quarto.config(root).get("format", {}).get("typst") or {}
    included = typst_format.get("include-in-header", []) if isinstance(typst_format, dict) else []
    texts = [item["text"] for item in included if isinstance(item, dict) and "text" in item]
    return "\n".join([_HEADER, *texts])


class ProxyError(RuntimeError):
    """Typst (or Pandoc) refused the book: the real PDF build would stop too."""


def _chart(label: str, outputs: list[dict] | None, images: dict[str, bytes]) -> str:
    """The file a figure shows: its executed PNG at its own width (charts are drawn at twice
    their CSS width, and the text column holds 640 CSS px), else the placeholder."""
    png = next((o["data"]["image/png"] for o in outputs or [] if "image/png" in o.get("data", {})), None)
    if png is None:
        return "placeholder.png"
    data = base64.b64decode(png if isinstance(png, str) else "".join(png))
    images[f"{label}.png"] = data
    width = int.from_bytes(data[16:20], "big") / 2  # the PNG header's width, in CSS px
    return f"{label}.png){{width={min(100, round(100 * width / 640))}%"


def _cell(cell: qmd.Cell, outputs: list[dict] | None, images: dict[str, bytes]) -> list[str]:
    classes = " ".join(f".{name}" for name in ["cell", *cell.classes])
    lines = [f"::: {{{classes}}}"]
    if not cell.hidden:
        lines += ["``` {.python .cell-code}", cell.code, "```"]
    captions = dict(cell.captions)
    for label in cell.labels:
        if label.startswith("fig-"):
            target = _chart(label, outputs, images)
            if target == "placeholder.png":
                lines += ["", f"![{captions.get('fig-cap', '')}](placeholder.png){{#{label}}}", ""]
            else:
                lines += ["", f"![{captions.get('fig-cap', '')}]({target} #{label}}}", ""]
        elif label.startswith("tbl-"):
            table = next((str(o["data"]["text/markdown"]) for o in outputs or []
                          if "text/markdown" in o.get("data", {})), "| a |\n|---|\n| 0 |")
            lines += ["", table, "", f": {captions.get('tbl-cap', '')} {{#{label}}}", ""]
    if not any(label.startswith(("fig-", "tbl-")) for label in cell.labels):
        for output in outputs or []:
            if "text/markdown" in output.get("data", {}):
                lines.append(str(output["data"]["text/markdown"]))
            elif (text := outputcheck.printed_text(output)) is not None:
                lines += ["```", text.rstrip("\n"), "```"]
    return lines + [":::", ""]


def markdown(path: Path, executed=None, images: dict[str, bytes] | None = None) -> str:
    """A book file as the Pandoc Markdown its PDF is made from (see the module docstring).
    ``executed``: the chapter executed by ``tools/quarto.py`` (inline values and outputs)."""
    chapter = qmd.read(path)
    values = executed.inline if executed else {}
    outputs = ([c.get("outputs", []) for c in executed.notebook.cells if c.cell_type == "code"]
               if executed else [None] * len(chapter.cells))
    cells = iter(zip(chapter.cells, outputs))
    lines = []
    for kind, item in chapter.order:
        if kind == "prose" and not item.web_only:
            text = qmd.INLINE.sub(lambda m: values.get(m.group(1).strip(), "0"), item.text)
            text = bookcheck.REFERENCE.sub(r"`@\1`{=typst}", _EQUATION_ID.sub(r"\1 `<\2>`{=typst}", text))
            lines.append(text)
        elif kind == "cell":
            cell, cell_outputs = next(cells)
            if not cell.web_only and cell.options.get("include") is not False:
                lines += _cell(cell, cell_outputs, {} if images is None else images)
        elif kind == "shown" and not item[3]:
            number, info, body, _ = item
            lines += [f"```{info}", *(line.text for line in body), "```"]
    return "\n".join(lines) + "\n"


def typst_source(paths, root: Path = ROOT, executed: dict | None = None,
                 images: dict[str, bytes] | None = None) -> str:
    """The book's files as one Typst document (Pandoc's standalone Typst template); the
    executed charts' PNGs are added to ``images``."""
    import pypandoc

    text = "\n\n".join(markdown(path, (executed or {}).get(Path(path).resolve()), images) for path in paths)
    bibliography = quarto.config(root).get("bibliography")
    args = ["--from=markdown", "--to=typst", "--standalone", "--number-sections", f"--lua-filter={PRINT_FILTER}",
            f"--lua-filter={SPACING_FILTER}",
            "--metadata=lang:fr", f"--variable=header-includes:{_header(root)}"]
    if bibliography:
        args.append(f"--metadata=bibliography:{Path(bibliography).name}")
    done = subprocess.run([pypandoc.get_pandoc_path(), *args], input=text, capture_output=True, text=True)
    # A Pandoc warning is a defect of the PDF too (e.g. "Could not convert TeX math": a stray
    # "$" opened a formula, and the text after it prints as raw TeX).
    if done.returncode != 0 or done.stderr.strip():
        raise ProxyError(f"pandoc: {done.stderr.strip()}")
    return done.stdout


def compile_pdf(root: Path = ROOT, *, paths=None, executed: dict | None = None) -> bytes:
    """The proxy PDF of the book at ``root``; :class:`ProxyError` with Typst's message if
    Typst refuses it."""
    import typst

    root = Path(root)
    paths = paths or quarto.chapters(root)
    images: dict[str, bytes] = {"placeholder.png": PLACEHOLDER}
    source = typst_source(paths, root, executed, images)
    with tempfile.TemporaryDirectory(prefix="pdfproxy-") as folder:
        folder = Path(folder)
        (folder / "book.typ").write_text(source, encoding="utf-8")
        for name, data in images.items():
            (folder / name).write_bytes(data)
        bibliography = quarto.config(root).get("bibliography")
        if bibliography:
            shutil.copy(root / bibliography, folder / Path(bibliography).name)
        try:
            return typst.compile(folder / "book.typ", root=folder, ignore_system_fonts=True)
        except typst.TypstError as error:
            raise ProxyError(f"typst: {error.message}" + "".join(f"\n  hint: {h}" for h in error.hints)) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, help="write the proxy PDF here")
    parser.add_argument("--executed", action="store_true", help="execute the chapters to print their outputs")
    args = parser.parse_args(argv)
    try:
        # From the store only: a proxy never trains (a missing run stops it, named).
        executed = {path.resolve(): quarto.execute(path, to="typst", env={"LABKIT_REQUIRE_CACHED": "1"})
                    for path in quarto.chapters(args.root)} if args.executed else None
        pdf = compile_pdf(args.root, executed=executed)
    except (ProxyError, quarto.ChapterError, OSError, ValueError) as error:
        print(f"pdfproxy: {error}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_bytes(pdf)
    print(f"proxy PDF: {len(pdf)} bytes" + (f", written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
