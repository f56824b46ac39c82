"""The run store: one validated JSON record per run, written atomically.

It behaves like a trustworthy cache: a record is either complete and checked
(format, key, checksum, history length) or it is not served.  No pickle, no
eval; keys are validated before they become file names; a lock per key lets
two processes share a store without training the same run twice.  A summary
index beside the records (``.summary.jsonl``, a cache, never committed) lets
``labkit runs stats`` add up thousands of records without parsing them.
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

from labkit.paths import replace_best_effort

__all__ = [
    "FORMAT",
    "SUMMARY",
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
#: File name of the summary index in each kind's folder (see ``Store.summaries``).
SUMMARY = ".summary.jsonl"


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


def _parsed_checksum(record: dict) -> str:
    """``_checksum`` of a record parsed from JSON without non-finite numbers: its keys are
    strings, its arrays lists and its floats finite, so ``_finite`` would change nothing,
    and skipping its walk over every value halves the cost of reading a record."""
    rest = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _refuse_non_finite(constant: str):
    raise ValueError(f"non-finite number {constant} (labkit writes them as null)")


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

    #: Fields of a record copied into the summary index: what ``labkit runs stats`` adds up.
    summary_fields = ("diverged", "seconds")

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
            record = json.loads(text, parse_constant=_refuse_non_finite)
        except json.JSONDecodeError as error:
            raise BadRecord(f"{path}: not valid JSON ({error.msg} at char {error.pos})") from None
        except ValueError as error:
            raise BadRecord(f"{path}: {error}") from None
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
        if record.get("checksum") != _parsed_checksum(record):
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
        fields = self._fields_if_valid(sealed)
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
                written = os.fstat(f.fileno())  # size, mtime and inode survive the rename
            os.replace(tmp, path)
        except OSError as error:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(
                f"could not write record {key[:12]} to {path.parent} ({error.strerror or error}); "
                "nothing partial was left; free some space or fix permissions and re-run"
            ) from error
        if fields is not None:
            self._append_summary(path.parent, key, written, fields)
        return path

    @staticmethod
    def _peek_format(path: Path) -> int | None:
        try:
            version = json.loads(path.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            return None
        return version if isinstance(version, int) else None

    def remove(self, key: str, kind: str = "runs") -> bool:
        """Delete a record; its summary line, if any, no longer matches a file and is ignored."""
        path = self.path(key, kind)
        if path.exists():
            path.unlink()
            return True
        return False

    # -- summary index -----------------------------------------------------
    # ``<root>/<kind>/.summary.jsonl`` holds one line per saved record: its key, the size,
    # mtime_ns and inode of the file as written, and ``summary_fields``.  It is a cache:
    # a line is trusted only while the file still has that size, mtime and inode, so an
    # edited, truncated, replaced or removed record is parsed again (or ignored); lines
    # that do not parse are skipped.  Limit (shared with make, rsync and git's "racy
    # clean" entries): an edit that keeps the size, within the timestamp granularity of
    # the save, in place, goes unseen by ``summaries`` (``load`` still rejects it).
    #
    # ``save`` appends its line with O_APPEND in a single ``write`` of a short line, so
    # worker processes saving at once never overwrite or interleave each other's lines
    # (on a local file system the kernel positions each append at the end and holds the
    # inode lock for the whole write).  Where that does not hold (NFS), a garbled line is
    # skipped and its record parsed: slower, never wrong.  The summary must never make a
    # save fail: the record is written first, and a summary error is ignored.

    def _fields_if_valid(self, sealed: dict) -> dict | None:
        """``summary_fields`` of a record about to be saved, or None if ``load`` would reject it."""
        if self._validate is not None and sealed.get("kind", "runs") == "runs":
            try:
                self._validate(sealed)
            except BadRecord:
                return None
        fields = {name: sealed.get(name) for name in self.summary_fields}
        return fields if _plain_fields(fields, self.summary_fields) else None

    @staticmethod
    def _append_summary(folder: Path, key: str, written: os.stat_result, fields: dict) -> None:
        line = _summary_line(key, written.st_size, written.st_mtime_ns, written.st_ino, fields)
        try:
            fd = os.open(folder / SUMMARY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            pass  # a cache line lost (read-only, full disk): `summaries` parses this record instead

    def _read_summary(self, folder: Path) -> tuple[dict, int]:
        """``({(key, size, mtime_ns, ino): fields}, number of lines)``; bad lines are skipped."""
        try:
            text = (folder / SUMMARY).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}, 0
        known = {}
        lines = text.splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
                ident = (entry["key"], entry["size"], entry["mtime_ns"], entry["ino"])
                fields = entry["fields"]
            except (ValueError, KeyError, TypeError):
                continue
            if (entry.get("format") == FORMAT and isinstance(ident[0], str) and _KEY.match(ident[0])
                    and all(type(n) is int for n in ident[1:])
                    and _plain_fields(fields, self.summary_fields)):
                known[ident] = fields
        return known, len(lines)

    def summaries(self, kind: str = "runs") -> dict[str, tuple[int, dict | None]]:
        """``{key: (bytes, fields)}`` of every record file, ``fields`` None for a damaged one.

        ``fields`` (``summary_fields``) come from the summary index when its line matches
        the file's current size, mtime and inode; any other record is read with ``load``
        (fully validated), after which the index is rewritten compactly so the next call
        parses nothing.  Damaged records are never indexed: they are checked each time.
        """
        if kind not in _KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        folder = self.root / kind
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        known, line_count = self._read_summary(folder)
        found: dict[str, tuple[int, dict | None]] = {}
        index: list[tuple] = []  # what the rewritten summary would hold
        trusted = 0
        for entry in sorted(entries, key=lambda e: e.name):
            key = entry.name[:-5]
            if not entry.name.endswith(".json") or not _KEY.match(key):
                continue
            try:
                now = entry.stat()  # taken before any read: a later change never matches it
            except FileNotFoundError:
                continue  # removed meanwhile
            ident = (key, now.st_size, now.st_mtime_ns, now.st_ino)
            fields = known.get(ident)
            if fields is not None:
                trusted += 1
            else:
                try:
                    record = self.load(key, kind)
                except StoreError:
                    found[key] = (now.st_size, None)
                    continue
                if record is None:
                    continue  # removed meanwhile
                fields = {name: record.get(name) for name in self.summary_fields}
            found[key] = (now.st_size, fields)
            if _plain_fields(fields, self.summary_fields):
                index.append((*ident, fields))
        if line_count != trusted or len(index) != trusted:  # stale or bad lines, or records to add
            self._rewrite_summary(folder, [_summary_line(*item) for item in index])
        return found

    @staticmethod
    def _rewrite_summary(folder: Path, lines: list[bytes]) -> None:
        """Replace the index atomically; a line a worker appends meanwhile may be lost (it is
        only a cache: that record is parsed next time).  A read-only store keeps no index."""
        replace_best_effort(folder / SUMMARY, b"".join(lines))

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


def _summary_line(key: str, size: int, mtime_ns: int, ino: int, fields: dict) -> bytes:
    entry = {"key": key, "size": size, "mtime_ns": mtime_ns, "ino": ino, "format": FORMAT, "fields": fields}
    return (json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _plain_fields(fields, names) -> bool:
    """A summary's fields: exactly ``names``, each a bool, None, int or finite float."""
    return (isinstance(fields, dict) and set(fields) == set(names)
            and all(v is None or isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v))
                    for v in fields.values()))


class MissingRun(StoreError):
    """A run that would need training while LABKIT_REQUIRE_CACHED=1."""


def _missing(key: str) -> MissingRun:
    return MissingRun(
        f"run {key[:12]} is not in the store and LABKIT_REQUIRE_CACHED=1 forbids training; "
        "unset it to train, or restore the committed store (git checkout data/runs)"
    )
