"""Execute the book's chapters exactly as Quarto's Jupyter engine does, and check their structure.

Quarto is not installed everywhere the book is worked on (nor in the test
environment), so this module reproduces what its Jupyter engine does with a
chapter (``src/resources/jupyter/notebook.py`` in quarto-cli): ``.qmd`` →
notebook, one ``python3`` kernel started in the chapter's folder with Quarto's
environment, the ``%reset`` of Quarto's setup cell, cells run in order with no
timeout, the first exception stops the chapter, and every inline
`` `{python} expr` `` is evaluated through the kernel's ``user_expressions`` when
its markdown cell is reached.  ``ChapterKernel`` keeps the kernel alive between
executions, as Quarto does for renders from a terminal.  Tests, the benchmark
and people use it::

    python -m labkit.quarto chapters/01-hyperparametres.qmd --profile quick
    python -m labkit.quarto --all --profile quick

Two helpers for the Makefile live here too, because they need the same
configuration reading: ``notebooks OUTDIR`` (one downloadable notebook per
chapter) and ``copy-project DEST`` (the scratch copy the quick profile renders).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    # the book's configuration, read like Quarto reads it
    "EXERCISE_CHAPTERS",
    "find_root",
    "active_profiles",
    "load_config",
    "book_chapters",
    "read_environment",
    # execution
    "ChapterResult",
    "ChapterExecutionError",
    "InlineExpressionError",
    "to_notebook",
    "cell_options",
    "ChapterKernel",
    "execute_chapter",
    # structure checks
    "is_exercise",
    "check_chapter",
    "find_typed_results",
    # helpers for the Makefile
    "notebook_name",
    "chapter_title",
    "write_notebooks",
    "copy_project",
    "main",
]

#: Chapters that answer an exercise, relative to the project root.  Only these
#: must show expectations, a verdict, limits and a parameter table; the preface
#: and the references are checked for charts, references and prose only.
EXERCISE_CHAPTERS = "chapters/*.qmd"

KERNEL_NAME = "python3"

# Figure settings Quarto gives the kernel, per target format (its defaults).
_FIG_FORMAT = {"html": "png", "typst": "svg", "pdf": "pdf"}
_FIG_SIZE = {"html": (7, 5), "typst": (5.5, 3.5), "pdf": (5.5, 3.5)}
_FIG_DPI = 96

# Quarto's own pattern for inline expressions (notebook.py, cell_execute_inline).
_INLINE = re.compile(r"(?:^|[^`])`\{python\}[ \t]([^`]+)`", re.MULTILINE)
_OPTION_LINE = re.compile(r"^#\s*\| ?")


# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------


def find_root(start: Path | str | None = None) -> Path:
    """The folder holding ``_quarto.yml`` above ``start`` (default: the cwd).

    Falls back to ``start`` itself (a lone ``.qmd`` is its own project), as
    Quarto does for a file outside any project.
    """
    start = Path(start or Path.cwd()).resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in [folder, *folder.parents]:
        if (candidate / "_quarto.yml").is_file():
            return candidate
    return folder


def _read_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a YAML mapping, not {type(data).__name__}")
    return data


def active_profiles(root: Path, profile: str | None = None) -> list[str]:
    """Quarto's active profiles: ``--profile`` replaces ``QUARTO_PROFILE``.

    Without either, ``profile: default:`` from ``_quarto.yml`` applies.
    """
    value = profile if profile is not None else os.environ.get("QUARTO_PROFILE", "")
    names = [name.strip() for name in value.split(",") if name.strip()]
    if names or profile is not None:
        return names
    config = root / "_quarto.yml"
    default = (_read_yaml(config).get("profile", {}) or {}) if config.is_file() else {}
    default = default.get("default") if isinstance(default, dict) else None
    if isinstance(default, str):
        return [name.strip() for name in default.split(",") if name.strip()]
    return list(default or [])


def _merge(base: Any, overlay: Any) -> Any:
    """Quarto's merge: mappings deeply, lists concatenated (deduplicated), scalars replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(overlay, list):
        return base + [item for item in overlay if item not in base]
    return overlay


