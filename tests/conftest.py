"""Set-up shared by every test: local datasets, throw-away stores and caches, quiet progress.

Tests never touch the project's own store (``data/runs``): the session gets a temporary
one, and the suite checks at the end that ``git status`` did not change.  Fixtures: a
fresh store (``store_dir``), a count of trainings across processes (``train_log``), tiny
runs (``tiny``, ``trained``, ``sweep_script``), drivers tagged so that none of their
processes can hide (``processes``), and the fault figures (``figures``), printed at the
end of the run, which fails if a run was lost, a damaged item served, a crash seen or a
process left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    if "LABKIT_DATA_DIR" not in os.environ and (SHARED_DATA / "mnist.npz").is_file():
        os.environ["LABKIT_DATA_DIR"] = str(SHARED_DATA)
    for name in ("LABKIT_REQUIRE_CACHED", "LABKIT_PROFILE", "QUARTO_PROFILE", "LABKIT_TRAIN_LOG"):
        os.environ.pop(name, None)
    os.environ["LABKIT_PROGRESS"] = "0"
    # Under pytest-xdist each test process gets its share of the cores for sweep workers.
    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if processes > 1 and "LABKIT_WORKERS" not in os.environ:
        os.environ["LABKIT_WORKERS"] = str(max(1, len(os.sched_getaffinity(0)) // processes))
    scratch = Path(tempfile.mkdtemp(prefix="labkit-tests-"))
    config.add_cleanup(lambda: shutil.rmtree(scratch, ignore_errors=True))
    os.environ["LABKIT_RUNS_DIR"] = str(scratch / "runs")
    os.environ["LABKIT_CACHE_DIR"] = str(scratch / "cache")
    # One training log per test process, set once: sweep workers read it, and a setting
    # that changed from test to test would make loky start new workers for every test.
    os.environ["LABKIT_TRAIN_LOG"] = str(scratch / "trained.log")
    # The fault figures of the whole run: pytest-xdist's workers inherit the controller's file.
    if "LABKIT_TEST_FIGURES" not in os.environ:
        os.environ["LABKIT_TEST_FIGURES"] = str(scratch / "figures.jsonl")


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A fresh, empty run store for one test."""
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def train_log():
    """A call counter across processes: the keys of the trainings started during this test
    (every training appends its key to the test process's log)."""
    path = Path(os.environ["LABKIT_TRAIN_LOG"])
    path.touch()
    start = path.stat().st_size
    return lambda: path.read_bytes()[start:].decode().split()


def tiny_model(lr=0.1, hidden=16):
    """The network a student writes, at its smallest: 784-16-10, SGD."""
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="session")
def tiny():
    """``tiny(lr, **fields)``: a run that trains in about a second (300 images, 1 epoch)."""
    from labkit import Run

    def make(lr=0.1, **fields):
        return Run(tiny_model(lr), **{"data": "mnist", "train_size": 300, "epochs": 1, "batch_size": 64,
                                      **fields})

    make.model = tiny_model
    return make


