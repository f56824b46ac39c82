"""Process set-up that must happen before Keras or JAX is imported.

Keras picks its backend at import time and fails here without one (TensorFlow is
absent), so every entry point of labkit imports this module first.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
# Keep C++ log lines out of rendered pages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: XLA flags that make one process use one core: two such workers beat one
#: two-threaded process on these machines (GUIDE §2).
SINGLE_THREAD_XLA_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)


def make_single_threaded() -> None:
    """Restrict XLA to one thread; only effective before JAX is imported.

    An ``xla_cpu_multi_thread_eigen`` already in ``XLA_FLAGS`` is the user's choice and wins.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + SINGLE_THREAD_XLA_FLAGS).strip()


# The driver (a chapter's kernel) runs XLA on one thread like its workers.  JAX's
# persistent compilation cache keys include XLA_FLAGS: with the same flags, the weight
# initialisers a driver compiles when it builds a sweep's models are cache hits when
# the workers rebuild the same models.  Training happens in the workers, so the driver
# loses nothing; in-process ``train()`` gives the same record either way (tested).
make_single_threaded()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextlib.contextmanager
def imports_out_of_gc():
    """Import inside this block with the cyclic garbage collector paused, then freeze
    everything alive so that later full collections skip it.

    Imported modules live as long as the process; each full collection walked them all
    (about 260,000 objects once Keras, JAX, pandas and Altair are in, 0.27 s here), during
    the imports and at every collection after.  Why and what it costs: :mod:`labkit.chapter`.
    A collector that was off stays off.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        gc.freeze()


_CACHE_ENABLED = False


def enable_compilation_cache() -> None:
    """Use JAX's persistent compilation cache: runs of one shape compile once, ever.

    Compilation (≈ 1 s a run) repeats for identical shapes in new processes and
    new models; the cache changes no result, only the time to the first step.
    """
    global _CACHE_ENABLED
    if _CACHE_ENABLED:
        return
    import jax

    from labkit.paths import jax_cache_dir

    try:
        folder = jax_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: compile every time, results are the same
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # Workers starting the same configuration compile each program once between them.
    from labkit import _compile_once

    _compile_once.install(folder / "locks")
    _CACHE_ENABLED = True


def terminal():
    """A stream to the terminal that never reaches a notebook or a rendered page.

    In a Jupyter kernel even ``sys.__stderr__`` is captured (ipykernel forwards
    file descriptor 2 to the notebook); its ``_original_stdstream_copy`` is the
    terminal Quarto or Jupyter was started from.  ``None`` when there is none.
    """
    fd = getattr(sys.stderr, "_original_stdstream_copy", None)
    if fd is not None:
        try:
            return os.fdopen(os.dup(fd), "w", buffering=1)
        except OSError:
            return None
    if "ipykernel" in sys.modules:
        return None
    return sys.__stderr__
