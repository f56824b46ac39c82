"""labkit.store: whatever is wrong with a record file is one error, BadRecord; such a record is
never served, is computed again, and is reported by ``Store.scan``."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from labkit import memo
from labkit.runs import RECORD_FIELDS, open_store
from labkit import settings
from labkit.store import (FORMAT, NOT_COMPUTED, BadRecord, MissingResult, NewerFormat, Store, StoreError,
                          check_key, digest)


def reseal(record: dict) -> str:
    """A record edited and given a matching checksum again, as a careful forger would."""
    rest = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps({**rest, "checksum": digest(rest)})


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


#: Bytes that are not a record, each from the text of a genuine one.
BYTES = {
    "non-UTF-8 byte": lambda text: text.encode()[:200] + b"\xff" + text.encode()[201:],
    "UTF-16": lambda text: text.encode("utf-16"),
    "Latin-1 accent": lambda text: text.replace('"mnist"', '"mnist\u00e9"').encode("latin-1"),
    "truncated": lambda text: text.encode()[: len(text) // 2],
    "empty": lambda text: b"",
    "NUL bytes": lambda text: b"\x00" * 64,
    "nested 100,000 deep": lambda text: deep(100_000).encode(),
    "nested 900 deep in a field": lambda text: text.replace('"probes":', f'"extra": {deep(900)}, "probes":').encode(),
    "array": lambda text: b"[1, 2, 3]",
    "string": lambda text: b'"a record"',
    "number": lambda text: b"42",
    "NaN literal": lambda text: text.replace('"seconds": ', '"seconds": NaN, "was": ', 1).encode(),
    "edited, not re-sealed": lambda text: text.replace('"epochs_run": 2', '"epochs_run": 1').encode(),
    "huge integer": lambda text: text.replace('"seconds": ', '"seconds": 1' + "0" * 5000 + ', "was": ', 1).encode(),
}

#: Values of the wrong type for each field, re-sealed (the checksum passes, the schema must not).
WRONG_TYPES = {"spec": [], "history": [1, 2], "epochs_run": "2", "diverged": "no", "stopped_early": 0,
               "best_epoch": 2.0, "final": [], "test": [], "predictions": {}, "probes": [], "seconds": "1 s",
               "epoch_seconds": "0.5", "started_at": 2026, "finished_at": None, "sizes": [300],
               "versions": "3.15", "platform": ["AMD EPYC"]}

#: Edits that keep every type but make the record lie about itself (re-sealed too).
LIES = {
    "diverged flipped": lambda r: r.update(diverged=True),
    "stopped early without early stopping": lambda r: r.update(stopped_early=True),
    "history one epoch short": lambda r: r["history"]["train"]["loss"].pop(),
    "history value a flag": lambda r: r["history"]["validation"]["accuracy"].__setitem__(0, True),
    "history value a string": lambda r: r["history"]["validation"]["loss"].__setitem__(0, "0.5"),
    "history nested dict": lambda r: r["history"].update(train={"loss": {"1": 0.5}}),
    "history metric dropped": lambda r: [h.pop("accuracy") for h in r["history"].values()],
    "final not the kept epoch": lambda r: r["final"]["validation"].update(accuracy=0.99),
    "best epoch elsewhere": lambda r: r.update(best_epoch=1),
    "epochs_run beyond the spec": lambda r: r.update(epochs_run=3),
    "test metric missing": lambda r: r["test"].pop("accuracy"),
    "test without evaluate_test": lambda r: r["spec"].update(evaluate_test=False),
    "predictions not asked for": lambda r: r.update(predictions=[0.5] * 10_000),
    "sizes of other data": lambda r: r["sizes"].update(train=900),
    "a probe not asked for": lambda r: r["probes"].update(signal={}),
    "a probe column of text": lambda r: r["probes"]["weight_norm"].update(value="1.0"),
    "probe columns of unequal length": lambda r: r["probes"]["weight_norm"]["value"].pop(),
    "unknown field": lambda r: r.update(served_by="someone"),
    "missing field": lambda r: r.pop("final"),
    "spec of another run": lambda r: r["spec"].update(learning_rate=0.2),
    "spec with a bad field": lambda r: r["spec"].update(epochs=-1),
    "another record's key": lambda r: r.update(key="0" * 64),
    "kind memo": lambda r: r.update(kind="memo"),
    "format 0": lambda r: r.update(format=0),
    "platform value an object": lambda r: r["platform"].update(cpu={"name": "x"}),
    "epoch_seconds one short": lambda r: r["epoch_seconds"].pop(),
}


@pytest.fixture
def stored(trained, store_dir):
    """A genuine record in a fresh store: ``(store, key, record, text)``."""
    run, record = trained
    store = open_store()
    saved = store.save(record)
    return store, run.key, saved, store.path(run.key).read_text()


def assert_treated_as_absent(store: Store, key: str, figures, good: dict) -> None:
    """Refused, reported by scan, computed again (once) and then served again."""
    with figures.no_crash():
        with pytest.raises(BadRecord):
            store.load(key)
        [(scanned, record, problem)] = [row for row in store.scan() if row[0] == key]
        assert record is None and problem and key in problem
        assert store.usable(key) is None
        calls = []
        record, cached = store.get_or_compute(key, lambda: calls.append(1) or good)
    assert not cached and calls == [1]
    assert store.load(key)["history"] == good["history"]
    figures.add(inputs=1, served=int(cached))


@pytest.mark.parametrize("damage", list(BYTES))
def test_bytes_that_are_not_a_record(stored, damage, figures):
    store, key, record, text = stored
    store.path(key).write_bytes(BYTES[damage](text))
    assert_treated_as_absent(store, key, figures, record)


@pytest.mark.parametrize("field", list(WRONG_TYPES))
def test_every_field_of_the_wrong_type(stored, field, figures):
    assert set(WRONG_TYPES) == set(RECORD_FIELDS) - {"key", "format", "kind", "checksum"}
    store, key, record, text = stored
    store.path(key).write_text(reseal({**record, field: WRONG_TYPES[field]}))
    assert_treated_as_absent(store, key, figures, record)


@pytest.mark.parametrize("lie", list(LIES))
def test_a_resealed_record_that_lies_about_itself(stored, lie, figures):
    store, key, record, text = stored
    edited = json.loads(text)
    LIES[lie](edited)
    store.path(key).write_text(reseal(edited))
    assert_treated_as_absent(store, key, figures, record)


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "oversized", "unreadable"])
def test_files_that_are_not_record_files(stored, kind, figures, monkeypatch):
    store, key, record, text = stored
    path = store.path(key)
    path.unlink()
    if kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("kept")
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block for ever
    elif kind == "device":
        path.symlink_to("/dev/zero")  # reading it would never end
    elif kind == "oversized":
        with open(path, "wb") as file:
            file.truncate(100 * 2**20)  # sparse: takes no disk
    else:
        path.write_text(text)
        real = type(path).read_bytes
        monkeypatch.setattr(type(path), "read_bytes", lambda self: (_ for _ in ()).throw(
            OSError(errno.EIO, "Input/output error")) if self == path else real(self))
        with pytest.raises(BadRecord, match="Input/output error"):
            store.load(key)
        figures.add(inputs=1)
        return
    assert_treated_as_absent(store, key, figures, record)
    if kind == "directory":  # moved out of the way, not deleted
        assert (path.parent / f"{path.name}.not-a-record" / "inside.txt").read_text() == "kept"


def test_a_dangling_link_is_an_absent_record(stored):
    store, key, record, text = stored
    path = store.path(key)
    path.unlink()
    path.symlink_to(path.parent / "nowhere.json")
    assert store.load(key) is None
    assert store.save(record)["key"] == key and store.load(key) == record


def test_memo_records_too(store_dir, figures):
    calls = []

    def compute():
        calls.append(1)
        return {"value": [1.5, None, "x"]}

    assert memo("demo", {"n": 1}, compute) == {"value": [1.5, None, "x"]}
    store = open_store()
    [key] = store.keys("memo")
    path = store.path(key, "memo")
    genuine = json.loads(path.read_text())
    damages = [b"\xff\xfe{", path.read_bytes()[:40], reseal({**genuine, "seconds": "fast"}).encode(),
               reseal({**genuine, "params": {"n": 2}}).encode(), reseal({**genuine, "version": True}).encode(),
               reseal({**genuine, "extra": 1}).encode(), reseal({k: v for k, v in genuine.items() if k != "value"}).encode()]
    for damage in damages:
        path.write_bytes(damage)
        with figures.no_crash():
            assert [problem for _, _, problem in store.scan("memo")][0]
            assert memo("demo", {"n": 1}, compute) == {"value": [1.5, None, "x"]}
    assert len(calls) == 1 + len(damages)  # computed again each time, never served damaged
    figures.add(inputs=len(damages))


def test_a_newer_record_is_neither_served_nor_overwritten(stored, figures):
    store, key, record, text = stored
    newer = json.loads(text)
    newer["format"] = FORMAT + 1
    store.path(key).write_text(reseal(newer))
    before = store.path(key).read_bytes()
    with pytest.raises(NewerFormat, match="upgrade labkit"):
        store.load(key)
    with pytest.raises(NewerFormat):
        store.get_or_compute(key, lambda: pytest.fail("computed over a newer record"))
    with pytest.raises(NewerFormat):
        store.save(record)
    assert store.path(key).read_bytes() == before
    assert "newer labkit" in next(problem for k, _, problem in store.scan() if k == key)
    figures.add(faults=1)


@pytest.mark.parametrize("wrong", [
    [1, 2], "record", {"history": "nonsense"}, {"value": float("nan")},
])
def test_a_wrong_record_is_never_written(trained, store_dir, wrong):
    run, record = trained
    store = open_store()
    candidate = {**record, **wrong} if isinstance(wrong, dict) else wrong
    with pytest.raises(BadRecord):
        store.save(candidate if not isinstance(candidate, dict) else {**candidate, "key": run.key})
    assert not store.path(run.key).exists()


def test_numpy_values_are_refused_not_crashing(trained, store_dir):
    run, record = trained
    with pytest.raises(BadRecord, match="not plain JSON"):
        open_store().save({**record, "seconds": np.float32(1.5)})


@pytest.mark.parametrize("key", ["../../etc/passwd", "ABC", "g" * 64, "a" * 63, "a" * 64 + "\n", "a" * 64 + "/", 64])
def test_keys_are_checked_before_they_become_paths(key, tmp_path):
    with pytest.raises(ValueError, match="invalid key"):
        Store(tmp_path).path(key)
    with pytest.raises(ValueError):
        check_key(key)


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_write_that_fails_leaves_nothing_partial(stored, failure, monkeypatch, figures):
    store, key, record, text = stored
    before = {p: p.read_bytes() for p in store.root.rglob("*.json")}

    def fail(fd):
        raise OSError(failure, os.strerror(failure))

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fail)
        with pytest.raises(StoreError, match=os.strerror(failure)) as error:
            memo("written when the disk fails", {"n": failure}, lambda: 1.0)
    assert "LABKIT_RUNS_DIR" in str(error.value) and "nothing partial" in str(error.value)
    assert {p: p.read_bytes() for p in store.root.rglob("*.json")} == before
    assert not list(store.root.rglob("*.tmp"))
    assert memo("written when the disk fails", {"n": failure}, lambda: 1.0) == 1.0
    assert len(store.keys("memo")) == 1  # written, now that the disk works
    figures.add(faults=1)


def test_memo_params_are_recorded_as_their_key_reads_them(store_dir):
    """The key is made of the params as JSON reads them back: so is the record, which then
    verifies (a None key was recorded as 'None' and the record refused by its own check)."""
    calls = []
    for params in ({None: 1}, {"n": (1, 2)}, {"n": [1, 2]}, {1: "a"}):
        assert memo("params", params, lambda: calls.append(1) or len(calls)) >= 1
    assert calls == [1, 1, 1]  # {"n": (1, 2)} and {"n": [1, 2]} are one key
    assert memo("params", {None: 1}, lambda: pytest.fail("computed again")) == 1
    store = open_store()
    assert sorted(json.dumps(store.load(key, "memo")["params"]) for key in store.keys("memo")) == \
        ['{"1": "a"}', '{"n": [1, 2]}', '{"null": 1}']


@pytest.mark.parametrize("params, shown", [({"n": np.int64(3)}, "int64"),
                                           ({"x": float("nan")}, "nan"), ({1: 1, "a": 2}, "'a'")])
def test_memo_params_that_are_not_plain_json_are_named_with_the_fix(store_dir, params, shown):
    with pytest.raises(ValueError) as error:
        memo("params", params, lambda: pytest.fail("computed"))
    assert "memo params" in str(error.value) and shown in str(error.value) and "int(n)" in str(error.value)
    assert open_store().keys("memo") == []


def test_a_store_that_cannot_be_written_has_no_lock(tmp_path):
    """One error, raised by lock() itself, for every caller (train, memo, sweep)."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="read-only store .*a-file.*LABKIT_RUNS_DIR") as error:
        Store(tmp_path / "a-file").lock("a" * 64)
    assert type(error.value) is StoreError


def test_a_damaged_record_is_reported_once_with_what_happens_to_it(stored, monkeypatch):
    store, key, record, text = stored
    told = []
    monkeypatch.setattr(settings, "tell", told.append)
    store.path(key).write_text(text.replace('"epochs_run": 2', '"epochs_run": 1'))
    with pytest.raises(MissingResult):
        store.get_or_compute(key, lambda: pytest.fail("computed"), allow_compute=False)
    assert len(told) == 1 and key in told[0] and told[0].endswith(NOT_COMPUTED)
    assert "computing it again" not in told[0]
    told.clear()
    assert store.get_or_compute(key, lambda: record) == (record, False)
    assert len(told) == 1 and key in told[0] and told[0].endswith("checksum mismatch (the record was edited or "
                                                                  "damaged); computing it again")