def load_config(root: Path | str | None = None, profile: str | None = None) -> dict:
    """``_quarto.yml`` merged with ``_quarto-<profile>.yml`` for each active profile.

    Profiles are merged in reverse order so that the first listed wins, as in
    Quarto (``project-profile.ts``); a missing profile file is ignored.
    """
    root = find_root(root)
    config_file = root / "_quarto.yml"
    if not config_file.is_file():
        raise FileNotFoundError(f"no _quarto.yml in {root}")
    config = _read_yaml(config_file)
    for name in reversed(active_profiles(root, profile)):
        overlay = root / f"_quarto-{name}.yml"
        if overlay.is_file():
            config = _merge(config, _read_yaml(overlay))
    return config


def _flatten_chapters(entries: Sequence[Any]) -> Iterator[str]:
    """Chapter files from a ``book.chapters`` list, parts flattened."""
    for entry in entries or []:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            part = entry.get("part")
            if isinstance(part, str) and part.endswith((".qmd", ".md", ".ipynb")):
                yield part
            if "href" in entry:
                yield entry["href"]
            yield from _flatten_chapters(entry.get("chapters", []))


def book_chapters(root: Path | str | None = None, profile: str | None = None) -> list[Path]:
    """Every chapter file of the book, in reading order (appendices last).

    Raises ``FileNotFoundError`` naming the first chapter listed in
    ``_quarto.yml`` that does not exist: a typo there otherwise surfaces as a
    confusing Quarto error much later.
    """
    root = find_root(root)
    book = load_config(root, profile).get("book") or {}
    names = list(_flatten_chapters(book.get("chapters", [])))
    names += list(_flatten_chapters(book.get("appendices", [])))
    chapters = [root / name for name in names]
    for name, path in zip(names, chapters):
        if not path.is_file():
            raise FileNotFoundError(f"chapter {name!r} listed in {root / '_quarto.yml'} does not exist")
    return chapters


def _parse_dotenv(path: Path, known: Mapping[str, str]) -> dict[str, str]:
    """A small reader for Quarto's ``_environment`` files (dotenv syntax).

    Handles comments, ``export``, single quotes (literal), double quotes
    (``\\n`` escapes) and ``${VAR}`` references to earlier values or the
    process environment.
    """
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            values[key] = value[1:-1]
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n")
        else:
            value = re.sub(r"\s+#.*$", "", value)
        lookup = {**known, **values}
        values[key] = re.sub(
            r"\$\{(\w+)\}|\$(\w+)",
            lambda m: lookup.get(m.group(1) or m.group(2), os.environ.get(m.group(1) or m.group(2), "")),
            value,
        )
    return values


def read_environment(root: Path | str | None = None, profiles: Sequence[str] = ()) -> dict[str, str]:
    """Variables from ``_environment``, ``_environment-<profile>`` and ``_environment.local``.

    Precedence as in Quarto (``quarto-core/dotenv.ts``): ``.local`` over the
    profiles (first listed wins) over ``_environment``.  These are defaults:
    a variable already in the process environment wins over all of them,
    which the caller applies (``execute_chapter`` does).
    """
    root = find_root(root)
    files = [root / "_environment"]
    files += [root / f"_environment-{name}" for name in reversed(list(profiles))]
    files += [root / "_environment.local"]
    merged: dict[str, str] = {}
    for path in files:
        if path.is_file():
            merged.update(_parse_dotenv(path, merged))
    return merged


# ----------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------


class ChapterExecutionError(RuntimeError):
    """A chapter stopped: a cell raised (Quarto stops the render there too)."""

    def __init__(self, path: Path, where: str, message: str, notebook: Any = None):
        super().__init__(f"{path}: {where}: {message}")
        self.path = path
        self.where = where
        self.notebook = notebook


class InlineExpressionError(ChapterExecutionError):
    """An inline `` `{python} expr` `` failed: Quarto fails the render on it."""


@dataclass
class ChapterResult:
    """What executing one chapter gives: the executed notebook, inline values, time."""

    path: Path
    root: Path
    notebook: Any
    inline: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    profile: str = ""

    @property
    def relative_path(self) -> str:
        try:
            return self.path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return self.path.name


def cell_options(source: str) -> dict:
    """The ``#|`` options at the top of a code cell, parsed as YAML (like Quarto)."""
    lines = []
    for line in source.splitlines():
        match = _OPTION_LINE.match(line)
        if not match:
            break
        lines.append(re.sub(r":\s+$", ":", line[match.end():]))
    if not lines:
        return {}
    try:
        options = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid #| options:\n{chr(10).join(lines)}\n{exc}") from exc
    return options if isinstance(options, dict) else {}


