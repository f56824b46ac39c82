"""The active budget profile: ``full`` (the book) or ``quick`` (drafting and CI).

Quarto tells the kernel its active profiles in ``QUARTO_PROFILE`` (comma
separated); ``LABKIT_PROFILE`` overrides it.  Each profile has its own run store
so quick results can never be served as the book's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from labkit.paths import runs_root

__all__ = ["PROFILES", "active", "choose", "is_quick", "store_dir"]

PROFILES = ("full", "quick")
T = TypeVar("T")


def active() -> str:
    """Name of the active profile, ``"full"`` unless ``quick`` is asked for."""
    explicit = os.environ.get("LABKIT_PROFILE", "").strip()
    if explicit:
        if explicit not in PROFILES:
            raise ValueError(
                f"LABKIT_PROFILE={explicit!r} is not a profile; use one of {PROFILES}"
            )
        return explicit
    quarto = [p.strip() for p in os.environ.get("QUARTO_PROFILE", "").split(",")]
    return "quick" if "quick" in quarto else "full"


def is_quick() -> bool:
    return active() == "quick"


def choose(full: T, quick: T) -> T:
    """The value for the active profile: ``choose(full=20, quick=2)``."""
    return quick if is_quick() else full


def store_dir(profile: str | None = None) -> Path:
    """Run store folder of a profile (default: the active one)."""
    return runs_root() / (profile or active())
