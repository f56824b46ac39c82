"""Every setting labkit reads from the environment, checked where it is read.

A bad value fails at once with a message that names the variable, the value and the
fix, before anything trains.  Folders are found from ``_quarto.yml``, never from the
current directory alone: Quarto runs each chapter with the chapter's folder as cwd.

=========================  ==========================================================
``LABKIT_PROFILE``         ``full`` (the book) or ``quick`` (drafting, CI); else
                           Quarto's ``QUARTO_PROFILE`` decides, ``full`` by default
``LABKIT_PROJECT_ROOT``    the project (else Quarto's, else the folder of ``_quarto.yml``)
``LABKIT_DATA_DIR``        datasets (default ``<project>/data``)
``LABKIT_RUNS_DIR``        run stores, one sub-folder per profile (``<project>/data/runs``)
``LABKIT_REQUIRE_CACHED``  ``1``: a run that would need training is an error
``LABKIT_WORKERS``         sweep worker processes (default: one per usable core)
``LABKIT_IDLE_SECONDS``    idle workers stop after this long (default 60)
``LABKIT_PROGRESS``        ``0`` silences the progress line on the terminal
``LABKIT_CACHE_DIR``       caches that may be deleted any time (``~/.cache/labkit``)
``LABKIT_TRAIN_LOG``       tests only: a file each training start appends its key to
=========================  ==========================================================
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TypeVar

__all__ = ["PROFILES", "SettingError", "profile", "choose", "is_quick", "project_root", "data_dir",
           "store_dir", "cache_dir", "require_cached", "workers", "idle_seconds", "progress", "tell"]

PROFILES = ("full", "quick")
T = TypeVar("T")


class SettingError(ValueError):
    """An environment variable holds a value labkit cannot use."""


def _bad(name: str, value: str, expected: str, fix: str) -> SettingError:
    return SettingError(f"{name}={value!r} is not {expected}; {fix}")


def profile() -> str:
    """The active budget profile: ``full`` unless ``quick`` is asked for."""
    explicit = os.environ.get("LABKIT_PROFILE", "").strip()
    if explicit:
        if explicit not in PROFILES:
            raise _bad("LABKIT_PROFILE", explicit, "a profile", f"use one of {', '.join(PROFILES)}")
        return explicit
    quarto = [name.strip() for name in os.environ.get("QUARTO_PROFILE", "").split(",")]
    return "quick" if "quick" in quarto else "full"


def is_quick() -> bool:
    return profile() == "quick"


def choose(full: T, quick: T) -> T:
    """The value for the active profile: ``EPOCHS = choose(full=20, quick=3)``."""
    return quick if is_quick() else full


def project_root() -> Path:
    """The folder of ``_quarto.yml``: from ``LABKIT_PROJECT_ROOT`` or Quarto's
    ``QUARTO_PROJECT_ROOT``, else above this package (an editable install), else above
    the current directory; the current directory when none is found."""
    for variable in ("LABKIT_PROJECT_ROOT", "QUARTO_PROJECT_ROOT"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "_quarto.yml").is_file():
                return folder
    return Path.cwd().resolve()


def _folder(variable: str, default: Path) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    return _folder("LABKIT_DATA_DIR", project_root() / "data")


def store_dir(name: str | None = None) -> Path:
    """The run store of a profile (default: the active one): quick runs never mix with the book's."""
    name = name or profile()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}")
    return _folder("LABKIT_RUNS_DIR", project_root() / "data" / "runs") / name


def cache_dir(kind: str) -> Path:
    """A cache folder (``jax``, ``charts``, ``data``): deleting it only costs time."""
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return _folder("LABKIT_CACHE_DIR", Path(home).expanduser() / "labkit") / kind


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise _bad(name, value, "a yes/no flag", "use 1 or 0")


def require_cached() -> bool:
    """``LABKIT_REQUIRE_CACHED=1``: serve stored runs only (publishing, CI)."""
    return _flag("LABKIT_REQUIRE_CACHED")


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def workers() -> int:
    """Sweep workers: ``LABKIT_WORKERS``, else one per usable core."""
    value = os.environ.get("LABKIT_WORKERS", "").strip()
    if not value:
        return usable_cores()
    if not value.isdecimal() or int(value) < 1:
        raise _bad("LABKIT_WORKERS", value, "a number of processes >= 1",
                   "unset it for one worker per core")
    return int(value)


def idle_seconds() -> float:
    """How long idle workers wait for the next sweep before they stop."""
    value = os.environ.get("LABKIT_IDLE_SECONDS", "").strip()
    if not value:
        return 60.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise _bad("LABKIT_IDLE_SECONDS", value, "a number of seconds >= 0", "unset it for 60 s")
    return seconds


def progress() -> bool:
    """``LABKIT_PROGRESS=0`` silences labkit's messages on the terminal (on by default)."""
    return not os.environ.get("LABKIT_PROGRESS", "").strip() or _flag("LABKIT_PROGRESS")


def tell(message: str) -> None:
    """Tell the person running the build, never the page: a notebook's stderr is printed in
    the rendered chapter, so messages go to the terminal (``/dev/tty``) when there is one,
    else to stderr outside a notebook.  ``LABKIT_PROGRESS=0`` silences them."""
    if not progress():
        return
    try:
        with open("/dev/tty", "w", encoding="utf-8") as terminal:
            terminal.write(f"[labkit] {message}\n")
        return
    except OSError:
        pass
    if "ipykernel" not in sys.modules:
        print(f"[labkit] {message}", file=sys.stderr, flush=True)
