"""Fault injection: kills, damaged or foreign records, concurrency, read-only and full disks.

Each test injects one fault and proves the outcome: no finished result lost, no
partial or damaged record served, no run trained twice, and a clear message.
"""

import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from labkit import Run, sweep, train
from labkit import sweeps
from labkit.models import mlp
from labkit.runs import open_store
from labkit.store import FORMAT, BadRecord, NewerFormat, ReadOnlyStore, Store, StoreError, check_key

BASE = dict(data="mnist", train_size=300, epochs=2, batch_size=64, optimizer="sgd")
FAULTS = {"injected": 0, "lost": 0, "served_damaged": 0, "trained_twice": 0}


def make(lr):
    return Run(model=mlp(hidden=(16,)), learning_rate=lr, **BASE)


def _kill_worker_when_training(log_path: Path, key: str, times: int, stop: threading.Event):
    """SIGKILL the worker process as soon as it has started training ``key`` (``times`` times)."""
    killed = 0
    while killed < times and not stop.is_set():
        lines = log_path.read_text().split()
        if lines.count(key) > killed and sweeps._POOL is not None:
            for process in list(sweeps._POOL._processes.values()):
                os.kill(process.pid, signal.SIGKILL)
            killed += 1
            FAULTS["injected"] += 1
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("kills, fails", [(1, False), (2, True)])
def test_worker_sigkill_retried_once_then_reported(store_dir, train_log, monkeypatch, kills, fails):
    monkeypatch.setenv("LABKIT_WORKERS", "1")
    sweeps.shutdown_workers()
    victim = make(0.01).key
    stop = threading.Event()
    killer = threading.Thread(target=_kill_worker_when_training,
                              args=(Path(os.environ["LABKIT_TRAIN_LOG"]), victim, kills, stop))
    killer.start()
    try:
        if fails:
            with pytest.raises(sweeps.SweepError) as error:
                sweep(make, {"lr": [0.01, 0.02, 0.03]}, seeds=1)
            assert victim[:12] in str(error.value) and "died twice" in str(error.value)
            assert "2 others are stored" in str(error.value)
        else:
            frame = sweep(make, {"lr": [0.01, 0.02, 0.03]}, seeds=1)
            assert frame.groupby("lr").ngroups == 3
    finally:
        stop.set()
        killer.join()
        sweeps.shutdown_workers()
    stored = set(open_store().keys())
    others = {make(lr).key for lr in (0.02, 0.03)}
    assert others <= stored  # every other run finished and was stored
    assert (victim in stored) != fails
    for key in others:  # the innocent runs trained once each
        assert train_log().count(key) == 1
    FAULTS["lost"] += len(others - stored)


def test_read_only_store_serves_hits_and_explains_misses(store_dir):
    run = make(0.1)
    first = train(run)
    root = open_store().root
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root): simulated below")
        assert train(run).history.equals(first.history)
        with pytest.raises(ReadOnlyStore, match="LABKIT_RUNS_DIR"):
            train(make(0.2))
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_read_only_store_simulated(store_dir, monkeypatch):
    """As root, permissions do not bite: simulate a store whose writes fail with EROFS."""
    run = make(0.1)
    first = train(run)
    store = open_store()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Store, "_lock", lambda self, key: None)
    assert train(run, store=store).history.equals(first.history)
    with pytest.raises(ReadOnlyStore, match="LABKIT_RUNS_DIR"):
        train(make(0.2), store=store)
    FAULTS["injected"] += 1


def test_disk_full_leaves_no_partial_record(store_dir, monkeypatch):
    first = train(make(0.1))
    store = open_store()
    before = {p.name: p.read_bytes() for p in store.root.rglob("*.json")}
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StoreError, match="No space left"):
        train(make(0.2))
    monkeypatch.setattr(os, "fsync", real_fsync)
    after = {p.name: p.read_bytes() for p in store.root.rglob("*.json")}
    assert after == before  # nothing partial, earlier records intact
    assert not list(store.root.rglob("*.tmp"))
    assert train(make(0.1)).cached and train(make(0.1)).history.equals(first.history)
    FAULTS["injected"] += 1


def test_newer_format_neither_served_nor_overwritten(store_dir):
    run = make(0.1)
    train(run)
    path = open_store().path(run.key)
    record = json.loads(path.read_text())
    record["format"] = FORMAT + 1
    path.write_text(json.dumps(record))
    with pytest.raises(NewerFormat, match="upgrade labkit"):
        train(run)
    assert json.loads(path.read_text())["format"] == FORMAT + 1
    FAULTS["injected"] += 1


def test_damaged_records_in_a_sweep_are_retrained_never_served(store_dir, train_log):
    frame = sweep(make, {"lr": [0.05, 0.1]}, seeds=1)
    store = open_store()
    victims = store.keys()
    store.path(victims[0]).write_text(store.path(victims[0]).read_text()[:100])
    record = json.loads(store.path(victims[1]).read_text())
    record["history"]["validation"]["accuracy"][0] = 0.99  # a wrong value inside valid JSON
    store.path(victims[1]).write_text(json.dumps(record))
    again = sweep(make, {"lr": [0.05, 0.1]}, seeds=1)
    FAULTS["served_damaged"] += int((again["value"] == 0.99).any())
    assert again.equals(frame)
    assert sorted(train_log()[2:]) == sorted(victims)
    FAULTS["injected"] += 2


