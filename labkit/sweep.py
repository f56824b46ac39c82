"""A sweep: a grid of runs × seeds, the missing ones trained in parallel, read back as tables.

``sweep(experiment, {"lr": [0.01, 0.1]}, seeds=3)`` calls ``experiment(lr=...)`` for
each point (it returns a :class:`~labkit.runs.Run`), gives each run its seeds, serves
the stored ones and trains the others in worker processes, one single-threaded XLA
worker per core (GUIDE §2).  Workers come from loky's reusable executor: they live
across the sweeps of a chapter, stop after ``LABKIT_IDLE_SECONDS`` idle, work from a
notebook, a script, ``python -c`` or standard input, and exit when the process that
started them dies.  Any ``concurrent.futures`` executor can replace them (a Dask
cluster: ``client.get_executor()``).

Workers only compute: each returns its record as plain JSON and the driver, the only
writer of the store, verifies and saves it.  A run whose worker dies is tried once
more; other failures are reported together once every other run is stored.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, wait
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from labkit import _env, settings
from labkit.runs import Result, Run, fit, open_store
from labkit.store import BadRecord, MissingResult, Store

__all__ = ["sweep", "Sweep", "Item", "SweepError"]

#: Columns a sweep's tables add: a grid dimension cannot take one of these names.
RESERVED = ("seed", "key", "diverged", "epoch", "split", "metric", "value")
MAX_ATTEMPTS = 2


class SweepError(RuntimeError):
    """Some runs failed; every other run is stored, and re-running retries only the failed ones."""


@dataclass(frozen=True)
class Item:
    """One grid point with one seed, and its result."""

    point: dict
    seed: int
    result: Result


class Sweep:
    """The results of a sweep, in grid order: tidy tables for charts and verdicts."""

    def __init__(self, items: list[Item], names: list[str]):
        self.items, self.names = items, names

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def _tidy(self, part: Callable[[Result], pd.DataFrame]) -> pd.DataFrame:
        frames = []
        for item in self.items:
            frame = part(item.result)
            columns = {**{name: [item.point[name]] * len(frame) for name in self.names},
                       "seed": item.seed, "key": item.result.key, "diverged": item.result.diverged}
            frames.append(pd.DataFrame({**columns, **{c: frame[c] for c in frame}}, index=frame.index))
        return pd.concat(frames, ignore_index=True)

    @property
    def history(self) -> pd.DataFrame:
        """One row per run × epoch × split × metric: the grid, ``seed``, ``key``, ``diverged``,
        ``epoch``, ``split`` (train, validation, test), ``metric`` and ``value``."""
        return self._tidy(lambda result: result.history)

    def probe(self, name: str) -> pd.DataFrame:
        """The rows of one probe for every run, with the grid and the seed."""
        return self._tidy(lambda result: result.probe(name))

    def final(self, *metrics: str, split: str = "validation") -> pd.DataFrame:
        """One row per run: the grid, ``seed``, ``diverged`` and each metric at the epoch whose
        weights the run kept (its last, or the best one under early stopping).

        ``split="test"`` reads the test metrics.  A diverged run's metrics are NaN, not its
        last finite values, which predate the blow-up and would flatter it.
        """
        rows = []
        for item in self.items:
            values = item.result.test if split == "test" else item.result.record["final"].get(split)
            if values is None:
                raise ValueError(f"runs of this sweep have no {split} metrics"
                                 + (" (they were trained without evaluate_test=True)" if split == "test" else ""))
            missing = [m for m in metrics if m not in values]
            if missing:
                raise KeyError(f"metric {missing[0]!r} not recorded; the runs have {sorted(values)}")
            rows.append({**item.point, "seed": item.seed, "diverged": item.result.diverged,
                         **{m: np.nan if item.result.diverged or values[m] is None else values[m]
                            for m in metrics}})
        return pd.DataFrame(rows)


# -- worker side --------------------------------------------------------------------------
def _start_worker(parent: int) -> None:
    """Set up a worker: Ctrl-C is for the driver to handle, and a worker whose driver is
    gone (killed, out of memory, a notebook restarted) exits instead of training on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def exit_with_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def fit_spec(spec: dict) -> dict:
    """What a worker runs: :func:`~labkit.runs.fit` of a spec; returns the record (plain JSON)."""
    return fit(Run.from_spec(spec))


def _worker_env() -> dict[str, str]:
    """The settings workers start with: loky starts new workers when they change."""
    passed = {name: value for name, value in os.environ.items()
              if name.startswith(("LABKIT_", "QUARTO_PROFILE", "KERAS_", "JAX_"))}
    return {**passed, **_env.process_settings()}


def _pool():
    from loky import get_reusable_executor

    return get_reusable_executor(max_workers=settings.workers(), timeout=settings.idle_seconds(),
                                 initializer=_start_worker, initargs=(os.getpid(),), env=_worker_env())


# -- driver side --------------------------------------------------------------------------
def _points(grid: Mapping[str, Sequence]) -> list[dict]:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict of name -> list of values, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(name, str) or name in RESERVED:
            raise ValueError(f"grid name {name!r} is not allowed: use a name other than {', '.join(RESERVED)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"grid[{name!r}] repeats a value ({list(values)!r}): each point would be run twice")
    return [dict(zip(grid, combination)) for combination in itertools.product(*grid.values())]


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {seeds!r}")
        return list(range(int(seeds)))
    listed = list(seeds) if isinstance(seeds, Sequence) and not isinstance(seeds, str) else None
    if not listed or len(set(listed)) != len(listed) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in listed):
        raise ValueError(f"seeds must be a count >= 1 or a list of distinct integers in [0, 2**32), got {seeds!r}")
    return listed


