"""Sweeps: a grid × seeds of runs, trained in parallel workers, read back as one tidy table.

Only missing runs are trained.  Workers are separate processes (forked from a fork
server that imported Keras once on Linux, spawned elsewhere), one single-threaded XLA
worker per core (measured faster than one multi-threaded process, GUIDE §2), kept
alive across the sweeps of a chapter.  Each worker writes its records to the store
itself, so a crash loses nothing finished.
"""

from __future__ import annotations

import atexit
import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait, FIRST_COMPLETED
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from labkit import _env, _last_execution
from labkit.runs import Result, Run, open_store, require_cached
from labkit.store import MissingRun, Store, StoreError

__all__ = ["sweep", "sweep_results", "probe_frame", "SweepItem", "SweepError", "start_workers",
           "shutdown_workers"]

#: How often a run is attempted when its worker dies (killed, out of memory).
MAX_ATTEMPTS = 2


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the others are stored and the message lists the failures."""


@dataclass
class SweepItem:
    """One point of the grid with one seed, and its result."""

    point: dict
    seed: int
    result: Result


# -- worker side -----------------------------------------------------------
#: How much lower a worker's scheduling priority is than its driver's (Unix ``nice``).
WORKER_NICENESS = 10


def _worker_init(settings: dict[str, str]) -> None:
    """Make this process a single-threaded XLA worker with the driver's ``settings``, a
    persistent compile cache, Keras and labkit's training code imported.

    Workers ignore SIGINT: an interrupt (Ctrl-C, a kernel shut down by Jupyter) is
    the driver's to handle; it stops the pool cleanly instead of every worker
    printing a traceback.  They run at a lower priority than the driver (training is
    background work beside an editor, a browser, and the notebook that workers started
    ahead of need overlap); while they train the driver is idle, so they lose nothing
    there (on shared cores the hardware, not the scheduler, limits what this buys).
    The imports are done here, at start (a forked worker has them already), so that a
    worker started ahead of need is ready when its first run comes.
    """
    import signal

    from labkit import _env

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _adopt(settings)
    _lower_priority()
    _env.make_single_threaded()
    from labkit import _worker_imports

    _worker_imports.import_stack()
    _env.enable_compilation_cache()


def _adopt(settings: dict[str, str]) -> None:
    """Take the driver's labkit settings: a forked worker has the fork server's environment,
    which is the driver's as it was when the server started."""
    for name in [name for name in os.environ if name.startswith(_ENV_PREFIXES)]:
        if name not in settings and name not in _DRIVER_ONLY:
            del os.environ[name]
    os.environ.update(settings)


def _lower_priority() -> None:
    try:
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):
        pass  # no nice() (Windows): workers run at the driver's priority


def _ready() -> int:
    """A task that does nothing: submitting it makes the pool start a worker now."""
    return os.getpid()


def _train_in_worker(spec: dict, store_root: str) -> str:
    """Train one run (if still missing) and save it; returns its key."""
    from labkit.runs import execute, validate_record

    run = Run.from_spec(spec)
    Store(store_root, validate=validate_record).get_or_compute(run.key, lambda: execute(run))
    return run.key


# -- the pool --------------------------------------------------------------
_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_ENV: dict[str, str] = {}
#: Workers inherit the environment once, at start: these settings must match the driver's.
_ENV_PREFIXES = ("LABKIT_", "KERAS_", "XLA_", "JAX_")
#: ...except those only the driver reads (a chapter that turns the progress report off must
#: not restart the workers ``start_workers`` started).
_DRIVER_ONLY = frozenset({"LABKIT_PROGRESS", "LABKIT_WORKERS", "LABKIT_IDLE_SECONDS"})
#: Of those, these are read when Keras and JAX are imported: a worker forked from a server that
#: imported them with other values would not honour the driver's (``_context``).
_IMPORT_PREFIXES = ("KERAS_", "XLA_", "JAX_")
#: The import-time settings the fork server was started with: None until labkit starts it;
#: ``{"unavailable": why}``, which no driver's settings match, when it could not start.
_FORKSERVER_SETTINGS: dict[str, str] | None = None
#: Workers unused for this long are stopped (``LABKIT_IDLE_SECONDS`` overrides).
IDLE_SECONDS = 60.0
_POOL_LOCK = threading.RLock()
_IDLE_TIMER: threading.Timer | None = None
_SWEEPS_RUNNING = 0
_LAST_USE = 0.0


def _default_workers() -> int:
    if _has_gpu():
        return 1
    value = os.environ.get("LABKIT_WORKERS")
    if value:
        return max(1, int(value))
    return _env.usable_cores()


