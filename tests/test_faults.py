"""Fault injection: killed workers and drivers, Ctrl-C, a kernel restart, a full or read-only
disk, two processes on one store.  Each test injects a fault and proves the outcome: no
finished run lost, nothing damaged served, no run trained twice, no process left behind."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from labkit import sweep, train
from labkit.runs import open_store
from labkit.store import StoreError
from labkit.sweep import SweepError

#: How long the test gives a process to go: the worker watchdog polls every 0.5 s.
GRACE = 10.0


def workers_of(process: psutil.Process) -> list[psutil.Process]:
    """The sweep workers a process started (its children but loky's resource tracker)."""
    return [child for child in process.children()
            if "resource_tracker" not in " ".join(child.cmdline())]


def kill_when_training(train_log, key: str, times: int, stop: threading.Event, figures) -> None:
    """SIGKILL this process's workers as soon as one has started training ``key``."""
    killed = 0
    while killed < times and not stop.is_set():
        if train_log().count(key) > killed:
            for worker in workers_of(psutil.Process()):
                worker.kill()
            killed += 1
            figures.add(faults=1)
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("kills", [1, 2])
def test_a_killed_worker_is_retried_once_then_reported(tiny, store_dir, train_log, monkeypatch, kills, figures):
    monkeypatch.setenv("LABKIT_WORKERS", "1")

    def experiment(lr):  # the victim trains long enough to be caught at it
        return tiny(lr, epochs=100 if lr == 0.01 else 1)

    victim, others = experiment(0.01).key, {experiment(lr).key for lr in (0.02, 0.03)}
    stop = threading.Event()
    killer = threading.Thread(target=kill_when_training, args=(train_log, victim, kills, stop, figures))
    killer.start()
    try:
        if kills == 2:
            with pytest.raises(SweepError) as error:
                sweep(experiment, {"lr": [0.01, 0.02, 0.03]})
            assert victim[:12] in str(error.value) and "died twice" in str(error.value)
            assert "1 of 3 runs" in str(error.value)
        else:
            assert len(sweep(experiment, {"lr": [0.01, 0.02, 0.03]})) == 3
    finally:
        stop.set()
        killer.join()
    stored = set(open_store().keys())
    assert others <= stored and (victim in stored) == (kills == 1)
    assert all(train_log().count(key) == 1 for key in others)  # the innocent runs trained once
    assert train_log().count(victim) == 2
    figures.add(lost=len(others - stored))


def start_driver(processes, sweep_script, folder: Path, lrs, epochs=1, **settings):
    """A sweep in a process of its own (in a session of its own, as in a terminal)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = processes.env(LABKIT_WORKERS="1", LABKIT_RUNS_DIR=str(folder / "runs"),
                        LABKIT_TRAIN_LOG=str(folder / "trained.log"), **settings)
    (folder / "trained.log").touch()
    driver = subprocess.Popen([sys.executable, "-c", sweep_script(lrs, epochs=epochs)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return driver, env["LABKIT_TEST_TAG"], folder


def wait_for(condition, timeout=240.0, every=0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def trained(folder: Path) -> list[str]:
    return (folder / "trained.log").read_text().split()


def stored(folder: Path) -> list[str]:
    return open_store_at(folder).keys()


def open_store_at(folder: Path):
    store = open_store()
    return type(store)(folder / "runs" / "full", store.validators)


def assert_no_orphans(processes, tag: str, figures, since: float | None = None) -> float:
    """No process of ``tag`` left within the grace period; its life after ``since`` recorded."""
    seconds = processes.gone_after(tag, since=since, timeout=GRACE)
    figures.add(faults=1, orphans=int(seconds == float("inf")),
                orphan_seconds=seconds if seconds < float("inf") else GRACE)
    assert seconds < float("inf"), f"processes outlived their driver: {processes.alive(tag)}"
    return seconds


@pytest.mark.slow
def test_workers_never_outlive_a_killed_driver_and_a_restart_trains_only_the_missing(
        tiny, tmp_path, processes, sweep_script, monkeypatch, train_log, figures):
    """SIGKILL and SIGTERM (nothing in the driver runs after either); then the killed sweep is
    run again: the runs finished before the kill are kept, only the others train."""
    lrs = [0.01, 0.02, 0.03, 0.04, 0.05]
    drivers = {}
    for how in ("SIGKILL", "SIGTERM"):  # one after the other: a driver left waiting could finish its sweep
        driver, tag, folder = drivers[how] = start_driver(processes, sweep_script, tmp_path / how, lrs)
        wait_for(lambda: len(stored(folder)) >= 1 and len(trained(folder)) > len(stored(folder)))
        killed = time.monotonic()
        driver.send_signal(getattr(signal, how))  # the driver only: its workers must notice
        driver.wait(timeout=30)
        assert_no_orphans(processes, tag, figures, since=killed)
        assert all(problem is None for _, _, problem in open_store_at(folder).scan())  # nothing partial
    folder = drivers["SIGKILL"][2]
    finished = set(stored(folder))
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(folder / "runs"))
    result = sweep(tiny, {"lr": lrs})
    every = {item.result.key for item in result}
    assert sorted(train_log()) == sorted(every - finished)  # each missing run once, nothing else
    assert {item.result.key for item in result if item.result.cached} == finished
    figures.add(lost=len(finished - set(stored(folder))))


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_the_sweep_at_once_and_keeps_finished_runs(tmp_path, processes, sweep_script, presses,
                                                               figures):
    driver, tag, folder = start_driver(processes, sweep_script, tmp_path, [0.01, 0.02, 0.03, 0.04], epochs=3)
    wait_for(lambda: len(stored(folder)) >= 1 and len(trained(folder)) > len(stored(folder)))
    kept = set(stored(folder))
    for _ in range(presses):
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal sends: the driver and its workers
        time.sleep(0.05)
    pressed = time.monotonic()
    out, err = driver.communicate(timeout=30)
    stopped = time.monotonic() - pressed
    assert "KeyboardInterrupt" in err and "RESULT" not in out
    assert stopped < 5, f"the sweep took {stopped:.1f} s to stop"
    assert_no_orphans(processes, tag, figures, since=pressed)
    assert kept <= set(stored(folder)) and all(p is None for _, _, p in open_store_at(folder).scan())
    figures.add(lost=len(kept - set(stored(folder))))


def running_for(workers: list[psutil.Process], since: float) -> float:
    """Seconds from ``since`` until none of ``workers`` runs (zombies have ended), ``inf`` past GRACE."""
    def running(process):
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    while any(running(worker) for worker in workers):
        if time.monotonic() - since > GRACE:
            return float("inf")
        time.sleep(0.05)
    return time.monotonic() - since


#: A chapter's cell: a sweep long enough to be caught training.
CELL = """
import labkit, keras
from labkit import Run, sweep

def make(lr):
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy")
    return Run(model, data="mnist", train_size=300, epochs=30, batch_size=64)

sweep(make, {"lr": [0.01, 0.02]}, seeds=[SEED])
"""


@pytest.mark.slow
def test_no_worker_survives_its_kernel(tmp_path, processes, figures):
    """A sweep in a Jupyter kernel (as Quarto runs a chapter): the kernel is restarted, then
    killed on its own (as the out-of-memory killer would); its workers go with it."""
    from jupyter_client import KernelManager

    env = processes.env(LABKIT_WORKERS="1", LABKIT_RUNS_DIR=str(tmp_path / "runs"),
                        LABKIT_TRAIN_LOG=str(tmp_path / "trained.log"))
    (tmp_path / "trained.log").touch()
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env)
    try:
        for seed, ending in enumerate(("restart", "kill")):
            client = manager.client()
            client.start_channels()
            client.wait_for_ready(timeout=120)
            seen = len(trained(tmp_path))
            client.execute(CELL.replace("SEED", str(seed)))
            wait_for(lambda: len(trained(tmp_path)) > seen)
            workers = workers_of(psutil.Process(manager.provisioner.pid))
            assert workers
            ended = time.monotonic()
            if ending == "restart":
                manager.restart_kernel(now=True)
            else:
                psutil.Process(manager.provisioner.pid).kill()  # the kernel alone, not its process group
            seconds = running_for(workers, since=ended)
            figures.add(faults=1, orphans=int(seconds == float("inf")), orphan_seconds=min(seconds, GRACE))
            assert seconds < float("inf"), f"workers outlived their kernel ({ending})"
            client.stop_channels()
    finally:
        manager.shutdown_kernel(now=True)
    assert processes.gone_after(env["LABKIT_TEST_TAG"], timeout=GRACE) < float("inf")  # loky's helpers too


@pytest.mark.slow
def test_two_processes_running_one_sweep_train_each_run_once(tmp_path, processes, sweep_script, figures):
    lrs = [0.01, 0.02, 0.03]
    drivers = [start_driver(processes, sweep_script, tmp_path, lrs) for _ in range(2)]
    outputs = [driver.communicate(timeout=300) for driver, _, _ in drivers]
    assert all(driver.returncode == 0 for driver, _, _ in drivers), outputs[0][1][-2000:]
    assert outputs[0][0] == outputs[1][0]  # both read the same records
    assert len(trained(tmp_path)) == 3 and len(set(trained(tmp_path))) == 3
    figures.add(faults=1, lost=3 - len(stored(tmp_path)))


@pytest.mark.slow
def test_a_full_disk_stops_a_sweep_cleanly(tiny, store_dir, train_log, monkeypatch, figures):
    first = sweep(tiny, {"lr": [0.07]}).items[0].result
    before = {p: p.read_bytes() for p in store_dir.rglob("*.json")}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(StoreError, match="No space left on device.*nothing partial"):
            sweep(tiny, {"lr": [0.07, 0.08, 0.09]})
    assert {p: p.read_bytes() for p in store_dir.rglob("*.json")} == before
    assert not list(store_dir.rglob("*.tmp"))
    assert train(tiny(0.07)).cached and train(tiny(0.07)).history.equals(first.history)
    figures.add(faults=1, lost=int(not train(tiny(0.07)).cached))


def read_only(paths: list[Path], on: bool) -> None:
    """Make files and folders unwritable, even for root (who ignores permissions): chattr +i."""
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(path.stat().st_mode & ~0o222 if on else path.stat().st_mode | 0o200)
        return
    if not shutil.which("chattr"):
        pytest.skip("running as root without chattr: a read-only store cannot be made")
    subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], check=True)


def test_a_read_only_store_serves_what_it_has_and_explains_the_rest(tiny, store_dir, train_log, figures):
    run = tiny(0.11)
    first = train(run)
    store = open_store()
    paths = sorted(store_dir.rglob("*"), reverse=True) + [store_dir]
    read_only(paths, True)
    try:
        assert os.access(store.root, os.W_OK) is False
        served = train(run)
        assert served.cached and served.history.equals(first.history)
        with pytest.raises(StoreError, match="read-only store.*LABKIT_RUNS_DIR"):
            train(tiny(0.12))
        with pytest.raises(StoreError, match="read-only store.*LABKIT_RUNS_DIR"):
            sweep(tiny, {"lr": [0.11, 0.12]})
    finally:
        read_only(paths, False)
    assert train_log() == [run.key]
    figures.add(faults=1)
