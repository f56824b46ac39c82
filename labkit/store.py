"""The run store: one checked JSON record per result, written atomically by one writer.

It behaves like a cache one can trust: a record is served only if it reads as UTF-8
JSON, carries this format, the key of its file name and a checksum of its content, and
passes its kind's schema (``validators``).  Whatever is wrong with a file (a stray
byte, a directory in its place, a field of the wrong type) is one error,
:class:`BadRecord`: the result is treated as absent and computed again, never served.
No pickle, no eval; keys are checked before they become paths.  A lock per key lets
two processes share a store without computing the same result twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

from labkit import settings

__all__ = ["FORMAT", "Store", "StoreError", "BadRecord", "NewerFormat", "MissingResult",
           "canonical_json", "digest", "memo", "memo_key"]

#: Version of the record format; part of every key, so changing it retrains everything.
FORMAT = 1
KINDS = ("runs", "memo")
_KEY = re.compile(r"[0-9a-f]{64}")
#: What is said of a damaged record under ``LABKIT_REQUIRE_CACHED=1`` (see :meth:`Store.usable`).
NOT_COMPUTED = "not served, and not computed again (LABKIT_REQUIRE_CACHED=1)"
#: A record is a few hundred kilobytes at most: a larger file is not one (and is not read).
MAX_RECORD_BYTES = 64 * 2**20



def write_atomically(path: Path, content: bytes) -> None:
    """Write through a temporary file renamed over ``path``: a reader never sees half a file,
    and a failed write (``OSError``, raised) leaves nothing partial behind."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise


class StoreError(RuntimeError):
    """A store problem the user must act on (the message says how)."""


class BadRecord(StoreError):
    """A record that cannot be trusted, for any reason: it is never served."""


class NewerFormat(StoreError):
    """A record written by a newer labkit: neither served nor overwritten."""


class MissingResult(StoreError):
    """A result that would have to be computed while ``LABKIT_REQUIRE_CACHED=1``."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, no NaN (non-finite floats are refused)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def finite(value):
    """``value`` with non-finite floats as ``None`` (JSON has no NaN; a diverged loss is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def check_key(key) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"invalid key {key!r}: expected 64 lowercase hexadecimal characters")
    return key


def _refuse_constant(name):
    raise ValueError(f"non-finite number {name}")


