"""Execute the book's chapters as Quarto's Jupyter engine does, without Quarto.

Quarto cannot be installed on the machines the book is written on, so tests, the
benchmark and authors run chapters through this module instead
(``src/resources/jupyter/notebook.py`` in quarto-cli is the reference): the ``.qmd``
becomes a notebook (jupytext reads its ```` ```{python} ```` chunks), a ``python3``
kernel of this interpreter starts in the chapter's folder with Quarto's environment
(``_environment`` files, ``QUARTO_*`` variables), Quarto's setup cell ends with
``%reset``, cells run in order with no timeout, the first exception stops the chapter,
and each inline `` `{python} expr` `` is evaluated as a ``user_expression`` when its
Markdown cell is reached.  ``ChapterKernel`` keeps a kernel alive between executions,
as Quarto's daemon does for renders from a terminal::

    python tools/quarto.py chapters/01-hyperparametres.qmd --profile quick
    python tools/quarto.py --all --profile quick
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "python3"
_FIG_FORMAT = {"html": "png", "typst": "svg"}
#: Quarto's pattern for inline expressions (notebook.py, cell_execute_inline).
INLINE = re.compile(r"(?:^|[^`])`\{python\}[ \t]([^`]+)`", re.MULTILINE)
_OPTION = re.compile(r"^#\s*\| ?")


# -- the book's configuration, read as Quarto reads it ----------------------------------
def _merge(base: Any, overlay: Any) -> Any:
    """Quarto's profile merge: mappings deeply, lists concatenated, scalars replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: _merge(base[k], v) if k in base else v for k, v in overlay.items()}}
    if isinstance(base, list) and isinstance(overlay, list):
        return base + [item for item in overlay if item not in base]
    return overlay


def config(root: Path = ROOT, profile: str = "") -> dict:
    """``_quarto.yml`` merged with ``_quarto-<profile>.yml`` of each active profile."""
    merged = yaml.safe_load((root / "_quarto.yml").read_text(encoding="utf-8"))
    for name in reversed([p.strip() for p in profile.split(",") if p.strip()]):
        overlay = root / f"_quarto-{name}.yml"
        if overlay.is_file():
            merged = _merge(merged, yaml.safe_load(overlay.read_text(encoding="utf-8")))
    return merged


def chapters(root: Path = ROOT, profile: str = "") -> list[Path]:
    """The book's files in reading order; a file listed but missing is named at once."""
    def flatten(entries):
        for entry in entries or []:
            if isinstance(entry, str):
                yield entry
            else:
                yield from ([entry["part"]] if str(entry.get("part", "")).endswith(".qmd") else [])
                yield from flatten(entry.get("chapters"))
    book = config(root, profile).get("book", {})
    paths = [root / name for name in [*flatten(book.get("chapters")), *flatten(book.get("appendices"))]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path.relative_to(root)} is listed in _quarto.yml but does not exist")
    return paths


def environment(root: Path, profile: str) -> dict[str, str]:
    """``_environment``, ``_environment-<profile>`` and ``_environment.local`` (later wins);
    the process's own variables win over all of them, as in Quarto."""
    from dotenv import dotenv_values

    names = ["_environment", *[f"_environment-{p}" for p in reversed(profile.split(",")) if p], "_environment.local"]
    merged: dict[str, str] = {}
    for name in names:
        if (root / name).is_file():
            merged.update({k: v or "" for k, v in dotenv_values(root / name).items()})
    return {**merged, **os.environ}


# -- a chapter as Quarto's notebook ------------------------------------------------------
def options(source: str) -> dict:
    """The ``#|`` options at the top of a code cell (YAML, as Quarto reads them)."""
    lines = []
    for line in source.splitlines():
        match = _OPTION.match(line)
        if not match:
            break
        lines.append(line[match.end():])
    return (yaml.safe_load("\n".join(lines)) or {}) if lines else {}


