"""What must be true of a process before Keras or JAX is imported.

Keras picks its backend when it is imported and fails here without one, and XLA reads
its flags when JAX starts: every labkit module imports this one first.

XLA runs on one thread in every labkit process, the notebook's included.  Two
single-threaded workers train faster than one two-threaded process on these machines
(GUIDE §2), and a run then gives the same numbers whether it trains in a sweep worker
or in the notebook (XLA's multi-threaded kernels may sum in another order).  A user
who sets ``xla_cpu_multi_thread_eigen`` in ``XLA_FLAGS`` keeps their choice.
"""

from __future__ import annotations

import os

SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def process_settings(environ=os.environ) -> dict[str, str]:
    """The variables every labkit process sets before Keras starts: backend and XLA flags."""
    flags = environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        flags = f"{flags} {SINGLE_THREAD_XLA_FLAGS}".strip()
    return {"KERAS_BACKEND": environ.get("KERAS_BACKEND", "jax"), "XLA_FLAGS": flags,
            "TF_CPP_MIN_LOG_LEVEL": environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


os.environ.update(process_settings())

_cache_enabled = False


def enable_compilation_cache(folder) -> None:
    """Turn on JAX's persistent compilation cache (a public JAX setting) in ``folder``.

    A training step compiles in about a second; with the cache a second process or a
    second run of the same shapes loads it instead.  Results do not change.
    """
    global _cache_enabled
    if _cache_enabled:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return  # no writable cache: every process compiles, results are the same
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _cache_enabled = True
