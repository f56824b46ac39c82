"""The store's summary index: ``labkit runs stats`` parses only what the index cannot vouch for.

Every test compares ``stats()`` with the plain answer (every record loaded and
validated), on synthetic records: no training.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.cli import main, stats
from labkit.runs import open_store, validate_record
from labkit.store import SUMMARY, Store, StoreError, digest

EPOCHS = 3


def record(i: int, diverged: bool = False) -> dict:
    """A small record that ``validate_record`` accepts; its key is made up (no ``Run``)."""
    history = {"train": {"loss": [1.0 / (e + 1) for e in range(EPOCHS)]},
               "validation": {"loss": [1.5 / (e + 1) for e in range(EPOCHS)]}}
    return {"key": digest({"synthetic": i}), "spec": {"epochs": EPOCHS, "seed": i}, "history": history,
            "epochs_run": EPOCHS, "diverged": diverged, "stopped_early": False,
            "final": {"validation": {"loss": 0.5}}, "seconds": 1.25 + i, "versions": {}, "platform": {}}


def full_parse(store) -> dict:
    """The reference: ``stats`` as it was before the index, loading every record."""
    count = damaged = diverged = 0
    seconds, size = 0.0, 0
    for key in store.keys():
        size += store.path(key).stat().st_size
        try:
            loaded = store.load(key)
        except StoreError:
            damaged += 1
            continue
        count += 1
        diverged += bool(loaded["diverged"])
        seconds += float(loaded["seconds"])
    return {"root": str(store.root), "runs": count, "damaged": damaged, "diverged": diverged,
            "training_seconds": round(seconds, 1), "bytes": size, "memo": len(store.keys("memo"))}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store", validate=validate_record)
    for i in range(12):
        store.save(record(i, diverged=i % 5 == 0))
    return store


@pytest.fixture
def parses(monkeypatch):
    """A call counter: how many record texts the store parsed (every ``load`` goes through it)."""
    calls = []
    real = Store._parse

    def counting(self, text, key, path):
        calls.append(key)
        return real(self, text, key, path)

    monkeypatch.setattr(Store, "_parse", counting)
    return calls


def summary(store) -> str:
    return (store.root / "runs" / SUMMARY).read_text()


def test_saved_records_are_counted_without_parsing_any(store, parses):
    expected = full_parse(store)
    parses.clear()
    assert stats(store) == expected
    assert parses == []
    assert expected["runs"] == 12 and expected["diverged"] == 3


def test_second_stats_parses_nothing_after_a_git_clone(store, parses):
    (store.root / "runs" / SUMMARY).unlink()  # a clone holds the records, never the index
    expected = full_parse(store)
    parses.clear()
    assert stats(store) == expected
    assert len(parses) == 12  # the first call parses every record and writes the index
    parses.clear()
    assert stats(store) == expected
    assert parses == []


def test_edited_record_is_counted_damaged(store, parses):
    path = store.path(store.keys()[3])
    path.write_text(path.read_text().replace('"diverged": false', '"diverged": true'))
    expected = full_parse(store)
    assert expected["damaged"] == 1
    assert stats(store) == expected
    parses.clear()
    assert stats(store) == expected
    assert len(parses) == 1  # a damaged record is never indexed: it is checked each time


def test_replaced_file_with_the_same_size_and_mtime_is_not_trusted(store):
    """Only the inode tells this one apart: a same-size edit written atomically within one tick."""
    path = store.path(record(0)["key"])
    before = path.stat()
    text = path.read_text()
    edited = text.replace('"seconds": 1.25', '"seconds": 9.25')
    assert edited != text and len(edited) == len(text)
    other = path.with_suffix(".edit")
    other.write_text(edited)
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert stats(store) == full_parse(store)
    assert stats(store)["damaged"] == 1


def test_truncated_record_is_counted_damaged(store):
    path = store.path(store.keys()[5])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert stats(store) == full_parse(store)
    assert stats(store)["damaged"] == 1


def test_removed_record_is_no_longer_counted(store, parses):
    key = store.keys()[7]
    assert store.remove(key)
    expected = full_parse(store)
    parses.clear()
    assert stats(store) == expected
    assert expected["runs"] == 11 and parses == []
    assert key not in summary(store)  # the stale line was dropped when the index was rewritten


def test_record_saved_again_uses_its_new_line(store, parses):
    again = {**record(2), "seconds": 100.0}
    store.save(again)
    expected = full_parse(store)
    parses.clear()
    assert stats(store) == expected
    assert parses == []


def test_garbage_lines_are_ignored_and_dropped(store, parses):
    key = store.keys()[4]
    line = json.loads(summary(store).splitlines()[0])
    with open(store.root / "runs" / SUMMARY, "ab") as f:
        f.write(b"not json\n{}\n\xff\xfe binary\n[1, 2]\n")
        f.write(json.dumps({**line, "key": "../../etc/passwd"}).encode() + b"\n")
        f.write(json.dumps({**line, "fields": {"diverged": "yes", "seconds": 1}}).encode() + b"\n")
        f.write(json.dumps({**line, "key": key, "fields": {"diverged": True}}).encode() + b"\n")
        f.write(b'{"key": "' + key.encode() + b'", "size": 12')  # a line cut short, no newline
    expected = full_parse(store)
    parses.clear()
    assert stats(store) == expected
    assert parses == []  # every record still has a good line
    assert len(summary(store).splitlines()) == 12  # compacted: the garbage is gone
    assert stats(store) == expected


def test_record_failing_validation_gets_no_line(store, parses):
    bad = record(50)
    bad["history"]["train"]["loss"].pop()  # sealed, so the checksum holds, but the history is short
    store.save(bad)
    assert bad["key"] not in summary(store)
    expected = full_parse(store)
    assert expected["damaged"] == 1
    assert stats(store) == expected


def test_unwritable_summary_never_fails_a_save(tmp_path, parses):
    store = Store(tmp_path / "store", validate=validate_record)
    (store.root / "runs" / SUMMARY).mkdir(parents=True)  # neither appendable nor replaceable
    for i in range(4):
        store.save(record(i))
    assert store.load(record(0)["key"])["seconds"] == 1.25
    parses.clear()
    assert stats(store) == full_parse(store)
    assert stats(store)["runs"] == 4 and len(parses) > 0  # no index: parsed, still right
    assert not list((store.root / "runs").glob("*.tmp"))


SAVER = """
import json, sys
from labkit.store import Store
store = Store(sys.argv[1])
for record in json.load(open(sys.argv[2])):
    store.save(record)
