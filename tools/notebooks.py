"""Write one unexecuted notebook per chapter into ``_notebooks/``, before Quarto renders.

The preface links to ``_notebooks/<chapter>.ipynb``.  Quarto checks links while it
renders, so the notebooks must exist by then: ``_quarto.yml`` runs this script as a
``project: pre-render`` step and lists ``_notebooks/*.ipynb`` as ``resources``, which
Quarto copies into the site.  The folder is generated (git-ignored) and its name starts
with ``_`` so that Quarto never takes a notebook for a page of the book to render (it
would rewrite the links to ``.html``).  Each notebook is
the chapter cut into cells as Quarto cuts it (``tools/quarto.py``), without outputs: a
student runs it where labkit is installed.

    python tools/notebooks.py [--root DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quarto  # noqa: E402

FOLDER = "_notebooks"
NOTE = ("*Notebook tiré de `{source}` (livre « Réseaux denses »). Il s'exécute dans un environnement où "
        "`labkit` est installé (`pip install -e .` à la racine du dépôt).*")


def write(root: Path = quarto.ROOT) -> list[Path]:
    """One notebook per chapter under ``chapters/`` into ``<root>/_notebooks/<stem>.ipynb``."""
    import nbformat

    folder = root / FOLDER
    folder.mkdir(exist_ok=True)
    written = []
    for chapter in quarto.chapters(root):
        if chapter.parent.name != "chapters":
            continue
        notebook = quarto.notebook(chapter)
        source = chapter.relative_to(root).as_posix()
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(NOTE.format(source=source)))
        path = folder / f"{chapter.stem}.ipynb"
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=quarto.ROOT)
    root = parser.parse_args().root
    for written in write(root):
        print(written.relative_to(root))