def notebook(path: Path):
    """The chapter as an unexecuted notebook, cell for cell as Quarto splits it."""
    import jupytext
    import nbformat

    nb = jupytext.reads(path.read_text(encoding="utf-8"), fmt="Rmd")
    for i, cell in enumerate(nb.cells):
        language = str(cell.metadata.get("language", ""))
        if cell.cell_type == "code" and language.startswith("."):  # ```{.python}: shown, not run
            nb.cells[i] = nbformat.v4.new_markdown_cell(f"```{{{language}}}\n{cell.source}\n```")
    nb.metadata = {"kernelspec": {"name": KERNEL, "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


class ChapterError(RuntimeError):
    """A chapter stopped at a cell or an inline expression (Quarto's render stops there too)."""


@dataclass
class Executed:
    path: Path
    notebook: Any
    inline: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _inline_text(result: Mapping) -> str:
    """The text Quarto inserts: Markdown as it is; a quoted plain-text repr unquoted and
    escaped, so that a repr escape such as ``\\u202f`` stays visible (the checks flag it)."""
    data = result.get("data", {})
    if "text/markdown" in data:
        return str(data["text/markdown"])
    text = str(data.get("text/plain", ""))
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        return re.sub(r"([\\`*_{}\[\]()>#+\-.!])", r"\\\1", text[1:-1])
    return text


class ChapterKernel:
    """One chapter's kernel, kept alive between executions (``with ChapterKernel(...) as k``)."""

    def __init__(self, path, *, profile: str = "", to: str = "html", env: Mapping[str, str] | None = None,
                 root: Path = ROOT):
        self.path, self.root = Path(path).resolve(), Path(root).resolve()
        self.env = {**environment(self.root, profile), **(env or {}), "QUARTO_PROFILE": profile,
                    "QUARTO_PROJECT_ROOT": str(self.root), "QUARTO_DOCUMENT_PATH": str(self.path.parent),
                    "QUARTO_DOCUMENT_FILE": self.path.name, "QUARTO_FIG_FORMAT": _FIG_FORMAT[to]}
        self.client = self.kernel = None

    def __enter__(self) -> "ChapterKernel":
        from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        class ThisPython(KernelSpecManager):  # the kernel must be this interpreter, which has labkit
            def get_kernel_spec(self, kernel_name):
                return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                  display_name="Python 3", language="python", resource_dir="")

        self.client = NotebookClient(notebook(self.path), timeout=None, kernel_name=KERNEL,
                                     km=AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=ThisPython()))
        self.kernel = self.client.setup_kernel(env=self.env, cwd=str(self.path.parent), cleanup_kc=True)
        self.kernel.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.kernel.__exit__(*exc_info)

    def _ask(self, code: str, where: str, **request) -> dict:
        reply = self.client.wait_for_reply(self.client.kc.execute(code, store_history=False, **request))
        content = reply["content"] if reply else {"status": "error", "ename": "NoReply", "evalue": ""}
        if content.get("status") != "ok":
            raise ChapterError(f"{self.path}: {where}: {content.get('ename')}: {content.get('evalue')}")
        return content

    def execute(self) -> Executed:
        """Run the chapter (read again from disk) after Quarto's ``%reset``."""
        from nbclient.exceptions import CellExecutionError

        nb = self.client.nb = notebook(self.path)
        done = Executed(self.path, nb)
        started = time.perf_counter()
        self._ask("%reset -f", "Quarto's setup cell")
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                wanted = {str(i): e for i, e in enumerate(INLINE.findall(cell.source))}
                results = self._ask("", f"cell {index}", user_expressions=wanted)["user_expressions"] if wanted else {}
                for key, expression in wanted.items():
                    if results[key].get("status") != "ok":
                        raise ChapterError(f"{self.path}: inline `{{python}} {expression}`: "
                                           f"{results[key].get('ename')}: {results[key].get('evalue')}")
                    done.inline[expression.strip()] = _inline_text(results[key])
                if wanted:
                    cell.metadata["user_expressions"] = [{"expression": e, "result": results[k]}
                                                         for k, e in wanted.items()]
            elif cell.cell_type == "code" and options(cell.source).get("eval", True):
                source = cell.source
                cell.source = "\n".join(l for l in source.splitlines() if not _OPTION.match(l))
                try:
                    self.client.execute_cell(cell, index, store_history=True)
                except CellExecutionError as error:
                    label = options(source).get("label", "")
                    raise ChapterError(f"{self.path}: cell {index} {label}: {error}") from None
                finally:
                    cell.source = source
        done.seconds = time.perf_counter() - started
        return done


def execute(path, *, profile: str = "", to: str = "html", env: Mapping[str, str] | None = None) -> Executed:
    """Execute one chapter in a kernel of its own, as ``quarto render path --profile P --to to``."""
    with ChapterKernel(path, profile=profile, to=to, env=env) as kernel:
        return kernel.execute()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path)
    parser.add_argument("--all", action="store_true", help="every file of the book")
    parser.add_argument("--profile", default=os.environ.get("QUARTO_PROFILE", ""))
    args = parser.parse_args(argv)
    if not args.all and not args.chapters:
        parser.error("name the chapters to execute (chapters/01-hyperparametres.qmd …) or give --all")
    paths = chapters(ROOT, args.profile) if args.all else args.chapters
    for path in paths:
        try:
            done = execute(path, profile=args.profile)
        except (ChapterError, OSError, ValueError) as error:
            print(error, file=sys.stderr)
            return 1
        print(f"{path}: executed in {done.seconds:.1f} s, {len(done.inline)} inline values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
