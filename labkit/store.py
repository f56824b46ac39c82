"""The run store: one validated JSON record per run, written atomically.

It behaves like a trustworthy cache: a record is either complete and checked
(format, key, checksum, history length) or it is not served.  No pickle, no
eval; keys are validated before they become file names; a lock per key lets
two processes share a store without training the same run twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock, Timeout

__all__ = [
    "FORMAT",
    "MissingRun",
    "Store",
    "StoreError",
    "BadRecord",
    "NewerFormat",
    "ReadOnlyStore",
    "canonical_json",
    "digest",
]

#: Version of the record format; part of every key, so a change retrains.
FORMAT = 1
_KEY = re.compile(r"^[0-9a-f]{64}$")
_KINDS = ("runs", "memo")


class StoreError(RuntimeError):
    """A store problem the user must act on (the message says how)."""


class BadRecord(StoreError):
    """A record that fails validation: it is never served."""


class NewerFormat(StoreError):
    """A record written by a newer labkit: neither served nor overwritten."""


class ReadOnlyStore(StoreError):
    """A miss in a store that cannot be written."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces, non-finite floats as null)."""
    return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(value: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def check_key(key: str) -> str:
    """A key is 64 lowercase hex characters; anything else never becomes a path."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"invalid run key {key!r}: expected 64 hexadecimal characters")
    return key


def _checksum(record: dict) -> str:
    return digest({k: v for k, v in record.items() if k != "checksum"})


def seal(record: dict) -> dict:
    """Add the checksum that lets a reader detect an edited or damaged record."""
    record = _finite(dict(record))
    record["checksum"] = _checksum(record)
    return record


class Store:
    """A folder of JSON records, ``<root>/runs/<key>.json`` and ``<root>/memo/<key>.json``.

    ``validate`` is a function that raises ``BadRecord`` for a record whose
    content is inconsistent (the run module checks history lengths); the store
    itself checks JSON, format, key and checksum.
    """

    def __init__(self, root: str | os.PathLike, validate: Callable[[dict], None] | None = None):
        self.root = Path(root)
        self._validate = validate

    # -- paths -------------------------------------------------------------
    def path(self, key: str, kind: str = "runs") -> Path:
        if kind not in _KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        return self.root / kind / f"{check_key(key)}.json"

    def _lock(self, key: str) -> FileLock | None:
        folder = self.root / ".locks"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # read-only store: reads stay safe thanks to atomic writes
        if not os.access(folder, os.W_OK):
            return None
        return FileLock(str(folder / f"{key}.lock"))

    # -- reading -----------------------------------------------------------
    def load(self, key: str, kind: str = "runs") -> dict | None:
        """The record of ``key`` if present and valid; ``None`` if absent.

        Raises ``BadRecord`` for a damaged record (the caller decides whether to
        retrain) and ``NewerFormat`` for a record of a newer labkit.
        """
        path = self.path(key, kind)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return self._parse(text, key, path)

    def _parse(self, text: str, key: str, path: Path) -> dict:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadRecord(f"{path}: not valid JSON ({error.msg} at char {error.pos})") from None
        if not isinstance(record, dict):
            raise BadRecord(f"{path}: a record must be a JSON object")
        version = record.get("format")
        if isinstance(version, int) and version > FORMAT:
            raise NewerFormat(
                f"{path} was written by a newer labkit (record format {version}, this labkit "
                f"reads format {FORMAT}); upgrade labkit (pip install -U labkit / git pull) "
                "instead of retraining over it"
            )
        if version != FORMAT:
            raise BadRecord(f"{path}: record format {version!r}, expected {FORMAT}")
        if record.get("key") != key:
            raise BadRecord(f"{path}: holds key {record.get('key')!r}, not {key}")
        if record.get("checksum") != _checksum(record):
            raise BadRecord(f"{path}: checksum mismatch (the record was edited or damaged)")
        if self._validate is not None and record.get("kind", "runs") == "runs":
            self._validate(record)
        return record

    def keys(self, kind: str = "runs") -> list[str]:
        folder = self.root / kind
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if _KEY.match(p.stem))

    def records(self, kind: str = "runs") -> Iterator[dict]:
        """Every valid record (damaged ones are skipped: ``labkit runs stats`` counts them)."""
        for key in self.keys(kind):
            try:
                record = self.load(key, kind)
            except StoreError:
                continue
            if record is not None:
                yield record

    # -- writing -----------------------------------------------------------
    def save(self, record: dict, kind: str = "runs") -> Path:
        """Write ``record`` atomically (temp file in the same folder, fsync, rename).

        A failure (disk full, read-only folder) leaves no partial record and
        every earlier record intact; the error says what went wrong.
        """
        key = check_key(record["key"])
        path = self.path(key, kind)
        existing = self._peek_format(path)
        if existing is not None and existing > FORMAT:
            raise NewerFormat(f"{path} holds a newer record format ({existing}); not overwritten")
        sealed = seal({**record, "format": FORMAT})
        data = json.dumps(sealed, sort_keys=True, indent=1, allow_nan=False).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
        except OSError as error:
            raise ReadOnlyStore(
                f"cannot write the run store at {self.root} ({error.strerror}); make it "
                "writable or set LABKIT_RUNS_DIR to a writable folder"
            ) from error
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as error:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(
                f"could not write record {key[:12]} to {path.parent} ({error.strerror or error}); "
                "nothing partial was left; free some space or fix permissions and re-run"
            ) from error
        return path

    @staticmethod
    def _peek_format(path: Path) -> int | None:
        try:
            version = json.loads(path.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            return None
        return version if isinstance(version, int) else None

    def remove(self, key: str, kind: str = "runs") -> bool:
        path = self.path(key, kind)
        if path.exists():
            path.unlink()
            return True
        return False

    # -- compute once ------------------------------------------------------
    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], dict],
        kind: str = "runs",
        allow_compute: bool = True,
        on_bad: Callable[[BadRecord], None] | None = None,
        lock_timeout: float = 6 * 3600,
    ) -> tuple[dict, bool]:
        """``(record, cached)``: the stored record, or ``compute()``'s, saved.

        A per-key lock makes a second process wait for the first and read its
        result instead of computing it again.  A damaged record is reported to
        ``on_bad`` and recomputed.  With ``allow_compute=False`` a miss raises.
        """
        record = self._load_or_report(key, kind, on_bad)
        if record is not None:
            return record, True
        if not allow_compute:
            raise _missing(key)
        lock = self._lock(key)
        if lock is None:
            raise ReadOnlyStore(
                f"run {key[:12]} is not in the read-only store {self.root}; set LABKIT_RUNS_DIR "
                "to a writable folder to train it"
            )
        try:
            with lock.acquire(timeout=lock_timeout):
                record = self._load_or_report(key, kind, on_bad)
                if record is not None:
                    return record, True
                started = time.time()
                record = compute()
                record.setdefault("compute_seconds", time.time() - started)
                record["key"] = key
                self.save(record, kind)
                return self.load(key, kind), False
        except Timeout:
            raise StoreError(f"timed out waiting for the lock of run {key[:12]}") from None

    def _load_or_report(self, key, kind, on_bad):
        try:
            return self.load(key, kind)
        except BadRecord as error:
            if on_bad is not None:
                on_bad(error)
            return None


class MissingRun(StoreError):
    """A run that would need training while LABKIT_REQUIRE_CACHED=1."""


def _missing(key: str) -> MissingRun:
    return MissingRun(
        f"run {key[:12]} is not in the store and LABKIT_REQUIRE_CACHED=1 forbids training; "
        "unset it to train, or restore the committed store (git checkout data/runs)"
    )