def _has_gpu() -> bool:
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES")) and os.path.exists("/dev/nvidia0")


def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) and k not in _DRIVER_ONLY}


def _pool(size: int) -> ProcessPoolExecutor:
    """The worker pool, restarted when it is too small or the driver's settings changed
    (a worker started with another LABKIT_DATA_DIR would read another dataset)."""
    global _POOL, _POOL_SIZE, _POOL_ENV, _LAST_USE
    _restore_main_spec()
    env = _worker_env()
    with _POOL_LOCK:  # not while an idle stop is under way (_stop_if_still_idle)
        _LAST_USE = time.monotonic()
        if _POOL is None or _POOL_SIZE < size or env != _POOL_ENV:
            shutdown_workers()
            _POOL = ProcessPoolExecutor(size, mp_context=_context(env), initializer=_worker_init,
                                        initargs=(env,))
            _POOL_SIZE, _POOL_ENV = size, env
        return _POOL


def _context(env: dict[str, str]) -> multiprocessing.context.BaseContext:
    """How workers start: forked from a fork server that imported Keras once (Linux),
    else spawned (each imports Keras itself, 3–5 s).

    The fork server keeps the Keras and JAX it imported, with the settings read at import
    (``XLA_FLAGS``...): when the driver's differ from those, workers are spawned, which
    honours them.  macOS and Windows spawn: forking is unsafe there with system libraries.
    """
    global _FORKSERVER_SETTINGS
    settings = {name: value for name, value in env.items() if name.startswith(_IMPORT_PREFIXES)}
    if sys.platform.startswith("linux") and _FORKSERVER_SETTINGS in (None, settings):
        from multiprocessing import forkserver

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["labkit._worker_imports"])
        try:
            forkserver.ensure_running()  # returns at once; the server imports in the background
        except OSError as error:  # e.g. no Unix sockets in a sandbox: spawn, as elsewhere
            _FORKSERVER_SETTINGS = {"unavailable": str(error)}
        else:
            _FORKSERVER_SETTINGS = settings
            return context
    return multiprocessing.get_context("spawn")


def _idle_seconds() -> float:
    value = os.environ.get("LABKIT_IDLE_SECONDS")
    if value is None or value.strip() == "":
        return IDLE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"LABKIT_IDLE_SECONDS must be a number of seconds >= 0, got {value!r}; "
                         "unset it for the default (60)")
    return seconds


def _stop_when_idle(seconds: float) -> None:
    """Stop the workers once no sweep has used them for ``seconds`` (``LABKIT_IDLE_SECONDS``).

    Quarto keeps a chapter's kernel alive for 300 s after rendering it, and the workers
    with it: about 0.75 GB each after a full-MNIST run, held while the next chapters
    render, unless they stop on their own.  A later sweep starts them again: forked from
    the fork server in a fraction of a second on Linux, spawned in 3–5 s elsewhere.
    Armed when a sweep ends or workers are started ahead; a sweep that begins meanwhile
    keeps them.
    """
    global _IDLE_TIMER, _LAST_USE
    with _POOL_LOCK:
        _LAST_USE = time.monotonic()
        if _IDLE_TIMER is not None:
            _IDLE_TIMER.cancel()
        _IDLE_TIMER = threading.Timer(seconds, _stop_if_still_idle, args=(seconds,))
        _IDLE_TIMER.daemon = True
        _IDLE_TIMER.start()


def _stop_if_still_idle(seconds: float) -> None:
    with _POOL_LOCK:
        if _SWEEPS_RUNNING == 0 and time.monotonic() - _LAST_USE >= seconds:
            shutdown_workers()


def _restore_main_spec() -> None:
    """Give ``__main__`` back the ``__spec__`` that IPython's ``%reset`` deletes.

    Quarto's setup cell ends with ``%reset``, and in a kernel ``__main__`` is the user
    namespace: without ``__spec__``, multiprocessing can start neither a ``spawn`` process
    nor a fork server ("module '__main__' has no attribute '__spec__'").  ``None`` is what
    a kernel has before the reset.
    """
    main = sys.modules.get("__main__")
    if main is not None and not hasattr(main, "__spec__"):
        main.__spec__ = None