@pytest.fixture(scope="session")
def trained(tiny):
    """One tiny run with probes, trained once per test process: ``(run, record)``, not stored."""
    from labkit.runs import fit

    run = tiny(epochs=2, probes=("weight_norm",), evaluate_test=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LABKIT_TRAIN_LOG")  # not a training of whichever test asked first
        return run, {**fit(run), "key": run.key}


#: A sweep as a student's script writes it (the runs are ``tiny``'s); ``{guard}`` opens a main
#: guard or nothing.
SCRIPT = """
import labkit, keras
from labkit import Run, sweep

def make(lr):
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Run(model, data="mnist", train_size=300, epochs=EPOCHS, batch_size=64)

{guard}print("RESULT", sweep(make, {{"lr": LRS}}).final("accuracy")["accuracy"].tolist(), flush=True)
"""


@pytest.fixture(scope="session")
def sweep_script():
    """``sweep_script(lrs, epochs=1, guard=True)``: the text of a script that runs a sweep."""
    def text(lrs, epochs=1, guard=True) -> str:
        guard = 'if __name__ == "__main__":\n    ' if guard else ""
        return SCRIPT.format(guard=guard).replace("LRS", repr(list(lrs))).replace("EPOCHS", str(epochs))

    return text


class Processes:
    """Drivers started by a test, tagged through their environment: every process they start
    (sweep workers, loky's helpers) inherits the tag, so none can hide once its driver is gone."""

    def __init__(self):
        self.tags: list[str] = []

    def env(self, **settings) -> dict:
        tag = f"labkit-test-{os.getpid()}-{len(self.tags)}-{time.monotonic_ns()}"
        self.tags.append(tag)
        return {**os.environ, "LABKIT_TEST_TAG": tag, **settings}

    @staticmethod
    def alive(tag: str) -> list:
        """The processes of ``tag`` still running (a zombie waiting to be reaped has ended)."""
        import psutil

        found = []
        for process in psutil.process_iter():
            try:
                if process.environ().get("LABKIT_TEST_TAG") == tag and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except (psutil.Error, OSError):
                pass
        return found

    def gone_after(self, tag: str, since: float | None = None, timeout: float = 15.0) -> float:
        """Seconds from ``since`` (a ``time.monotonic()``, default now) until no process of ``tag``
        is left, polled every 0.1 s; ``inf`` past the timeout."""
        since = time.monotonic() if since is None else since
        while time.monotonic() - since < timeout:
            if not self.alive(tag):
                return time.monotonic() - since
            time.sleep(0.1)
        return float("inf")

    def kill_all(self) -> None:
        for tag in self.tags:
            for process in self.alive(tag):
                process.kill()


@pytest.fixture
def processes():
    """Start drivers with ``processes.env()``; anything of theirs still alive at the end is killed."""
    tracker = Processes()
    yield tracker
    tracker.kill_all()


FIGURES = {"inputs": "bad inputs tried", "faults": "faults injected", "lost": "runs lost",
           "served": "damaged or foreign items served", "crashes": "crashes", "orphans": "orphan processes",
           "orphan_seconds": "longest orphan life (s)"}


class Figures:
    """The fault-injection figures: each test adds what it tried and what it saw."""

    def add(self, **counts) -> None:
        unknown = set(counts) - set(FIGURES)
        assert not unknown, f"unknown figures {unknown}"
        with open(os.environ["LABKIT_TEST_FIGURES"], "a", encoding="utf-8") as log:
            log.write(json.dumps(counts) + "\n")

    @contextmanager
    def no_crash(self):
        """Counts an exception escaping the block as a crash (and lets it fail the test)."""
        try:
            yield
        except Exception:
            self.add(crashes=1)
            raise


@pytest.fixture
def figures():
    return Figures()


def _figure_totals() -> dict | None:
    path = os.environ.get("LABKIT_TEST_FIGURES", "")
    if not os.path.exists(path):
        return None
    totals = dict.fromkeys(FIGURES, 0)
    with open(path, encoding="utf-8") as log:
        for line in log:
            for name, value in json.loads(line).items():
                totals[name] = max(totals[name], value) if name == "orphan_seconds" else totals[name] + value
    return totals


def pytest_terminal_summary(terminalreporter, config):
    """The figures of the whole run (every test process), printed once at the end."""
    totals = getattr(config, "_figures", None)
    if totals:
        terminalreporter.write_sep("=", "fault figures")
        terminalreporter.write_line(", ".join(f"{FIGURES[name]}: {value:g}" for name, value in totals.items()))


def _git_status() -> str | None:
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def pytest_collection_modifyitems(config, items):
    """Slow tests first, so that under pytest-xdist no long test starts last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionstart(session):
    session.config._git_status_before = _git_status()


def pytest_sessionfinish(session, exitstatus):
    """The suite must leave ``git status`` as it found it (no store, no output in the tree),
    and the fault figures must show nothing lost, served damaged, crashed or left behind."""
    if hasattr(session.config, "workerinput"):
        return
    session.config._figures = totals = _figure_totals()
    if totals and any(totals[name] for name in ("lost", "served", "crashes", "orphans")):
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"FAILED fault figures: a run lost, a damaged item served, a crash or an orphan: {totals}", red=True)
        session.exitstatus = 1
    before, after = session.config._git_status_before, _git_status()
    new = sorted(set((after or "").splitlines()) - set((before or "").splitlines()))
    if before is not None and after is not None and new:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "FAILED git status changed by the test suite:\n  " + "\n  ".join(new), red=True)
        session.exitstatus = 1
