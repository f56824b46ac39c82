"""What must be true of a process before Keras or JAX is imported.

Keras picks its backend when it is imported and fails here without one, and XLA reads
its flags when JAX starts: every labkit module imports this one first.

XLA runs on one thread in every labkit process, the notebook's included.  Two
single-threaded workers train faster than one two-threaded process on these machines
(GUIDE §2), and a run then gives the same numbers whether it trains in a sweep worker
or in the notebook (XLA's multi-threaded kernels may sum in another order).  A user
who sets ``xla_cpu_multi_thread_eigen`` in ``XLA_FLAGS`` keeps their choice.

JAX's persistent compilation cache is on in every labkit process: a program compiled
once (a training step, a layer's weight initialiser) is loaded, not compiled again, by
the next process or the next execution of a chapter.  It changes no result.
"""

from __future__ import annotations

import os

SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def process_settings() -> dict[str, str]:
    """The variables every labkit process sets before Keras starts: the backend, XLA's
    flags and JAX's persistent compilation cache (JAX reads its settings from these
    variables when it is imported; a value the user set is kept)."""
    from labkit.settings import cache_dir

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        flags = f"{flags} {SINGLE_THREAD_XLA_FLAGS}".strip()
    defaults = {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
                "JAX_COMPILATION_CACHE_DIR": str(cache_dir("jax")),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return {**{name: os.environ.get(name, value) for name, value in defaults.items()}, "XLA_FLAGS": flags}


os.environ.update(process_settings())