def start_workers() -> None:
    """Start the sweep workers now, in the background, rather than at the first sweep.

    A worker takes seconds to start (Python, Keras, JAX: 3–5 s on the book's 2 cores).
    Called at the top of a notebook, that start-up overlaps the notebook's own imports
    and model building instead of delaying its first sweep.  On Linux what starts is the
    fork server (``_context``): it imports Keras once, and the first sweep forks its
    workers from it in a fraction of a second.  In a chapter, it does so
    only when the chapter is likely to train: on its first execution with this store,
    or when it trained last time (``labkit._last_execution``); a chapter that re-renders
    warm is not slowed by workers it will not use.  Workers that turn out unused are
    stopped at exit.  Does nothing when training is forbidden
    (``LABKIT_REQUIRE_CACHED=1``) or the workers are already running.
    """
    if require_cached():
        return
    idle_seconds = _idle_seconds()  # a bad value fails here, before any process starts
    store_root = open_store().root
    likely_warm = _last_execution.trained_last_time(store_root) is False
    _last_execution.remember(store_root, trained=False)  # until one of its sweeps trains
    if likely_warm or (_POOL is not None and _POOL_ENV == _worker_env()):
        return
    _start_ahead(_default_workers(), idle_seconds)


def _start_ahead(size: int, idle_seconds: float) -> None:
    """Start the fork server, or else ``size`` spawned workers, without waiting for them."""
    _restore_main_spec()
    if _context(_worker_env()).get_start_method() == "forkserver":
        return  # the server is starting; forking a worker from it at the first sweep is quick
    pool = _pool(size)
    for _ in range(size):
        pool.submit(_ready)  # the pool starts one process per task while none is idle
    _stop_when_idle(idle_seconds)


def shutdown_workers() -> None:
    """Stop the worker processes (they are restarted by the next sweep).

    Idle workers are terminated rather than asked to exit: a worker's normal exit
    tears down JAX and Keras, 1.7 s here, at the end of every chapter.  An idle
    worker holds nothing: each run's record was written (atomically) before its
    result came back.  So is a worker that is still starting (``start_workers``).
    A worker still running a run is left to finish it.
    """
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        if all(item.fn is _ready for item in pool._pending_work_items.values()):
            for process in list(pool._processes.values()):
                process.terminate()
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except BrokenProcessPool:
            pass


# At interpreter exit, concurrent.futures joins its pools (each worker exiting in full)
# from a threading-exit hook, which runs before atexit handlers: register there too, so
# that idle workers are terminated first.  (Hooks run last-registered first.)
_register_exit_hook = getattr(threading, "_register_atexit", atexit.register)
_register_exit_hook(shutdown_workers)


# -- driver side -----------------------------------------------------------
def _grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty mapping of name -> values, got {grid!r}")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"grid[{name!r}] must be a list of values, got {values!r}")
        if len(list(values)) == 0:
            raise ValueError(f"grid[{name!r}] is empty")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(grid[n]) for n in names))]


def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds!r}")
        return list(range(seeds))
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds!r}")
    return seeds


def _plan(make: Callable[..., Run], grid, seeds) -> list[tuple[dict, int, Run]]:
    plan = []
    for point in _grid_points(grid):
        run = make(**point)
        if not isinstance(run, Run):
            raise TypeError(f"make(**{point}) must return a labkit.Run, got {type(run).__name__}")
        for seed in _seed_list(seeds):
            plan.append((point, seed, run.replace(seed=seed)))
    return plan


class _Progress:
    """Done/total and ETA on the terminal, never in a rendered page."""

    def __init__(self, total: int, cached: int, label: str):
        self.total, self.cached, self.label = total, cached, label
        self.done, self.start = 0, time.perf_counter()
        wanted = total > cached and os.environ.get("LABKIT_PROGRESS", "1") != "0"
        self.stream = _env.terminal() if wanted else None

    def step(self) -> None:
        self.done += 1
        if self.stream is None:
            return
        elapsed = time.perf_counter() - self.start
        remaining = self.total - self.cached - self.done
        eta = elapsed / self.done * remaining
        print(f"[labkit] {self.label}: {self.cached + self.done}/{self.total} runs "
              f"({self.cached} cached), {elapsed:.0f} s elapsed, ETA {eta:.0f} s",
              file=self.stream, flush=True)


