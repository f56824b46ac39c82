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
more; other failures are reported together once every other run is stored.  Ctrl-C
(once or twice) stops the sweep at once: queued runs are cancelled, the workers
killed, and the runs finished so far are kept.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from labkit import _env, settings
from labkit.data import DatasetError
from labkit.runs import PROBE_COLUMNS, Result, Run, fit, open_store
from labkit.store import NOT_COMPUTED, BadRecord, MissingResult, Store

__all__ = ["sweep", "Sweep", "Item", "SweepError"]

#: Columns of a sweep's tables (history's, then the probes'): a grid dimension cannot take one of these names.
RESERVED = tuple(dict.fromkeys(["seed", "key", "diverged", "epoch", "split", "metric", "value",
                                *sorted(set().union(*PROBE_COLUMNS.values()))]))
MAX_ATTEMPTS = 2
#: The settings :func:`~labkit.runs.fit` reads; a worker never reads the store's location.
WORKER_SETTINGS = ("LABKIT_DATA_DIR", "LABKIT_CACHE_DIR", "LABKIT_PROJECT_ROOT", "QUARTO_PROJECT_ROOT",
                   "LABKIT_TRAIN_LOG")


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
    """What workers read (datasets, caches, the test suite's training log) and how they start:
    loky starts new workers when these change, and keeps them across everything else."""
    passed = {name: value for name, value in os.environ.items()
              if name in WORKER_SETTINGS or name.startswith(("KERAS_", "JAX_"))}
    return {**passed, **_env.process_settings()}


def _pool():
    from loky import get_reusable_executor

    return get_reusable_executor(max_workers=settings.workers(), timeout=settings.idle_seconds(),
                                 initializer=_start_worker, initargs=(os.getpid(),), env=_worker_env())


# -- driver side --------------------------------------------------------------------------
def _points(grid: Mapping[str, Sequence]) -> list[dict]:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict of name -> list of values, got {grid!r}")
    axes = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
            raise ValueError(f"grid name {name!r} is not allowed: grid names are keyword arguments of the "
                             f"experiment, and the tables already have the columns {', '.join(RESERVED)}")
        if isinstance(values, np.ndarray) and values.ndim == 1:
            values = values.tolist()
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
        axes[name] = list(values)
    return [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool) and seeds >= 1:
        return list(range(int(seeds)))
    listed = list(seeds) if isinstance(seeds, (Sequence, np.ndarray)) and not isinstance(seeds, str) else None
    if not listed or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in listed) \
            or len(set(listed)) != len(listed):  # each seed's range is Run.replace(seed=...)'s to check
        raise ValueError(f"seeds must be a count >= 1 or a list of distinct integers, got {seeds!r}")
    return [int(s) for s in listed]


def _plan(experiment: Callable[..., Run], grid, seeds) -> list[tuple[dict, int, Run]]:
    """Every (point, seed, run) of a sweep; two that would train the same run are refused."""
    if not callable(experiment):
        raise TypeError(f"experiment must be a function of the grid's names returning a labkit.Run, got {experiment!r}")
    plan, seen, points, seeds = [], {}, _points(grid), _seeds(seeds)
    for point in points:
        run = experiment(**point)
        if not isinstance(run, Run):
            raise TypeError(f"experiment(**{point}) must return a labkit.Run, got {type(run).__name__}")
        for seed in seeds:
            seeded = run.replace(seed=seed)
            if seeded.key in seen:
                raise ValueError(f"grid points {seen[seeded.key]} and {point} give the same run (seed {seed}): "
                                 "its rows would be counted twice; remove one of the two values")
            seen[seeded.key] = point
            plan.append((point, seed, seeded))
    return plan


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


@contextmanager
def _ctrl_c_noted():
    """While workers train, Ctrl-C only notes the press; the loop then stops at a point of its
    own choosing.  A KeyboardInterrupt raised inside ``concurrent.futures`` could leave one of
    its locks held, and the interpreter's exit would then wait for ever on the pool."""
    pressed: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    except ValueError:  # not the main thread, which alone receives Ctrl-C
        yield pressed
        return
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _save(store: Store, run: Run, record) -> dict:
    if not isinstance(record, dict):
        raise BadRecord(f"a record is a dict, got {type(record).__name__}")
    return store.save({**record, "key": run.key})