def _strip_options(source: str) -> str:
    lines = source.splitlines()
    count = 0
    while count < len(lines) and _OPTION_LINE.match(lines[count]):
        count += 1
    return "\n".join(lines[count:])


def _display_only(cell) -> bool:
    """```{.python}``` blocks are shown, not run, by Quarto; jupytext makes them code cells."""
    return str(cell.metadata.get("language", "")).startswith(".")


def to_notebook(path: Path | str):
    """A ``.qmd`` as an unexecuted notebook, cell for cell as Quarto splits it.

    jupytext's R Markdown reader understands ```` ```{python} ```` chunks and
    keeps the ``#|`` options in the source (its Quarto reader would need the
    quarto binary).  Display-only blocks go back to markdown; a chunk in
    another language is refused, as the ``python3`` kernel cannot run it.
    """
    import jupytext
    import nbformat

    path = Path(path)
    notebook = jupytext.reads(path.read_text(encoding="utf-8"), fmt="Rmd")
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and _display_only(cell):
            language = cell.metadata.pop("language")
            cell = nbformat.v4.new_markdown_cell(f"```{{{language}}}\n{cell.source}\n```")
        elif cell.cell_type == "code" and cell.source.startswith("%%") and not cell.source.startswith("%%python"):
            magic = cell.source.splitlines()[0]
            raise ValueError(f"{path}: chunk {magic!r} is not Python; the python3 kernel cannot run it")
        cells.append(cell)
    notebook.cells = cells
    notebook.metadata = {
        "kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    return notebook


def _kernel_env(
    chapter: Path, root: Path, profile: str | None, to: str, extra: Mapping[str, str | None] | None
) -> dict[str, str]:
    """The environment Quarto gives the kernel: ``_environment`` defaults and ``QUARTO_*``."""
    env = dict(os.environ)
    for key, value in read_environment(root, active_profiles(root, profile)).items():
        env.setdefault(key, value)
    if profile is not None:
        env["QUARTO_PROFILE"] = profile
    width, height = _FIG_SIZE[to]
    env.update(
        QUARTO_PROJECT_ROOT=str(root),
        QUARTO_DOCUMENT_PATH=str(chapter.parent),
        QUARTO_DOCUMENT_FILE=chapter.name,
        QUARTO_FIG_FORMAT=_FIG_FORMAT[to],
        QUARTO_FIG_WIDTH=str(width),
        QUARTO_FIG_HEIGHT=str(height),
        QUARTO_FIG_DPI=str(_FIG_DPI),
    )
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _kernel_manager():
    """A kernel manager for ``python3`` that is sure to run this interpreter.

    The registered ``python3`` spec normally says ``python``, which
    jupyter_client replaces by ``sys.executable``.  If the spec is missing or
    names another interpreter (a kernelspec installed by some other
    environment), ipykernel's own spec for ``sys.executable`` is used instead:
    a kernel without labkit would fail every chapter for the wrong reason.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import AsyncKernelManager

    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv
    except NoSuchKernel:
        argv = []
    version = sys.version_info
    generic = {"python", f"python{version[0]}", f"python{version[0]}.{version[1]}"}
    if argv and (argv[0] in generic or Path(argv[0]).resolve() == Path(sys.executable).resolve()):
        return AsyncKernelManager(kernel_name=KERNEL_NAME)

    from ipykernel.kernelspec import get_kernel_dict

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(resource_dir="", **get_kernel_dict())

    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ThisPython())


def _cell_name(cell, index: int) -> str:
    label = cell_options(cell.source).get("label") if cell.cell_type == "code" else None
    return f"cell {index}" + (f" ({label})" if label else "")


def _error_text(output) -> str:
    return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"


def _run_code_cell(client, cell, index: int, path: Path, notebook) -> None:
    """Run one code cell as Quarto does: options stripped, ``eval``/``error`` honoured."""
    from nbclient.exceptions import CellExecutionError

    options = cell_options(cell.source)
    if options.get("eval", True) is not True:
        return
    allow_errors = bool(options.get("error", False))
    source, tags = cell.source, list(cell.metadata.get("tags", []))
    cell.source = _strip_options(source)
    if allow_errors:
        cell.metadata["tags"] = tags + ["raises-exception"]
    try:
        client.execute_cell(cell, index, store_history=True)
    except CellExecutionError as exc:
        cell.source = source
        raise ChapterExecutionError(path, _cell_name(cell, index), str(exc).strip(), notebook) from exc
    finally:
        cell.source = source
        if allow_errors:
            cell.metadata["tags"] = tags
            if not tags:
                del cell.metadata["tags"]
    errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    if errors and not allow_errors:
        raise ChapterExecutionError(path, _cell_name(cell, index), _error_text(errors[0]), notebook)


def _reset_namespace(client, path: Path, notebook) -> None:
    """What matters here of Quarto's setup cell (``lang/python/setup.py``), run before a
    chapter's cells: it ends with ``%reset``, which empties the namespace of a kernel kept
    alive from a previous execution.  Sent directly, so that no notebook cell is touched."""
    reply = client.wait_for_reply(client.kc.execute("%reset -f", store_history=False))
    content = reply["content"] if reply else {"status": "error", "ename": "NoReply", "evalue": "kernel gave no reply"}
    if content.get("status") != "ok":
        raise ChapterExecutionError(path, "Quarto's setup cell (%reset)", _error_text(content), notebook)


def _inline_text(result: Mapping) -> str:
    """The text Quarto inserts (``resolveUserExpressions`` in quarto-cli's jupyter-inline.ts).

    ``text/markdown`` is inserted verbatim; ``text/plain`` goes through
    ``asEscapedMarkdown``: a quoted repr loses its quotes and gets its
    backslashes and markdown punctuation escaped, so a repr escape such as
    ``\\u202f`` stays visible on the page (``check_chapter`` flags it).
    """
    data = result.get("data", {})
    if "text/markdown" in data:
        return str(data["text/markdown"])
    text = str(data.get("text/plain", ""))
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        inner = text[1:-1].replace("\\", "\\\\")
        return re.sub(r"([\\`*_{}\[\]()>#+-.!])", r"\\\1", inner)  # '+-.' is a range, as in JS
    return text


def _run_inline(client, cell, index: int, path: Path, notebook, values: dict[str, str]) -> None:
    """Evaluate a markdown cell's inline expressions now, as ``user_expressions``."""
    expressions = _INLINE.findall(cell.source)
    if not expressions:
        cell.metadata.pop("user_expressions", None)
        return
    requested = {str(i): expression for i, expression in enumerate(expressions)}
    reply = client.wait_for_reply(client.kc.execute("", user_expressions=requested))
    content = reply["content"] if reply else {"status": "error", "ename": "NoReply", "evalue": "kernel gave no reply"}
    if content.get("status") != "ok":
        raise InlineExpressionError(path, f"cell {index} (markdown)", _error_text(content), notebook)
    results = []
    for key, expression in requested.items():
        result = content.get("user_expressions", {}).get(key, {})
        if result.get("status") != "ok":
            where = f"cell {index} (markdown), inline `{{python}} {expression}`"
            raise InlineExpressionError(path, where, _error_text(result), notebook)
        values[expression.strip()] = _inline_text(result)
        results.append({"expression": expression, "result": result})
    cell.metadata["user_expressions"] = results


class ChapterKernel:
    """One chapter's kernel, kept alive between executions as Quarto keeps it.

    ``quarto render`` and ``quarto preview`` run from a terminal keep a chapter's kernel
    alive (300 s, Quarto's ``execute: daemon``) and re-execute the chapter in it: imports
    are already done and labkit's sweep workers still run.  Each execution starts with
    Quarto's setup cell, whose ``%reset`` empties the namespace (so a chapter never sees
    its previous execution's variables, and ``labkit.report`` starts a new session); the
    chapter's file is read again, so edits are picked up.  Use it as a context manager::

        with ChapterKernel("chapters/01-hyperparametres.qmd", profile="quick") as kernel:
            first, again = kernel.execute(), kernel.execute()
    """

    def __init__(self, path: Path | str, *, profile: str | None = None, root: Path | str | None = None,
                 to: str = "html", env: Mapping[str, str | None] | None = None):
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"no chapter at {self.path}")
        if to not in _FIG_FORMAT:
            raise ValueError(f"to={to!r} is not a format of the book; use one of {sorted(_FIG_FORMAT)}")
        self.root = Path(root).resolve() if root else find_root(self.path)
        self.kernel_env = _kernel_env(self.path, self.root, profile, to, env)
        self._client = None
        self._kernel = None

    def __enter__(self) -> "ChapterKernel":
        from nbclient import NotebookClient

        self._client = NotebookClient(
            to_notebook(self.path),
            km=_kernel_manager(),
            timeout=None,
            allow_errors=False,
            record_timing=False,
            resources={"metadata": {"path": str(self.path.parent)}},
        )
        self._kernel = self._client.setup_kernel(env=self.kernel_env, cwd=str(self.path.parent),
                                                 cleanup_kc=True)
        self._kernel.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            kernel.__exit__(*exc_info)

    def execute(self) -> ChapterResult:
        """Execute the chapter once more in this kernel (raises ``ChapterExecutionError``)."""
        if self._kernel is None:
            raise RuntimeError("ChapterKernel.execute() needs the kernel: use `with ChapterKernel(...)`")
        client, path = self._client, self.path
        notebook = client.nb = to_notebook(path)
        inline: dict[str, str] = {}
        started = time.perf_counter()
        _reset_namespace(client, path, notebook)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                _run_code_cell(client, cell, index, path, notebook)
            elif cell.cell_type == "markdown":
                _run_inline(client, cell, index, path, notebook, inline)
        return ChapterResult(
            path=path,
            root=self.root,
            notebook=notebook,
            inline=inline,
            seconds=time.perf_counter() - started,
            profile=self.kernel_env.get("QUARTO_PROFILE", ""),
        )


def execute_chapter(
    path: Path | str,
    *,
    profile: str | None = None,
    root: Path | str | None = None,
    to: str = "html",
    env: Mapping[str, str | None] | None = None,
) -> ChapterResult:
    """Execute one chapter like ``quarto render <path> [--profile P] --to <to>`` would,
    in a kernel of its own (``ChapterKernel`` keeps one for several executions).

    ``profile`` replaces ``QUARTO_PROFILE`` (``None`` keeps the caller's);
    ``to`` sets the figure format Quarto announces (``QUARTO_FIG_FORMAT``);
    ``env`` adds variables for the kernel (a ``None`` value removes one).
    Nothing is written to disk.  Raises ``ChapterExecutionError`` (or its
    subclass ``InlineExpressionError``) at the first failure, with the
    partially executed notebook attached.
    """
    with ChapterKernel(path, profile=profile, root=root, to=to, env=env) as kernel:
        return kernel.execute()


# ----------------------------------------------------------------------------
# Structure checks
# ----------------------------------------------------------------------------

_TEXT_MIMES = ("text/plain", "text/markdown", "text/html", "text/latex")


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u00a0", " ").replace("\u202f", " ").lower()


def _outputs(notebook) -> Iterator[tuple[int, int, Mapping]]:
    for index, cell in enumerate(notebook.cells):
        for position, output in enumerate(cell.get("outputs", []) if cell.cell_type == "code" else []):
            yield index, position, output


def _output_text(output: Mapping) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else str(text)
    data = output.get("data", {})
    parts = [data[mime] for mime in _TEXT_MIMES if mime in data]
    return "\n".join("".join(part) if isinstance(part, list) else str(part) for part in parts)


def _markdown_outputs(output: Mapping) -> str:
    data = output.get("data", {})
    value = data.get("text/markdown", "")
    return "".join(value) if isinstance(value, list) else str(value)


def _is_chart(output: Mapping) -> bool:
    data = output.get("data", {})
    html = data.get("text/html", "")
    html = "".join(html) if isinstance(html, list) else str(html)
    return "image/png" in data or "vega" in html.lower()


def is_exercise(result: ChapterResult) -> bool:
    """Whether a chapter answers an exercise (``EXERCISE_CHAPTERS``)."""
    return fnmatch.fnmatch(result.relative_path, EXERCISE_CHAPTERS)


def _first(positions: Iterator[tuple[int, int]]) -> tuple[int, int] | None:
    return min(positions, default=None)


def _marker_positions(notebook, pattern: re.Pattern) -> Iterator[tuple[int, int]]:
    """Where a pattern occurs: in markdown cells (position -1) or in a cell's outputs."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and pattern.search(_normalise(cell.source)):
            yield index, -1
    for index, position, output in _outputs(notebook):
        if pattern.search(_normalise(_output_text(output))):
            yield index, position


_EXPECTATIONS = re.compile(r"ce que l'on attend")
_VERDICT = re.compile(r"^\s*#{1,6}\s+verdict\b", re.MULTILINE)
_LIMITS = re.compile(r"^\s*#{1,6}\s+limites\b|title=\"limites", re.MULTILINE)


def _check_exercise(notebook) -> list[str]:
    """Expectations before the first result, a verdict, limits, a parameter table."""
    problems = []
    expectations = _first(_marker_positions(notebook, _EXPECTATIONS))
    first_chart = _first((i, p) for i, p, out in _outputs(notebook) if _is_chart(out))
    if expectations is None:
        problems.append("no expectations callout ('Ce que l'on attend')")
    elif first_chart is not None and expectations > first_chart:
        problems.append(
            f"expectations ('Ce que l'on attend', cell {expectations[0]}) come after "
            f"the first result (chart in cell {first_chart[0]})"
        )
    if _first(_marker_positions(notebook, _VERDICT)) is None:
        problems.append("no 'Verdict' heading")
    if _first(_marker_positions(notebook, _LIMITS)) is None:
        problems.append("no 'Limites' section (heading or callout title)")
    texts = [_normalise(_output_text(out)) for _, _, out in _outputs(notebook)]
    if not any("total params" in text for text in texts):
        problems.append("no parameter table: no output shows Keras' summary ('Total params')")
    if not any("à la main" in text for text in texts):
        problems.append("no parameter count by hand: no output shows labkit's table ('à la main')")
    return problems


def _check_charts(notebook) -> list[str]:
    """Every chart serves both formats: HTML for the web, PNG for the PDF, no SVG."""
    problems = []
    for index, _, output in _outputs(notebook):
        if not _is_chart(output):
            continue
        data = output.get("data", {})
        name = _cell_name(notebook.cells[index], index)
        if "text/html" not in data:
            problems.append(f"{name}: chart without its interactive HTML (only image/png)")
        if "image/png" not in data:
            problems.append(f"{name}: chart without its PNG twin (the PDF would show nothing)")
        if "image/svg+xml" in data:
            problems.append(f"{name}: chart carries image/svg+xml, which the PDF would pick over the PNG")
    return problems


_REFERENCE = re.compile(r"(?<![\w@])@((?:fig|tbl)-[\w-]*\w)")
_DEFINED_ID = re.compile(r"\{#((?:fig|tbl)-[\w-]*\w)")


def _check_references(notebook) -> list[str]:
    """Every ``@fig-``/``@tbl-`` reference names a labelled cell or a ``{#...}`` block."""
    labels = set()
    cited: dict[str, int] = {}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            label = cell_options(cell.source).get("label")
            labels.update([label] if isinstance(label, str) else label or [])
        elif cell.cell_type == "markdown":
            labels.update(_DEFINED_ID.findall(cell.source))
            for name in _REFERENCE.findall(_strip_code(cell.source)):
                cited.setdefault(name, index)
    for _, _, output in _outputs(notebook):
        labels.update(_DEFINED_ID.findall(_markdown_outputs(output)))
    return [
        f"cell {index}: @{name} refers to no cell labelled {name!r}"
        for name, index in cited.items()
        if name not in labels
    ]


# --- results typed into prose -------------------------------------------------

_FENCED = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.DOTALL)
_INLINE_MATH = re.compile(r"\$(?=\S)(?:[^$\\\n]|\\.)*?(?<=\S)\$(?!\d)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_ATTRIBUTES = re.compile(r"\{[#.][^}]*\}|\{\w[\w-]*=[^}]*\}")
_CITATION = re.compile(r"(?<![\w@])@(?!(?:fig|tbl|sec|eq|lst|thm)-)[A-Za-z][\w:.-]*\w")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n|\n(?=\s*[-*+|]|\s*\d+\.\s)")

#: Numbers that look like results in prose, and the few that are not.
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?\s?%|(?<![\w.,])\d+[.,]\d+(?![\w%])")
#: Allowed, each for a stated reason (extend only with one):
_ALLOWED = [
    # a software version ("Keras 3.15", "Quarto ≥ 1.9"): facts about tools, not results
    re.compile(
        r"(?i)\b(python|keras|jax|jaxlib|numpy|quarto|typst|scikit-learn|altair|pandas|"
        r"tensorflow|pytorch|torch|vl-convert)\s*(?:≥|>=|v|version)?\s*\d+(?:\.\d+)+"
    ),
    # a section, question or equation number ("section 2.1", "§ 3.2", "question 1.b")
    re.compile(r"(?i)(?:§|\bsection|\bchapitre|\bpartie|\bexercice|\bquestion|\béquation)\s*\d+(?:[.,]\d+)+"),
]
#: Keras defaults quoted as defaults (GUIDE §5: SGD lr 0.01, Adam lr 0.001,
#: RandomNormal std / RandomUniform limit 0.05).  They are documented inputs of
#: the API, not measurements, and are allowed only in a sentence that says
#: "défaut"/"default", so that a measured 0,05 typed elsewhere is still caught.
_KERAS_DEFAULTS = {"0,01", "0.01", "0,001", "0.001", "0,05", "0.05"}


def _strip_code(markdown: str) -> str:
    for pattern in (_FENCED, _COMMENT, _DISPLAY_MATH, _CODE_SPAN, _INLINE_MATH):
        markdown = pattern.sub(" ", markdown)
    return markdown


def find_typed_results(markdown: str) -> list[str]:
    """Decimals and percentages typed into prose, each with its sentence.

    A result must come from inline code (`` `{python} f"{acc:.1%}"` ``) so the
    text cannot drift from the runs.  Ignored: code, inline code, math,
    comments, link targets, attributes; sentences that cite a source
    (``[@glorot2010]``: figures quoted from the literature); software versions,
    section numbers and Keras defaults quoted as defaults (see ``_ALLOWED``).
    """
    found = []
    text = _URL.sub(" ", _LINK_TARGET.sub("]", _strip_code(markdown)))
    for sentence in _SENTENCE_END.split(_ATTRIBUTES.sub(" ", text)):
        if not sentence or _CITATION.search(sentence):
            continue
        allowed_spans = [m.span() for pattern in _ALLOWED for m in pattern.finditer(sentence)]
        says_default = re.search(r"(?i)d[ée]faut|default", sentence)
        for match in _NUMBER.finditer(sentence):
            number = match.group().rstrip("% ").strip()
            if any(start <= match.start() < end for start, end in allowed_spans):
                continue
            if says_default and number in _KERAS_DEFAULTS:
                continue
            found.append(" ".join(sentence.split()))
            break
    return found


def _check_prose(notebook) -> list[str]:
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            for sentence in find_typed_results(cell.source):
                problems.append(f"cell {index}: result typed into prose (use inline code): {sentence!r}")
    return problems


def check_chapter(result: ChapterResult, *, exercise: bool | None = None) -> list[str]:
    """The chapter's structural problems; an empty list means it has the book's shape.

    All chapters: every chart has ``text/html`` and ``image/png`` and no SVG;
    every ``@fig-``/``@tbl-`` reference resolves; no result typed into prose.
    Exercise chapters (``is_exercise``, or ``exercise=True``) also need the
    expectations callout before the first chart, a "Verdict" heading, a
    "Limites" section and the parameter table (Keras' ``summary()`` and
    labkit's count by hand).
    """
    notebook = result.notebook
    exercise = is_exercise(result) if exercise is None else exercise
    problems = _check_exercise(notebook) if exercise else []
    return (problems + _check_charts(notebook) + _check_references(notebook) + _check_prose(notebook)
            + _check_inline(result))


_REPR_ESCAPE = re.compile(r"\\+[ux][0-9a-fA-F]{2}")


def _check_inline(result: ChapterResult) -> list[str]:
    """Inline values must read as text on the page: no repr escape (``\\u202f``) left in them."""
    return [f"inline value `{{python}} {expression}` shows a repr escape on the page: {text!r}"
            for expression, text in result.inline.items() if _REPR_ESCAPE.search(text)]


# ----------------------------------------------------------------------------
# Helpers for the Makefile: downloadable notebooks, the quick profile's copy
# ----------------------------------------------------------------------------


def notebook_name(chapter: Path | str) -> str:
    """The file name a chapter's downloadable notebook gets (``notebooks/<stem>.ipynb``)."""
    return f"{Path(chapter).stem}.ipynb"


def chapter_title(chapter: Path | str) -> str:
    """A chapter's title: its first level-1 heading, without attributes."""
    for line in Path(chapter).read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return _ATTRIBUTES.sub("", line[2:]).strip()
    return Path(chapter).stem


def write_notebooks(output_dir: Path | str, root: Path | str | None = None) -> list[Path]:
    """Write each exercise chapter as an unexecuted notebook into ``<output_dir>/notebooks``.

    Quarto books have no per-chapter notebook download (quarto-cli issue
    #4674), so the Makefile calls this after rendering.  The notebooks are
    unexecuted on purpose: a student runs them with labkit installed.
    """
    import nbformat

    root = find_root(root)
    target = Path(output_dir) / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in book_chapters(root):
        relative = chapter.relative_to(root).as_posix()
        if not fnmatch.fnmatch(relative, EXERCISE_CHAPTERS):
            continue
        notebook = to_notebook(chapter)
        notebook.cells = [cell for cell in notebook.cells if cell.cell_type != "raw"]
        note = (
            f"*Notebook tiré de `{relative}` (livre « Réseaux denses »). Il s'exécute dans un "
            "environnement où `labkit` est installé (`pip install -e .` à la racine du dépôt).*"
        )
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(note))
        path = target / notebook_name(chapter)
        nbformat.write(notebook, path)
        written.append(path)
    return written


#: What the quick profile's scratch copy leaves out: outputs, caches, the
#: frozen results it must never touch, and data (reached through LABKIT_* paths).
_COPY_EXCLUDES = (
    ".git", ".venv", "venv", "_freeze", "_freeze-quick", ".quarto", "build", "data",
    "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info", "_book", "_book-quick",
)


def copy_project(destination: Path | str, root: Path | str | None = None) -> Path:
    """Copy the project's sources to ``destination`` for a quick-profile render.

    Quarto deletes a chapter's entries in ``_freeze/`` whenever it executes the
    chapter with ``freeze: false`` (``renderExecute`` in quarto-cli's
    ``render-files.ts``), so rendering the quick profile in the working tree
    would erase the full book's frozen results.  The copy has no ``_freeze``
    and no ``.quarto``: quick outputs and the book's never meet.
    """
    root = find_root(root)
    destination = Path(destination).resolve()
    inside = destination == root or root in destination.parents
    if inside and (root / "build") not in destination.parents:
        raise ValueError(f"copy destination {destination} must be outside {root} or under its build/ folder")
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(root, destination, ignore=shutil.ignore_patterns(*_COPY_EXCLUDES))
    return destination


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def _report(result: ChapterResult, problems: list[str]) -> str:
    status = "ok" if not problems else f"{len(problems)} problem(s)"
    lines = [f"{result.relative_path}  {result.seconds:.1f} s  {status}"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def _execute_command(args: argparse.Namespace) -> int:
    root = find_root(args.root)
    chapters = book_chapters(root, args.profile) if args.all else [Path(c) for c in args.chapters]
    if not chapters:
        raise SystemExit("name chapters to execute, or pass --all")
    failed = False
    for chapter in chapters:
        try:
            result = execute_chapter(chapter, profile=args.profile, root=root, to=args.to)
        except ChapterExecutionError as exc:
            print(f"{chapter}  FAILED\n  {exc}", file=sys.stderr)
            failed = True
            continue
        problems = [] if args.no_check else check_chapter(result)
        failed |= bool(problems)
        print(_report(result, problems))
        if args.save:
            import nbformat

            Path(args.save).mkdir(parents=True, exist_ok=True)
            nbformat.write(result.notebook, Path(args.save) / notebook_name(chapter))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.quarto [notebooks OUTDIR | copy-project DEST | CHAPTER... | --all]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["notebooks"]:
        parser = argparse.ArgumentParser(prog="python -m labkit.quarto notebooks")
        parser.add_argument("output_dir", help="the rendered book's folder (_book or _book-quick)")
        args = parser.parse_args(argv[1:])
        for path in write_notebooks(args.output_dir):
            print(path)
        return 0
    if argv[:1] == ["copy-project"]:
        parser = argparse.ArgumentParser(prog="python -m labkit.quarto copy-project")
        parser.add_argument("destination", help="scratch folder, e.g. build/quick")
        print(copy_project(parser.parse_args(argv[1:]).destination))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m labkit.quarto",
        description="Execute chapters as Quarto's Jupyter engine does, then check their structure.",
    )
    parser.add_argument("chapters", nargs="*", help=".qmd files to execute")
    parser.add_argument("--all", action="store_true", help="every chapter listed in _quarto.yml")
    parser.add_argument("--profile", help="Quarto profile(s), e.g. quick (replaces QUARTO_PROFILE)")
    parser.add_argument("--to", default="html", choices=sorted(_FIG_FORMAT), help="target format")
    parser.add_argument("--root", help="project root (default: found from the cwd)")
    parser.add_argument("--no-check", action="store_true", help="execute only")
    parser.add_argument("--save", help="write the executed notebooks into this folder")
    return _execute_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
