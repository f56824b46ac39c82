"""Where the project, its datasets and its run store live.

The project root is found from ``_quarto.yml`` (never from the current directory
alone: Quarto runs each chapter with the chapter's folder as cwd).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["project_root", "data_dir", "runs_root", "jax_cache_dir", "chart_cache_dir", "data_cache_dir",
           "replace_best_effort"]


def _has_quarto_project(folder: Path) -> bool:
    return (folder / "_quarto.yml").is_file()


def _walk_up(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        if _has_quarto_project(folder):
            return folder
    return None


def project_root() -> Path:
    """The folder holding ``_quarto.yml``.

    Looked up in order: ``LABKIT_PROJECT_ROOT``, ``QUARTO_PROJECT_ROOT`` (set by
    Quarto for the kernel), the folders above this package (editable install),
    then the folders above the current directory.  Falls back to the cwd.
    """
    for variable in ("LABKIT_PROJECT_ROOT", "QUARTO_PROJECT_ROOT"):
        value = os.environ.get(variable)
        if value:
            return Path(value).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        found = _walk_up(start)
        if found is not None:
            return found
    return Path.cwd().resolve()


def data_dir() -> Path:
    """Datasets folder: ``LABKIT_DATA_DIR`` if set, else ``<project>/data``."""
    value = os.environ.get("LABKIT_DATA_DIR")
    return Path(value).expanduser().resolve() if value else project_root() / "data"


def runs_root() -> Path:
    """Run store root: ``LABKIT_RUNS_DIR`` if set, else ``<project>/data/runs``.

    The dataset folder may be read-only (a shared copy), so the store has its own
    setting.  Each profile gets its own sub-folder (see ``labkit.profile``).
    """
    value = os.environ.get("LABKIT_RUNS_DIR")
    return Path(value).expanduser().resolve() if value else project_root() / "data" / "runs"


def _user_cache(variable: str, name: str) -> Path:
    """``$variable`` if set, else ``$XDG_CACHE_HOME/labkit/<name>`` (``~/.cache`` by default)."""
    value = os.environ.get(variable)
    if value:
        return Path(value).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labkit" / name


def jax_cache_dir() -> Path:
    """JAX's persistent compilation cache (``LABKIT_JAX_CACHE`` overrides)."""
    return _user_cache("LABKIT_JAX_CACHE", "jax")


def chart_cache_dir() -> Path:
    """Drawn chart PNGs, keyed by content (``LABKIT_CHART_CACHE`` overrides)."""
    return _user_cache("LABKIT_CHART_CACHE", "charts")


def data_cache_dir() -> Path:
    """Datasets prepared once (MNIST as float32 arrays), keyed by the source file's content
    (``LABKIT_DATA_CACHE`` overrides)."""
    return _user_cache("LABKIT_DATA_CACHE", "data")


def replace_best_effort(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically (temporary file beside it, then ``os.replace``),
    for caches and hints: a folder that cannot be written only loses them, so a failure
    returns ``False`` and leaves neither ``path`` damaged nor a temporary file behind."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem[:16]}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
        return True
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return False