"""


def test_parallel_savers_leave_one_whole_line_each(tmp_path, parses):
    """Four processes save at once (O_APPEND): every line whole, none lost, nothing parsed."""
    root = tmp_path / "store"
    workers = []
    for w in range(4):
        batch = tmp_path / f"batch{w}.json"
        batch.write_text(json.dumps([record(i, diverged=i % 7 == 0) for i in range(50 * w, 50 * w + 50)]))
        workers.append(subprocess.Popen([sys.executable, "-c", SAVER, str(root), str(batch)]))
    assert [worker.wait() for worker in workers] == [0] * 4
    store = Store(root, validate=validate_record)
    lines = summary(store).splitlines()
    assert len(lines) == 200 and len({json.loads(line)["key"] for line in lines}) == 200
    expected = full_parse(store)
    parses.clear()
    assert stats(store) == expected
    assert expected["runs"] == 200 and parses == []


def test_cli_rm_and_stats_agree(store_dir, capsys, parses):
    store = open_store()
    keys = [record(i)["key"] for i in range(3)]
    for i in range(3):
        store.save(record(i))
    assert main(["runs", "rm", keys[1][:10]]) == 0
    capsys.readouterr()
    parses.clear()
    assert main(["runs", "stats"]) == 0
    out = capsys.readouterr().out
    assert "runs: 2" in out and "damaged: 0" in out and parses == []


def test_summary_files_stay_out_of_git():
    root = Path(__file__).resolve().parents[1] / "data" / "runs" / "full"  # the committed store
    try:
        done = subprocess.run(["git", "check-ignore", str(root / "runs" / SUMMARY),
                               str(root / "memo" / SUMMARY)], cwd=root, capture_output=True, text=True)
    except OSError:
        pytest.skip("git not available")
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert len(done.stdout.splitlines()) == 2, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["quick", "full"])
def test_cli_store_is_open_store(name):
    """The CLI builds the store itself (to import labkit.runs lazily): same folder, same checks."""
    from argparse import Namespace

    from labkit.cli import _store

    store = _store(Namespace(profile=name))
    assert store.root == open_store(name).root
    bad = record(0)
    bad["epochs_run"] = EPOCHS + 1
    with pytest.raises(StoreError, match="epochs_run"):
        store._validate(bad)


def test_cli_stats_does_not_import_pandas(store_dir):
    store = open_store()
    for i in range(3):
        store.save(record(i))
    code = ("import sys; from labkit.cli import main; main(['runs', 'stats']); "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "runs: 3" in out and out.split()[-1] == "False"
