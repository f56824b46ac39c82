"""labkit.sweep: grid × seeds in parallel workers, only missing runs trained, tidy output."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from labkit import Run, history_frame, sweep, sweep_results, probe_frame
from labkit.models import mlp
from labkit.runs import open_store
from labkit.store import MissingRun

BASE = dict(data="mnist", train_size=300, epochs=2, batch_size=64, optimizer="sgd", learning_rate=0.1)


def make(lr):
    return Run(model=mlp(hidden=(16,)), **{**BASE, "learning_rate": lr})


def test_sweep_tidy_frame_and_only_missing_trained(store_dir, train_log):
    frame = sweep(make, {"lr": [0.05, 0.2]}, seeds=2)
    assert len(set(train_log())) == 4 and len(train_log()) == 4
    assert frame.columns.tolist()[:4] == ["lr", "seed", "key", "diverged"]
    assert set(frame["split"]) == {"train", "validation"}
    assert frame.groupby(["lr", "seed"]).ngroups == 4 and frame["epoch"].max() == 2
    again = sweep(make, {"lr": [0.05, 0.2, 0.4]}, seeds=2)  # one new point
    assert len(train_log()) == 6
    assert again[again["lr"] != 0.4].reset_index(drop=True).equals(frame)

    # Idle workers are terminated at shutdown (no slow exit): every record is kept.
    from labkit import sweeps

    workers = list(sweeps._POOL._processes.values())
    sweeps.shutdown_workers()
    assert workers and all(process.exitcode == -signal.SIGTERM for process in workers)
    assert sweep(make, {"lr": [0.05, 0.2, 0.4]}, seeds=2).equals(again) and len(train_log()) == 6


def test_training_order_takes_one_seed_of_every_configuration_first():
    """Seeds of one configuration compile the same programs: spread them so that two
    workers never compile the same thing at once (the second loads it from the cache)."""
    from labkit.sweeps import _training_order

    plan = [make(lr).replace(seed=seed) for lr in (0.05, 0.2, 0.4) for seed in (0, 1)]
    plan.append(make(0.8))  # a configuration with a single seed
    order = _training_order(plan)
    assert sorted(run.key for run in order) == sorted(run.key for run in plan)
    assert [(run.learning_rate, run.seed) for run in order] == [
        (0.05, 0), (0.2, 0), (0.4, 0), (0.8, 0), (0.05, 1), (0.2, 1), (0.4, 1)]


def test_sweep_matches_in_process_training(store_dir):
    from labkit import train

    frame = sweep(make, {"lr": [0.1]}, seeds=[5])
    result = train(make(0.1).replace(seed=5))
    assert result.cached  # the worker stored exactly the run train() asks for
    assert frame["value"].tolist() == result.history["value"].tolist()


def test_require_cached_refuses_training(store_dir, monkeypatch):
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")
    with pytest.raises(MissingRun, match="2 of 2 runs"):
        sweep(make, {"lr": [0.05, 0.2]}, seeds=1)


def test_history_frame_of_items_is_the_sweep_frame(store_dir, train_log):
    items = sweep_results(make, {"lr": [0.05, 0.2]}, seeds=1)
    frame = sweep(make, {"lr": [0.05, 0.2]}, seeds=1)
    assert len(train_log()) == 2  # the second call trained nothing
    assert history_frame(items).equals(frame)
    with pytest.raises(ValueError, match="at least one"):
        history_frame([])


def test_probe_frame_has_grid_columns(store_dir):
    items = sweep_results(lambda lr: make(lr).replace(probes=("weight_norm",), probe_epochs=(0, 2)),
                          {"lr": [0.1]}, seeds=1)
    norms = probe_frame(items, "weight_norm")
    assert {"lr", "seed", "epoch", "layer", "value"} <= set(norms.columns) and len(norms) == 4


@pytest.mark.parametrize("grid, seeds, message", [
    ({}, 1, "grid"), ({"lr": []}, 1, "grid['lr'] is empty"), ({"lr": 0.1}, 1, "grid['lr']"),
    ({"lr": [0.1]}, 0, "seeds"), ({"lr": [0.1]}, [-1], "seeds"),
])
def test_bad_grid_or_seeds(grid, seeds, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sweep(make, grid, seeds=seeds)


@pytest.mark.slow
def test_driver_sigkill_then_restart_trains_only_missing(store_dir, train_log, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        from labkit import Run, sweep
        from labkit.models import mlp
        if __name__ == "__main__":
            base = dict(data="mnist", train_size=300, epochs=2, batch_size=64, optimizer="sgd")
            sweep(lambda lr: Run(model=mlp(hidden=(16,)), learning_rate=lr, **base),
                  {"lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}, seeds=1)
    """))
    env = {**os.environ, "LABKIT_WORKERS": "1"}
    driver = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    runs = store_dir / "full" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(runs.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its worker, mid-sweep
    driver.wait()
    finished = {p.stem for p in runs.glob("*.json")}
    assert 2 <= len(finished) < 6
    for path in runs.glob("*.json"):
        json.loads(path.read_text())  # no partial record
    before = len(train_log())
    grid = {"lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}
    frame = sweep(make, grid, seeds=1)
    retrained = train_log()[before:]
    every_key = {make(lr).key for lr in grid["lr"]}
    assert sorted(retrained) == sorted(every_key - finished)  # each missing run once, nothing else
    assert frame.groupby("lr").ngroups == 6 and set(open_store().keys()) == every_key


def test_any_executor_dask(store_dir, train_log):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        frame = sweep(make, {"lr": [0.05, 0.1]}, seeds=1, executor=client.get_executor())
    assert frame.groupby("lr").ngroups == 2 and len(train_log()) == 2


def test_progress_goes_to_the_terminal_not_the_notebook(tmp_path, monkeypatch, capsys):
    """In a kernel, fd 2 is forwarded to the notebook: progress uses the kernel's copy of the terminal."""
    from labkit import sweeps

    terminal = tmp_path / "terminal.txt"
    fd = os.open(terminal, os.O_WRONLY | os.O_CREAT)

    class KernelStderr:  # what ipykernel's OutStream exposes
        _original_stdstream_copy = fd

        def write(self, text):
            raise AssertionError("progress written into the notebook")

        def flush(self):
            pass

    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    monkeypatch.setattr(sys, "stderr", KernelStderr())
    progress = sweeps._Progress(total=3, cached=1, label="demo")
    progress.step()
    progress.stream.close()
    os.close(fd)
    assert "[labkit] demo: 2/3 runs (1 cached)" in terminal.read_text()


@pytest.fixture
def spawned_workers(monkeypatch):
    """Workers spawned, as on macOS and Windows (or when the fork server's settings differ)."""
    from labkit import sweeps

    sweeps.shutdown_workers()
    monkeypatch.setattr(sweeps, "_FORKSERVER_SETTINGS", {"XLA_FLAGS": "not the driver's"})
    yield
    sweeps.shutdown_workers()


def test_workers_started_ahead_are_the_ones_the_first_sweep_uses(store_dir, train_log, monkeypatch,
                                                                 spawned_workers):
    """``start_workers()`` at the top of a chapter: the sweep trains in those processes, even
    after the chapter changed a setting only the driver reads (the progress report).  They
    run at a lower priority than the driver: started ahead, they must not slow it."""
    from labkit import start_workers, sweeps

    start_workers()
    pool = sweeps._POOL
    started = {process.pid for process in pool._processes.values()}
    assert len(started) == sweeps._default_workers()
    monkeypatch.setenv("LABKIT_PROGRESS", "1")  # the tests' "0" changed, as a chapter changes it
    frame = sweep(make, {"lr": [0.05]}, seeds=1)
    assert sweeps._POOL is pool and len(train_log()) == 1
    pids = {open_store().load(key)["platform"]["pid"] for key in frame["key"].unique()}
    assert pids <= started
    start_workers()  # already running: nothing new
    assert sweeps._POOL is pool and {p.pid for p in pool._processes.values()} == started
    if hasattr(os, "nice"):
        assert pool.submit(os.nice, 0).result() == min(19, os.nice(0) + sweeps.WORKER_NICENESS)


def test_idle_workers_stop_on_their_own_and_a_sweep_meanwhile_keeps_them(store_dir, train_log,
                                                                         monkeypatch):
    """Quarto keeps a chapter's kernel alive 300 s after rendering it: its workers must not stay
    with it.  Sweeps closer together than LABKIT_IDLE_SECONDS share the same workers; once
    none has used them for that long they stop, and the next sweep starts new ones."""
    from labkit import sweeps

    monkeypatch.setenv("LABKIT_IDLE_SECONDS", "1.5")
    sweeps.shutdown_workers()
    sweep(make, {"lr": [0.05]}, seeds=1)
    pool = sweeps._POOL
    processes = list(pool._processes.values())
    time.sleep(0.5)
    sweep(make, {"lr": [0.06]}, seeds=1)  # within the delay: same workers
    assert sweeps._POOL is pool and len(train_log()) == 2
    deadline = time.monotonic() + 20
    while sweeps._POOL is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sweeps._POOL is None
    for process in processes:
        process.join(timeout=10)
        assert not process.is_alive()
    sweep(make, {"lr": [0.07]}, seeds=1)
    assert sweeps._POOL is not None and sweeps._POOL is not pool and len(train_log()) == 3


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_idle_delay_names_the_variable_before_any_training(store_dir, train_log,
                                                                  monkeypatch, value):
    monkeypatch.setenv("LABKIT_IDLE_SECONDS", value)
    with pytest.raises(ValueError, match=f"LABKIT_IDLE_SECONDS.*{value}"):
        sweep(make, {"lr": [0.05]}, seeds=1)
    assert train_log() == []


def test_workers_still_starting_are_terminated_at_shutdown(spawned_workers):
    """A chapter whose runs are all stored never uses the workers it started: they are
    terminated at its end, even in the middle of their imports, not waited for."""
    from labkit import start_workers, sweeps

    start_workers()
    workers = list(sweeps._POOL._processes.values())
    sweeps.shutdown_workers()
    assert workers and all(process.exitcode == -signal.SIGTERM for process in workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are spawned off Linux")
def test_on_linux_workers_are_forked_from_a_server_that_imported_keras(store_dir, monkeypatch):
    """The fork server imports Keras and JAX once; workers forked from it skip those 4-5 s.
    They still take the driver's labkit settings of the moment, not the server's."""
    from multiprocessing import forkserver

    from labkit import start_workers, sweeps

    sweeps.shutdown_workers()
    start_workers()
    assert sweeps._POOL is None  # only the server started ahead: forking a worker is cheap
    monkeypatch.setenv("LABKIT_TEST_SETTING", "set after the server started")
    pool = sweeps._pool(1)
    assert pool.submit(os.getenv, "LABKIT_TEST_SETTING").result() == "set after the server started"
    server = forkserver._forkserver._forkserver_pid
    assert pool.submit(os.getppid).result() == server
    with open(f"/proc/{server}/maps", encoding="utf-8") as maps:
        assert "jaxlib" in maps.read()  # the server holds JAX, which its children inherit
    sweeps.shutdown_workers()


def test_workers_are_spawned_when_the_fork_servers_import_settings_differ(monkeypatch):
    """XLA_FLAGS and the like are read when JAX is imported: a worker forked from a server that
    imported JAX with other values would not honour the driver's."""
    from labkit import sweeps

    monkeypatch.setattr(sweeps, "_FORKSERVER_SETTINGS", None)
    env = sweeps._worker_env()
    first = sweeps._context(env).get_start_method()
    assert first == ("forkserver" if sys.platform.startswith("linux") else "spawn")
    assert sweeps._context({**env, "LABKIT_RUNS_DIR": "elsewhere"}).get_start_method() == first
    other_flags = {**env, "XLA_FLAGS": env.get("XLA_FLAGS", "") + " --xla_cpu_enable_fast_math=false"}
    assert sweeps._context(other_flags).get_start_method() == "spawn"


def test_workers_are_spawned_when_no_fork_server_can_start(monkeypatch):
    """A sandbox without Unix sockets cannot run the fork server: workers are spawned instead."""
    from multiprocessing import forkserver

    from labkit import sweeps

    def no_sockets():
        raise PermissionError("socket(AF_UNIX) denied")

    monkeypatch.setattr(sweeps, "_FORKSERVER_SETTINGS", None)
    monkeypatch.setattr(forkserver, "ensure_running", no_sockets)
    env = sweeps._worker_env()
    assert sweeps._context(env).get_start_method() == "spawn"
    assert sweeps._context(env).get_start_method() == "spawn"  # not tried again


def test_a_worker_takes_the_drivers_labkit_settings(monkeypatch):
    """What a forked worker does first: settings the driver removed are removed, others set."""
    from labkit import sweeps

    monkeypatch.setattr(os, "environ", {"HOME": "/home/student", "LABKIT_GONE": "the server had it",
                                        "LABKIT_PROGRESS": "0"})  # a worker's, not this process's
    sweeps._adopt({"LABKIT_RUNS_DIR": "/the/driver/store"})
    # LABKIT_PROGRESS is the driver's own: never sent, never removed.
    assert os.environ == {"HOME": "/home/student", "LABKIT_PROGRESS": "0",
                          "LABKIT_RUNS_DIR": "/the/driver/store"}


def test_no_workers_are_started_when_training_is_forbidden(monkeypatch):
    from labkit import start_workers, sweeps

    sweeps.shutdown_workers()
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")
    start_workers()
    assert sweeps._POOL is None


@pytest.fixture
def in_a_chapter(monkeypatch, tmp_path):
    monkeypatch.setenv("QUARTO_DOCUMENT_PATH", str(tmp_path))
    monkeypatch.setenv("QUARTO_DOCUMENT_FILE", "chapter.qmd")


def test_a_chapter_warm_last_time_starts_no_workers_ahead(store_dir, in_a_chapter, monkeypatch):
    """First execution of a chapter: workers start ahead.  The next execution starts them
    again only if a sweep of the previous one trained; a chapter that was warm is most
    likely warm again (if not, its sweeps start the workers as usual)."""
    from labkit import _last_execution, start_workers, sweeps

    sweeps.shutdown_workers()
    pools = []
    monkeypatch.setattr(sweeps, "_start_ahead", lambda size, idle_seconds: pools.append(size))
    root = open_store().root

    def starts_workers() -> bool:
        before = len(pools)
        start_workers()
        return len(pools) > before

    assert _last_execution.trained_last_time(root) is None
    assert starts_workers()                                   # first execution
    assert _last_execution.trained_last_time(root) is False  # ...until one of its sweeps trains
    assert not starts_workers()                               # nothing trained since
    _last_execution.remember(root, trained=True)              # what a sweep that trains does
    assert starts_workers()

    monkeypatch.setenv("QUARTO_DOCUMENT_FILE", "other.qmd")   # each chapter has its own memory
    assert _last_execution.trained_last_time(root) is None
    (root / _last_execution.FILE_NAME).write_text("{not json")  # a damaged hint means "unknown"
    assert _last_execution.trained_last_time(root) is None and starts_workers()


def test_a_sweep_that_trains_is_remembered(store_dir, in_a_chapter, train_log):
    from labkit import _last_execution

    root = open_store().root
    _last_execution.remember(root, trained=False)
    sweep(make, {"lr": [0.05]}, seeds=1)
    assert len(train_log()) == 1 and _last_execution.trained_last_time(root) is True


def test_outside_a_chapter_nothing_is_remembered(store_dir, monkeypatch):
    from labkit import _last_execution

    monkeypatch.delenv("QUARTO_DOCUMENT_FILE", raising=False)
    root = open_store().root
    _last_execution.remember(root, trained=False)
    assert _last_execution.trained_last_time(root) is None
    assert not (root / _last_execution.FILE_NAME).exists()
