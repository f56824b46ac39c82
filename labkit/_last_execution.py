"""Whether a chapter had runs to train the last time it was executed with a given store.

``start_workers()`` starts the sweep workers ahead of need when a chapter is likely to
train: on its first execution, or when it trained last time (a cold build, a chapter
being written).  A chapter whose runs were all stored last time most likely re-renders
warm: starting workers would only compete with it (measured: +0.7–1.3 s on a 13–15 s
warm chapter here), and if it does need a run after all, its sweep starts them as usual.

The memory is one small JSON file beside the records, ``<store>/.chapters.json``
(git-ignored, like the summary index): ``{chapter path: trained last time}``.  It is
a hint only: a lost or damaged file means "unknown", and workers are started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from labkit.paths import replace_best_effort

#: The file, in each profile's store folder.
FILE_NAME = ".chapters.json"


def current_chapter() -> str | None:
    """The document Quarto (or ``labkit.quarto``) is executing, else ``None`` (a script)."""
    folder, name = os.environ.get("QUARTO_DOCUMENT_PATH"), os.environ.get("QUARTO_DOCUMENT_FILE")
    return str(Path(folder, name)) if folder and name else None


def _read(store_root: Path) -> dict:
    try:
        memory = json.loads((store_root / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return memory if isinstance(memory, dict) else {}


def trained_last_time(store_root: Path) -> bool | None:
    """``True``/``False`` for the current chapter; ``None`` when unknown (or not a chapter)."""
    chapter = current_chapter()
    value = _read(store_root).get(chapter) if chapter else None
    return value if isinstance(value, bool) else None


def remember(store_root: Path, trained: bool) -> None:
    """Record whether the current chapter trained (nothing outside a chapter).

    Written atomically; a store folder that cannot be written only loses the hint.
    """
    chapter = current_chapter()
    if chapter is None:
        return
    memory = _read(store_root)
    if memory.get(chapter) is trained:
        return
    memory[chapter] = trained
    replace_best_effort(store_root / FILE_NAME, json.dumps(memory, indent=1, sort_keys=True).encode())
