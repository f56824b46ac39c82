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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = (".git", ".venv", "venv", "_freeze", ".quarto", "build", "data", "_notebooks", "__pycache__",
            ".pytest_cache", ".hypothesis", "*.egg-info", "_book", "_book-quick")


def copy_project(destination: Path, root: Path = ROOT) -> Path:
    """A fresh copy of the sources at ``destination`` (outside ``root``, or under its build/)."""
    destination, root = Path(destination).resolve(), Path(root).resolve()
    if (destination == root or root in destination.parents) and (root / "build") not in destination.parents:
        raise ValueError(f"{destination} must be outside {root} or under its build/ folder")
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(root, destination, ignore=shutil.ignore_patterns(*LEFT_OUT))
    return destination


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", type=Path)
    print(copy_project(parser.parse_args().destination))
