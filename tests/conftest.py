"""Set-up shared by every test: local datasets, throw-away stores and caches, quiet progress.

Tests never touch the project's own store (``data/runs``): the session gets a temporary
one, and the suite checks at the end that ``git status`` did not change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A fresh, empty run store for one test."""
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def train_log(tmp_path, monkeypatch):
    """A call counter across processes: every training started appends its key to a file."""
    path = tmp_path / "trained.log"
    path.touch()
    monkeypatch.setenv("LABKIT_TRAIN_LOG", str(path))
    return lambda: path.read_text().split()


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
    """The suite must leave ``git status`` as it found it (no store, no output in the tree)."""
    if hasattr(session.config, "workerinput"):
        return
    before, after = session.config._git_status_before, _git_status()
    new = sorted(set((after or "").splitlines()) - set((before or "").splitlines()))
    if before is not None and after is not None and new:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "FAILED git status changed by the test suite:\n  " + "\n  ".join(new), red=True)
        session.exitstatus = 1