def _training_order(runs: list[Run]) -> list[Run]:
    """The first seed of every configuration, then the second...: seeds of one configuration
    compile the same XLA programs, and a later seed loads them from JAX's cache."""
    by_config: dict[str, list[Run]] = {}
    for run in runs:
        by_config.setdefault(run.replace(seed=0).key, []).append(run)
    return [run for round_ in itertools.zip_longest(*by_config.values()) for run in round_ if run]


class _Progress:
    def __init__(self, label: str, total: int, stored: int):
        self.label, self.total, self.done, self.started = label, total, stored, time.perf_counter()
        self.stored = stored

    def step(self) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        left = elapsed / (self.done - self.stored) * (self.total - self.done)
        settings.tell(f"{self.label}: {self.done}/{self.total} runs ({self.stored} stored), "
                      f"{elapsed:.0f} s, about {left:.0f} s left")


def _describe(error: BaseException) -> str:
    if isinstance(error, BrokenExecutor):
        return "its worker process died twice (killed, or out of memory)"
    return f"{type(error).__name__}: {error}"


def _train(runs: list[Run], store: Store, executor: Executor | None, progress: _Progress) -> dict[str, str]:
    """Train ``runs`` in workers and save their records; ``{key: why}`` for the failures."""
    queue, attempts, failures, in_flight = list(runs), dict.fromkeys((r.key for r in runs), 0), {}, {}
    slots = settings.workers() if executor is None else len(queue)
    pool = executor
    try:
        while queue or in_flight:
            pool = executor or _pool()
            while queue and len(in_flight) < slots:
                run = queue.pop(0)
                attempts[run.key] += 1
                in_flight[pool.submit(fit_spec, run.spec)] = run
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                run = in_flight.pop(future)
                error = future.exception()
                if error is None:
                    try:
                        store.save({**future.result(), "key": run.key})
                        progress.step()
                    except BadRecord as bad:  # a worker that returned a wrong record
                        failures[run.key] = f"its record failed verification ({bad})"
                elif isinstance(error, BrokenExecutor) and attempts[run.key] < MAX_ATTEMPTS:
                    queue.insert(0, run)
                else:
                    failures[run.key] = _describe(error)
    except KeyboardInterrupt:
        for future in in_flight:
            future.cancel()
        if executor is None and pool is not None:
            pool.shutdown(wait=False, kill_workers=True)  # a second Ctrl-C has nothing to wait for
        raise
    return failures


def _claim(store: Store, runs: list[Run]):
    """Take the lock of each run: another process training one of them keeps it, and this
    one waits for its record instead of training it twice."""
    from filelock import Timeout

    mine, theirs = {}, []
    for run in runs:
        lock = store.lock(run.key)
        if lock is None:
            raise MissingResult(f"run {run.key[:12]} is missing from the read-only store {store.root}; "
                                "set LABKIT_RUNS_DIR to a writable folder to train it")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            theirs.append((run, lock))
            continue
        if store.usable(run.key) is not None:  # saved meanwhile by another process
            lock.release()
        else:
            mine[run.key] = (run, lock)
    return mine, theirs


def sweep(experiment: Callable[..., Run], grid: Mapping[str, Sequence], seeds=1, *,
          executor: Executor | None = None, store: Store | None = None, label: str = "sweep") -> Sweep:
    """Every grid point × seed: stored runs read back, missing ones trained; see the module."""
    store = store or open_store()
    plan = []
    for point in _points(grid):
        run = experiment(**point)
        if not isinstance(run, Run):
            raise TypeError(f"experiment(**{point}) must return a labkit.Run, got {type(run).__name__}")
        plan += [(point, seed, run.replace(seed=seed)) for seed in _seeds(seeds)]
    records = {}
    for _, _, run in plan:
        if run.key not in records:
            records[run.key] = store.usable(run.key)
    missing = [run for run in {r.key: r for _, _, r in plan}.values() if records[run.key] is None]
    if missing and settings.require_cached():
        raise MissingResult(f"{len(missing)} of {len(records)} runs of {label!r} are not in {store.root} "
                            f"(first: {missing[0].key[:12]}) and LABKIT_REQUIRE_CACHED=1 forbids training; "
                            "unset it to train them, or restore the committed store (git checkout data/runs)")
    failures: dict[str, str] = {}
    progress = _Progress(label, len(records), len(records) - len(missing))
    while missing:
        mine, theirs = _claim(store, _training_order(missing))
        try:
            failures.update(_train([run for run, _ in mine.values()], store, executor, progress))
        finally:
            for _, lock in mine.values():
                lock.release()
        for run, lock in theirs:
            with lock:  # the other process is done with it
                pass
        missing = [run for run, _ in theirs if store.usable(run.key) is None]
    if failures:
        lines = "\n".join(f"  - {key[:12]}: {why}" for key, why in failures.items())
        raise SweepError(f"{len(failures)} of {len(records)} runs of {label!r} failed; the others are "
                         f"stored, and re-running the sweep retries only these:\n{lines}")
    items = []
    for point, seed, run in plan:
        record = records[run.key] or store.load(run.key)
        items.append(Item(point, seed, Result(run, record, cached=records[run.key] is not None)))
    return Sweep(items, list(grid))
