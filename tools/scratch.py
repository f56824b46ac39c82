"""Copy the book's sources into a scratch folder, where ``make quick`` renders the quick profile.

Quarto deletes a chapter's ``_freeze/`` entries whenever it executes the chapter with
``freeze: false`` (``renderExecute`` in quarto-cli's ``render-files.ts``): rendered in
the working tree, the quick profile would erase the full book's frozen results.  The copy
has no ``_freeze``, no ``.quarto``, no outputs and no data (the render reaches the
datasets and the run store through ``LABKIT_DATA_DIR`` and ``LABKIT_RUNS_DIR``).

    python tools/scratch.py build/quick
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = (".git", ".venv", "venv", "_freeze", ".quarto", "build", "data", "_notebooks", "__pycache__",
            ".pytest_cache", ".hypothesis", "*.egg-info", "_book", "_book-quick")


#: Written into every copy: only a folder holding it (or an empty one) is ever replaced.
MARK = ".scratch-copy"


def copy_project(destination: Path, root: Path = ROOT) -> Path:
    """A fresh copy of the sources at ``destination`` (outside ``root``, or under its build/).

    An existing destination is replaced only if it is empty or an earlier scratch copy:
    ``tools/scratch.py ..`` must never delete the folder holding the checkout."""
    destination, root = Path(destination).resolve(), Path(root).resolve()
    if (destination == root or root in destination.parents) and (root / "build") not in destination.parents:
        raise ValueError(f"{destination} must be outside {root} or under its build/ folder")
    if destination.exists() and any(destination.iterdir()) and not (destination / MARK).is_file():
        raise ValueError(f"{destination} exists and is not a scratch copy of the book: give an empty or new folder")
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(root, destination, ignore=shutil.ignore_patterns(*LEFT_OUT))
    (destination / MARK).write_text("made by tools/scratch.py; replaced by the next copy\n")
    return destination


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", type=Path)
    try:
        print(copy_project(parser.parse_args().destination))
    except ValueError as error:
        parser.exit(2, f"scratch: {error}\n")
