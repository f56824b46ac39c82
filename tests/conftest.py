"""Test set-up shared by every test: datasets, a temporary run store, no progress noise.

Tests never touch the project's own store (``data/runs``): each session gets a
temporary one, and ``test_git_status_clean`` checks the suite leaves the tree clean.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _default_data_dir() -> str | None:
    shared = ROOT.parent / "shared" / "data"
    return str(shared) if (shared / "mnist.npz").is_file() else None


def pytest_configure(config):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if "LABKIT_DATA_DIR" not in os.environ and _default_data_dir():
        os.environ["LABKIT_DATA_DIR"] = _default_data_dir()
    os.environ["LABKIT_PROGRESS"] = "0"
    os.environ.pop("LABKIT_REQUIRE_CACHED", None)
    os.environ.pop("LABKIT_PROFILE", None)
    os.environ.pop("QUARTO_PROFILE", None)
    _share_cores_between_test_processes()
    _use_throwaway_stores_and_caches(config)


def _share_cores_between_test_processes() -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto``), each test process gets its share of
    the cores for its sweeps' training workers: two test processes on two cores that each
    started one worker per core would run four trainings on two cores, and every worker
    start (imports, data, compilation) would be paid twice.  A test that needs a given
    number of workers sets ``LABKIT_WORKERS`` itself."""
    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if processes > 1 and "LABKIT_WORKERS" not in os.environ:
        from labkit._env import usable_cores

        os.environ["LABKIT_WORKERS"] = str(max(1, usable_cores() // processes))


def _use_throwaway_stores_and_caches(config) -> None:
    """A throw-away run store, JAX compilation cache, chart cache and prepared-data cache for
    the session, set before the test modules are collected: importing ``labkit.models``
    turns JAX's compilation cache on, in the folder ``LABKIT_JAX_CACHE`` names then."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="labkit-tests-"))
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    os.environ["LABKIT_RUNS_DIR"] = str(root / "runs")
    os.environ["LABKIT_JAX_CACHE"] = str(root / "jax-cache")
    os.environ["LABKIT_CHART_CACHE"] = str(root / "chart-cache")
    os.environ["LABKIT_DATA_CACHE"] = str(root / "data-cache")


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A fresh, empty run store for one test."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(folder))
    return folder


@pytest.fixture
def train_log(tmp_path, monkeypatch):
    """A call counter across processes: every training appends its key to this file."""
    path = tmp_path / "trained.log"
    path.touch()
    monkeypatch.setenv("LABKIT_TRAIN_LOG", str(path))

    def trained() -> list[str]:
        return path.read_text().split()

    return trained


def _git_status() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (they train for tens of seconds) run first, so that under
    pytest-xdist no long test starts last and leaves one core idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionstart(session):
    session.config._git_status_before = _git_status()


def pytest_sessionfinish(session, exitstatus):
    """The suite must leave ``git status`` as it found it (no store, no outputs in the tree)."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller checks once
    before, after = getattr(session.config, "_git_status_before", None), _git_status()
    if before is None or after is None or before == after:
        return
    new = sorted(set(after.splitlines()) - set(before.splitlines()))
    if new:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "FAILED git status changed by the test suite:\n  " + "\n  ".join(new), red=True)
        session.exitstatus = 1
