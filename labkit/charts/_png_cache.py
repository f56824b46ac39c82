"""A content-addressed cache of drawn PNGs, so a warm chapter does not redraw unchanged charts.

The key is the sha256 of everything the drawing depends on: the Vega-Lite spec
exactly as handed to vl-convert (key order and float digits kept; ``NaN`` stays
distinct from ``null``), vl-convert's arguments and version, the time zone and
the installed fonts.  Altair names views and parameters by hashing their content
and datasets by hashing their rows, so one chart built twice, in one process or
two, gives the same spec; nothing is canonicalised away.

The value is the PNG file itself, in :func:`labkit.paths.chart_cache_dir`,
written atomically (temporary file, then ``os.replace``).  A file is served only
if it is a complete PNG whose every chunk checksum holds; anything else is drawn
again and replaced.  The cache never makes a render fail: an unwritable or
missing folder means drawing every time.  Deleting the folder is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Callable

from labkit.paths import chart_cache_dir, replace_best_effort

__all__ = ["cached_png", "png_key", "is_complete_png"]

#: Bump when the key's recipe or the stored value changes meaning.
FORMAT = 1

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _font_dirs() -> list[Path]:
    """The folders vl-convert's font database scans for system fonts."""
    home = Path.home()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    if sys.platform == "darwin":
        return [Path("/Library/Fonts"), Path("/System/Library/Fonts"), home / "Library" / "Fonts"]
    if sys.platform == "win32":
        windir = Path(os.environ.get("WINDIR", r"C:\Windows"))
        local = Path(os.environ.get("LOCALAPPDATA", home))
        return [windir / "Fonts", local / "Microsoft" / "Windows" / "Fonts"]
    return [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), data_home / "fonts",
            home / ".fonts"]


@functools.lru_cache(maxsize=1)
def _fonts() -> list:
    """Every font file's path, size and mtime: installing or removing a font changes keys."""
    found = []
    for folder in _font_dirs():
        for parent, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(parent, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                found.append([path, stat.st_size, stat.st_mtime_ns])
    return sorted(found)


def _time_zone() -> list:
    """What decides the local time zone, read without starting vl-convert's JS engine."""
    try:
        localtime = os.path.realpath("/etc/localtime")
    except OSError:
        localtime = None
    return [os.environ.get("TZ"), localtime, list(time.tzname), time.timezone]


def png_key(spec: dict, engine: dict) -> str | None:
    """sha256 of the drawing's inputs, or ``None`` when the spec is not plain JSON."""
    try:
        text = json.dumps(
            {"format": FORMAT, "engine": engine, "tz": _time_zone(), "fonts": _fonts(),
             "spec": spec},
            separators=(",", ":"),
            allow_nan=True,
        )
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def is_complete_png(data: bytes) -> bool:
    """The PNG signature, then chunks whose CRCs hold, ending exactly with ``IEND``."""
    if not data.startswith(_SIGNATURE):
        return False
    offset = len(_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        end = offset + 8 + length
        if end + 4 > len(data):
            return False
        kind = data[offset + 4 : offset + 8]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(data[offset + 4 : end]) != crc:
            return False
        offset = end + 4
        if kind == b"IEND":
            return offset == len(data)
    return False


def _load(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if is_complete_png(data) else None


def _save(path: Path, data: bytes) -> None:
    replace_best_effort(path, data)  # a cache that cannot be written only costs the next render a drawing


def cached_png(spec: dict, engine: dict, draw: Callable[[], bytes]) -> bytes:
    """The PNG ``draw()`` returns for ``spec``, drawn once per key and then read from disk.

    ``engine`` holds the drawing's other inputs (vl-convert's version and
    arguments).  ``draw``'s errors propagate; the cache's own never do.
    """
    try:
        key = png_key(spec, engine)
        path = None if key is None else chart_cache_dir() / f"{key}.png"
    except (OSError, RuntimeError):  # e.g. no home folder to put ~/.cache in
        path = None
    if path is None:
        return draw()
    png = _load(path)
    if png is None:
        png = draw()
        if is_complete_png(png):
            _save(path, png)
    return png