@pytest.mark.slow
def test_two_processes_same_sweep_train_each_run_once(store_dir, train_log, tmp_path):
    script = tmp_path / "same_sweep.py"
    script.write_text(textwrap.dedent("""
        from labkit import Run, sweep
        from labkit.models import mlp
        if __name__ == "__main__":
            base = dict(data="mnist", train_size=300, epochs=2, batch_size=64, optimizer="sgd")
            frame = sweep(lambda lr: Run(model=mlp(hidden=(16,)), learning_rate=lr, **base),
                          {"lr": [0.01, 0.02, 0.03]}, seeds=1)
            print(frame["value"].sum())
    """))
    env = {**os.environ, "LABKIT_WORKERS": "1"}
    processes = [subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].strip() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert outputs[0] == outputs[1]  # both read the same records
    trained = train_log()
    assert sorted(trained) == sorted(set(trained)) and len(trained) == 3
    FAULTS["trained_twice"] += len(trained) - len(set(trained))
    FAULTS["injected"] += 1


def test_a_non_finite_number_edited_into_a_record_is_refused(tmp_path):
    """labkit writes non-finite values as null and checksums that; a NaN typed into the file
    must not pass for the null it replaced (the checksum skips re-normalising on read)."""
    store = Store(tmp_path)
    key = "c" * 64
    store.save({"key": key, "kind": "memo", "value": [1.0, float("nan")]}, kind="memo")
    assert store.load(key, kind="memo")["value"] == [1.0, None]
    path = store.path(key, kind="memo")
    path.write_text(path.read_text().replace("null", "NaN", 1))
    with pytest.raises(BadRecord, match="non-finite number NaN"):
        store.load(key, kind="memo")


@pytest.mark.parametrize("key", ["../../etc/passwd", "ABC", "g" * 64, "a" * 63, "a" * 64 + "/"])
def test_keys_are_validated_before_becoming_paths(key, tmp_path):
    with pytest.raises(ValueError, match="invalid run key"):
        Store(tmp_path).path(key)


def test_no_pickle_or_eval_in_labkit():
    source = Path(__file__).resolve().parents[1] / "labkit"
    for path in source.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bimport pickle\b|\bpickle\.|\beval\(|\bexec\(", text), path
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, (path, call)


@pytest.mark.parametrize("damage", ["short_history", "missing_field", "epochs_mismatch", "foreign_key"])
def test_consistent_checksum_but_wrong_content_is_not_served(store_dir, train_log, damage):
    """A record re-sealed after an edit passes the checksum: the content checks still catch it."""
    from labkit.store import seal

    run = make(0.1)
    train(run)
    path = open_store().path(run.key)
    record = json.loads(path.read_text())
    if damage == "short_history":
        record["history"]["validation"]["accuracy"].pop()
    elif damage == "missing_field":
        del record["final"]
    elif damage == "epochs_mismatch":
        record["epochs_run"] = 1
    else:
        record["key"] = make(0.2).key
    path.write_text(json.dumps(seal(record)))
    served = train(run)
    FAULTS["served_damaged"] += int(served.cached)
    assert not served.cached and train_log().count(run.key) == 2
    FAULTS["injected"] += 1


def test_a_script_without_a_main_guard_is_told_how_to_fix_it(tmp_path, store_dir):
    """Workers import the script that started them: an unguarded sweep kills every worker at
    start.  The error must say so, not only that workers died."""
    script = tmp_path / "my_sweep.py"
    script.write_text(textwrap.dedent("""
        from labkit import Run, sweep
        from labkit.models import mlp

        run = Run(model=mlp(hidden=(4,)), data="mnist", train_size=100, epochs=1, batch_size=50,
                  optimizer="sgd", learning_rate=0.1)
        sweep(lambda lr: run.replace(learning_rate=lr), {"lr": [0.1]})
    """), encoding="utf-8")
    env = {**os.environ, "LABKIT_WORKERS": "1", "LABKIT_PROGRESS": "0"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "SweepError: 1 of 1 runs" in done.stderr
    hint = next(line for line in done.stderr.splitlines() if line.startswith("If no worker was killed"))
    assert str(script) in hint and 'under `if __name__ == "__main__":`' in hint
    FAULTS["injected"] += 1


def test_zz_fault_figures(capsys):
    """Prints the suite's figures (faults injected, records lost, damaged served, trained twice)."""
    with capsys.disabled():
        print(f"\nfault-injection figures: {FAULTS}")
    assert FAULTS["lost"] == 0 and FAULTS["served_damaged"] == 0 and FAULTS["trained_twice"] == 0