def _train(runs: list[Run], store: Store, executor: Executor | None, progress: _Progress):
    """Train ``runs`` in workers and save their records as they come: ``(records, failures)``,
    failures as ``{key: why}``.  A dataset error stops the sweep at once (every run would
    hit it); any exception or Ctrl-C cancels the rest and kills this sweep's workers."""
    queue, attempts, in_flight = list(runs), dict.fromkeys((r.key for r in runs), 0), {}
    records, failures = {}, {}
    slots = settings.workers() if executor is None else len(queue)
    pool = executor

    def settle(future) -> None:
        run = in_flight.pop(future)
        error = future.exception()
        if isinstance(error, DatasetError):
            raise error
        if error is None:
            try:  # the driver verifies what a worker returns, and is the only writer
                records[run.key] = _save(store, run, future.result())
                progress.step()
            except BadRecord as bad:
                failures[run.key] = f"its worker returned a record that failed verification ({bad})"
        elif isinstance(error, BrokenExecutor) and attempts[run.key] < MAX_ATTEMPTS:
            queue.insert(0, run)
        else:
            failures[run.key] = _describe(error)

    with _ctrl_c_noted() as pressed:
        try:
            while queue or in_flight:
                if queue:
                    pool = executor or _pool()
                while queue and len(in_flight) < slots:
                    run = queue.pop(0)
                    attempts[run.key] += 1
                    in_flight[pool.submit(fit_spec, run.spec)] = run
                done, _ = wait(in_flight, timeout=0.1, return_when=FIRST_COMPLETED)
                if pressed:
                    raise KeyboardInterrupt
                for future in done:
                    settle(future)
        except BaseException:  # Ctrl-C included: queued runs cancelled, our workers killed
            for future in in_flight:
                future.cancel()
            if executor is None and pool is not None:
                pool.shutdown(wait=False, kill_workers=True)
            raise
    return records, failures


def _claim(store: Store, runs: list[Run]):
    """Take the lock of each run: another process training one of them keeps it, and this
    one waits for its record instead of training it twice.  ``(mine, theirs, found)``:
    the runs to train, those another process holds, records saved meanwhile."""
    from filelock import Timeout

    mine, theirs, found = {}, [], {}
    for run in runs:
        lock = store.lock(run.key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            theirs.append((run, lock))
            continue
        record = store.usable(run.key, then=None)  # a damaged one was reported when the sweep began
        if record is not None:  # saved meanwhile by another process
            lock.release()
            found[run.key] = record
        else:
            mine[run.key] = (run, lock)
    return mine, theirs, found


def sweep(experiment: Callable[..., Run], grid: Mapping[str, Sequence], seeds=1, *,
          executor: Executor | None = None, store: Store | None = None, label: str = "sweep") -> Sweep:
    """Every grid point × seed: stored runs read back, missing ones trained; see the module."""
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor (e.g. a Dask client's "
                        f"client.get_executor()), got {type(executor).__name__}")
    if executor is None:  # bad settings fail now, before anything trains
        settings.workers(), settings.idle_seconds()
    store = store or open_store()
    plan = _plan(experiment, grid, seeds)
    then = NOT_COMPUTED if settings.require_cached() else "computing it again"
    records = {run.key: store.usable(run.key, then=then) for _, _, run in plan}
    missing = [run for _, _, run in plan if records[run.key] is None]
    if missing and settings.require_cached():
        raise MissingResult(f"{len(missing)} of {len(records)} runs of {label!r} are not in {store.root} "
                            f"(first: {missing[0].key[:12]}) and LABKIT_REQUIRE_CACHED=1 forbids training; "
                            "unset it to train them, or restore the committed store (git checkout data/runs)")
    cached = {key for key, record in records.items() if record is not None}
    failures: dict[str, str] = {}
    progress = _Progress(label, len(records), len(cached))
    while missing:
        # First seeds first (a stable sort of the plan): a configuration's later seeds reuse its XLA programs.
        mine, theirs, found = _claim(store, sorted(missing, key=lambda run: run.seed))
        records.update(found)
        try:
            trained, failed = _train([run for run, _ in mine.values()], store, executor, progress)
            records.update(trained)
            failures.update(failed)
        finally:
            for _, lock in mine.values():
                lock.release()
        for run, lock in theirs:
            with lock:  # the other process is done with it
                records[run.key] = store.usable(run.key, then=None)
        missing = [run for run, _ in theirs if records[run.key] is None]
    if failures:
        lines = "\n".join(f"  - {key[:12]}: {why}" for key, why in failures.items())
        raise SweepError(f"{len(failures)} of {len(records)} runs of {label!r} failed; the others are "
                         f"stored, and re-running the sweep retries only these:\n{lines}")
    items = [Item(point, seed, Result(records[run.key], cached=run.key in cached)) for point, seed, run in plan]
    return Sweep(items, list(grid))