def _train_missing(missing: list[Run], store: Store, executor: Executor | None, label: str,
                   total: int) -> dict[str, str]:
    """Train ``missing`` runs; returns ``{key: error message}`` for those that failed.

    With labkit's own pool, at most one run per worker is submitted at a time,
    so a dead worker (SIGKILL, out of memory) breaks only runs that were really
    running: they are retried once in a fresh pool, then reported as failed.
    """
    progress = _Progress(total, total - len(missing), label)
    queue = list(missing)
    attempts = {run.key: 0 for run in missing}
    failures: dict[str, str] = {}
    slots = min(_default_workers(), len(queue)) if executor is None else len(queue)
    in_flight: dict[Future, Run] = {}
    while queue or in_flight:
        pool = executor or _pool(slots)
        while queue and len(in_flight) < slots:
            run = queue.pop(0)
            attempts[run.key] += 1
            in_flight[pool.submit(_train_in_worker, run.spec(), str(store.root))] = run
        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        broken = False
        for future in finished:
            run = in_flight.pop(future)
            error = future.exception()
            if error is None:
                progress.step()
            elif isinstance(error, BrokenProcessPool) and attempts[run.key] < MAX_ATTEMPTS:
                queue.insert(0, run)
                broken = True
            else:
                failures[run.key] = _describe(error)
                broken |= isinstance(error, BrokenProcessPool)
        if broken and executor is None:
            shutdown_workers()  # a dead worker breaks the pool: the next round starts a fresh one
    return failures


def _train_in_pool(missing: list[Run], store: Store, executor: Executor | None, label: str,
                   total: int) -> dict[str, str]:
    """:func:`_train_missing`, with labkit's workers kept from their idle stop meanwhile."""
    global _SWEEPS_RUNNING
    if executor is not None:
        return _train_missing(missing, store, executor, label, total)
    idle_seconds = _idle_seconds()  # a bad value fails here, before any training
    with _POOL_LOCK:
        _SWEEPS_RUNNING += 1
    try:
        return _train_missing(missing, store, executor, label, total)
    finally:
        with _POOL_LOCK:
            _SWEEPS_RUNNING -= 1
        _stop_when_idle(idle_seconds)


def _training_order(runs: Iterable[Run]) -> list[Run]:
    """The runs in the order to train them: the first seed of every configuration, then the
    second seed of every configuration, and so on.

    Runs that differ only by their seed compile the same XLA programs.  Trained side by
    side (the plan's order: a point's seeds one after another), two workers compile the
    same programs at the same time; one configuration after another, the first worker's
    compilation lands in the persistent compilation cache and the other seeds load it.
    A run's record does not depend on when it is trained.
    """
    by_config: dict[str, list[Run]] = {}
    for run in runs:
        config = json.dumps({k: v for k, v in run.spec().items() if k != "seed"}, sort_keys=True)
        by_config.setdefault(config, []).append(run)
    rounds = itertools.zip_longest(*by_config.values())
    return [run for round_ in rounds for run in round_ if run is not None]


#: How a run whose worker died is reported (``_describe``).
_WORKER_DIED = "its worker process died twice (killed, out of memory, or failing at start)"


def _describe(error: BaseException) -> str:
    if isinstance(error, BrokenProcessPool):
        return _WORKER_DIED
    return f"{type(error).__name__}: {error}"


def _unguarded_script_hint(messages: Iterable[str]) -> str:
    """The usual reason why workers die at start when the driver is a script.

    Each worker imports the script that started the sweep (as ``__mp_main__``): a
    script whose sweep is not under ``if __name__ == "__main__":`` starts it again from
    every worker, which multiprocessing refuses (its message is printed above ours).
    """
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script is None or _WORKER_DIED not in messages:
        return ""
    return (f"\nIf no worker was killed: each worker imports the script that started it ({script}); "
            'a script must start its sweeps under `if __name__ == "__main__":` '
            "(multiprocessing's own message is printed above).")


def sweep_results(make: Callable[..., Run], grid: Mapping[str, Sequence], seeds=1,
                  executor: Executor | None = None, store: Store | None = None,
                  label: str = "sweep") -> list[SweepItem]:
    """Train every grid point × seed that is not stored yet; return all results.

    ``make(**point)`` returns the ``Run`` of a point; the seed is set by the
    sweep.  ``executor`` is any ``concurrent.futures.Executor`` (e.g. dask's
    ``client.get_executor()``); by default labkit's own worker processes.
    """
    store = store or open_store()
    plan = _plan(make, grid, seeds)
    missing, stored = {}, {}
    for _, _, run in plan:
        if run.key not in missing and run.key not in stored:
            record = _stored(store, run.key)
            if record is None:
                missing[run.key] = run
            else:
                stored[run.key] = record  # read once: served below without a second parse
    if missing and require_cached():
        raise MissingRun(
            f"{len(missing)} of {len(plan)} runs of {label!r} are not in the store {store.root} "
            "and LABKIT_REQUIRE_CACHED=1 forbids training (first: "
            f"{next(iter(missing))[:12]}); unset it to train them"
        )
    if missing:
        _last_execution.remember(store.root, trained=True)
    started = time.perf_counter()
    failures = _train_in_pool(_training_order(missing.values()), store, executor, label, len(plan)) if missing else {}
    if missing:
        _log_sweep(store, label, len(plan), len(missing), len(failures), time.perf_counter() - started)
    if failures:
        lines = "\n".join(f"  - {key[:12]}: {message}" for key, message in failures.items())
        raise SweepError(
            f"{len(failures)} of {len(plan)} runs of {label!r} failed (the {len(plan) - len(failures)} "
            f"others are stored; re-running the sweep retries only the failed ones):\n{lines}"
            f"{_unguarded_script_hint(failures.values())}"
        )
    items = [SweepItem(point, seed, _result(store, run, stored.get(run.key))) for point, seed, run in plan]
    _mark_results_exist()
    return items