class Store:
    """A folder ``<root>/<kind>/<key>.json``; ``validators[kind](record)`` raises on a bad schema."""

    def __init__(self, root, validators: dict[str, Callable[[dict], None]] | None = None):
        self.root = Path(root)
        self.validators = validators or {}

    def path(self, key: str, kind: str = "runs") -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}; use one of {KINDS}")
        return self.root / kind / f"{check_key(key)}.json"

    def keys(self, kind: str = "runs") -> list[str]:
        folder = self.root / kind
        return sorted(p.stem for p in folder.glob("*.json") if _KEY.fullmatch(p.stem)) if folder.is_dir() else []

    def load(self, key: str, kind: str = "runs") -> dict | None:
        """The record of ``key``, or ``None`` if there is none.

        Raises :class:`BadRecord` for a file that cannot be trusted (the caller decides
        whether to recompute) and :class:`NewerFormat` for one of a newer labkit.
        """
        path = self.path(key, kind)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
                raise BadRecord(f"{path}: not a record file (a folder, a device, or over "
                                f"{MAX_RECORD_BYTES // 2**20} MB)")
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise BadRecord(f"{path}: unreadable ({error})") from None
        return self.check(text, key, kind, path)

    def check(self, text: str, key: str, kind: str, path: Path | str = "<record>") -> dict:
        """Parse and verify a record's text; raise :class:`BadRecord` if anything is off."""
        try:
            record = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as error:
            raise BadRecord(f"{path}: not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise BadRecord(f"{path}: a record must be a JSON object")
        version = record.get("format")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
            raise NewerFormat(f"{path} was written by a newer labkit (format {version}, this one "
                              f"reads {FORMAT}); upgrade labkit rather than recompute over it")
        if version != FORMAT or record.get("key") != key or record.get("kind") != kind:
            raise BadRecord(f"{path}: not a format-{FORMAT} {kind} record of key {key[:12]}")
        rest = {k: v for k, v in record.items() if k != "checksum"}
        try:
            sealed = record.get("checksum") == digest(rest)
        except (ValueError, RecursionError):  # nested too deep to hash
            sealed = False
        if not sealed:
            raise BadRecord(f"{path}: checksum mismatch (the record was edited or damaged)")
        try:
            self.validators.get(kind, lambda record: None)(record)
        except Exception as error:  # noqa: BLE001  (any schema failure means: do not serve it)
            raise BadRecord(f"{path}: {type(error).__name__}: {error}") from None
        return record

    def save(self, record: dict, kind: str = "runs") -> dict:
        """Seal and write ``record`` atomically (temporary file, fsync, rename); return it as
        a reader gets it.

        The record is verified as a reader would first: a wrong record (a worker's, say) is
        refused with :class:`BadRecord` and never written.  A failure to write leaves no
        partial file and every earlier record intact.  A folder in the record's place is
        moved aside (``<key>.json.not-a-record``), not deleted.
        """
        if not isinstance(record, dict):
            raise BadRecord(f"a record must be a dict, got {type(record).__name__}")
        key = check_key(record.get("key"))
        path = self.path(key, kind)
        try:
            sealed = {**finite(record), "format": FORMAT, "kind": kind}
            sealed.pop("checksum", None)
            sealed["checksum"] = digest(sealed)
            text = json.dumps(sealed, sort_keys=True, indent=1, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as error:
            raise BadRecord(f"{path}: the record is not plain JSON ({error})") from None
        checked = self.check(text, key, kind, path)
        try:
            self.load(key, kind)  # raises NewerFormat: a newer record is never overwritten
        except BadRecord:
            pass  # replaced below
        try:
            if path.is_dir() and not path.is_symlink():  # not a record: kept for its owner, out of the way
                path.rename(path.with_name(f"{path.name}.not-a-record"))
            write_atomically(path, text.encode("utf-8"))
        except OSError as error:
            raise StoreError(f"cannot write {path} ({error.strerror or error}); nothing partial was "
                             "left: free some space, fix the folder's permissions, or set "
                             "LABKIT_RUNS_DIR to a writable folder") from None
        return checked

    def remove(self, key: str, kind: str = "runs") -> bool:
        path = self.path(key, kind)
        if path.is_dir() or not path.exists():
            return False
        path.unlink()
        return True

    def scan(self, kind: str = "runs") -> Iterator[tuple[str, dict | None, str | None]]:
        """``(key, record, problem)`` for every file of a kind: what ``labkit runs`` reports."""
        folder = self.root / kind
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        for name in names:
            if not name.endswith(".json") or not _KEY.fullmatch(name[:-5]):
                continue
            try:
                yield name[:-5], self.load(name[:-5], kind), None
            except StoreError as error:
                yield name[:-5], None, str(error)

    def lock(self, key: str) -> FileLock:
        """The lock of one key, taken to compute its record (a read-only store has none: StoreError)."""
        folder, key = self.root / ".locks", check_key(key)
        with contextlib.suppress(OSError):  # a store that cannot be written: said below
            folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise StoreError(f"{key[:12]} is missing from the read-only store {self.root}; set "
                             "LABKIT_RUNS_DIR to a writable folder to compute it")
        return FileLock(str(folder / f"{key}.lock"))

    def get_or_compute(self, key: str, compute: Callable[[], dict], kind: str = "runs",
                       allow_compute: bool = True) -> tuple[dict, bool]:
        """``(record, cached)``: the stored record, else ``compute()``'s, saved once.

        A second process asking for the same key waits for the first one's lock, then
        reads its record instead of computing it again.
        """
        record = self.usable(key, kind, then="computing it again" if allow_compute else NOT_COMPUTED)
        if record is not None:
            return record, True
        if not allow_compute:
            raise MissingResult(f"{kind} record {key[:12]} is not in {self.root} and "
                                "LABKIT_REQUIRE_CACHED=1 forbids computing it; unset it, or restore "
                                "the committed store (git checkout data/runs)")
        with self.lock(key):
            record = self.usable(key, kind, then=None)  # a damaged one was reported above
            if record is not None:
                return record, True
            return self.save({**compute(), "key": key}, kind), False

    def usable(self, key: str, kind: str = "runs", then: str | None = "computing it again") -> dict | None:
        """The record, or ``None`` when it is absent or cannot be trusted: then its problem and ``then``
        (what the caller does about it) are said on the terminal, unless ``then`` is None (said already)."""
        try:
            return self.load(key, kind)
        except BadRecord as error:
            if then is not None:
                settings.tell(f"{error}; {then}")
            return None


# -- memo: results that are not Keras runs ---------------------------------------------
def memo_key(name: str, params: dict, version: int = 1) -> str:
    return digest({"format": FORMAT, "memo": 1, "name": name, "params": params,
                   **({"version": version} if version != 1 else {})})


def check_memo(record: dict) -> None:
    """Schema of a memo record: its key must follow from its name, params and version."""
    name, params, version = record["name"], record["params"], record.get("version", 1)
    if not isinstance(name, str) or not isinstance(params, dict) or type(version) is not int:
        raise TypeError("memo name must be a string, params an object, version an integer")
    if memo_key(name, params, version) != record["key"]:
        raise ValueError("its key does not follow from its name and params")
    seconds = record.get("seconds", 0.0)
    if "value" not in record or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("a memo record needs a value and a number of seconds")
    extra = set(record) - {"key", "format", "kind", "checksum", "name", "params", "version", "value", "seconds",
                           "compute_seconds"}  # in older records
    if extra:
        raise ValueError(f"unknown fields {sorted(extra)}")


def memo(name: str, params: dict, compute: Callable[[], Any], version: int = 1,
         store: Store | None = None) -> Any:
    """``compute()``'s JSON value, computed once per (name, params, version) and profile.

    ``params`` must hold everything the value depends on: it is the key.  Bump
    ``version`` when ``compute`` changes what it returns for the same params.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"memo name must be a non-empty string, got {name!r}")
    if not isinstance(params, dict):
        raise ValueError(f"memo params must be a dict, got {type(params).__name__}")
    try:  # as JSON reads them back, for the key and the record alike
        params = json.loads(canonical_json(params))
    except (TypeError, ValueError) as error:
        raise ValueError(f"memo params {params!r:.100} are not plain JSON ({error}): give finite int, float, "
                         "str, list and dict values with string keys (int(n) for a NumPy integer)") from None
    from labkit.runs import open_store

    store = store or open_store()
    key = memo_key(name, params, version)

    def run() -> dict:
        started = time.perf_counter()
        value = compute()
        canonical_json(value)  # a value JSON cannot hold fails here, with JSON's message
        return {"name": name, "params": params, "value": value,
                "seconds": time.perf_counter() - started, **({"version": version} if version != 1 else {})}

    record, _ = store.get_or_compute(key, run, kind="memo", allow_compute=not settings.require_cached())
    return record["value"]