def _log_sweep(store: Store, label: str, runs: int, trained: int, failed: int, seconds: float) -> None:
    """Append the sweep's wall time to ``<store>/sweeps.jsonl``: the cold build's real cost.

    Runs record their own training time; only this log knows how long the
    parallel sweep took from the chapter's point of view.
    """
    entry = {"label": label, "document": os.environ.get("QUARTO_DOCUMENT_PATH", ""),
             "runs": runs, "trained": trained, "failed": failed, "wall_seconds": round(seconds, 2),
             "workers": _default_workers(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        with open(store.root / "sweeps.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")
    except OSError:
        pass  # the log is informative; a read-only store must not fail a finished sweep


def _stored(store: Store, key: str) -> dict | None:
    try:
        return store.load(key)
    except StoreError as error:
        if type(error).__name__ == "NewerFormat":
            raise
        print(f"[labkit] {error}; retraining", file=_env.terminal() or sys.stderr, flush=True)
        return None


def _result(store: Store, run: Run, stored: dict | None) -> Result:
    """The run's result: its record read before the sweep (cached), else the one just trained."""
    if stored is not None:
        return Result(run, stored, True)
    record = store.load(run.key)
    if record is None:
        raise SweepError(f"run {run.key[:12]} finished but its record is missing from {store.root}")
    return Result(run, record, False)


def _mark_results_exist() -> None:
    try:
        from labkit import report
    except ImportError:
        return
    mark = getattr(report, "mark_results_exist", None)
    if mark is not None:
        mark()


def _with_point(frame: pd.DataFrame, item: SweepItem) -> pd.DataFrame:
    """``frame`` with the item's grid values, seed, key and diverged flag as columns.

    Built in one constructor call (a copy then one assignment per column took twice
    as long); a grid name that is already a column replaces it in place, as an
    assignment would.
    """
    n = len(frame)
    columns = {name: frame[name] for name in frame.columns}
    columns.update({name: [value] * n for name, value in item.point.items()})
    columns.update(seed=item.seed, key=item.result.key, diverged=item.result.diverged)
    return pd.DataFrame(columns, index=frame.index)


def _tidy(items: list[SweepItem], part: Callable[[Result], pd.DataFrame], grid_names: list[str]) -> pd.DataFrame:
    frames = [_with_point(part(item.result), item) for item in items]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    leading = [*grid_names, "seed", "key", "diverged"]
    return frame[leading + [c for c in frame.columns if c not in leading]]


def sweep(make: Callable[..., Run], grid: Mapping[str, Sequence], seeds=1,
          executor: Executor | None = None, store: Store | None = None,
          label: str = "sweep") -> pd.DataFrame:
    """Run a grid × seeds and return one tidy history DataFrame.

    Columns: the grid's names, ``seed``, ``key``, ``diverged``, ``epoch``,
    ``split`` (train / validation / test), ``metric``, ``value``.
    """
    return history_frame(sweep_results(make, grid, seeds, executor=executor, store=store, label=label))


def history_frame(items: list[SweepItem]) -> pd.DataFrame:
    """The tidy history of ``sweep_results`` items: what ``sweep`` returns, without a second
    sweep when a chapter needs both the items (records, probes) and the frame."""
    if not items:
        raise ValueError("history_frame needs at least one sweep item")
    return _tidy(items, lambda result: result.history, list(items[0].point))


def probe_frame(items: list[SweepItem], name: str) -> pd.DataFrame:
    """The rows of probe ``name`` of every item, with the grid columns and seed."""
    if not items:
        raise ValueError("probe_frame needs at least one sweep item")
    return _tidy(items, lambda result: result.probe(name), list(items[0].point))
