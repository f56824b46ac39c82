"""Process set-up that must happen before Keras or JAX is imported.

Keras picks its backend at import time and fails here without one (TensorFlow is
absent), so every entry point of labkit imports this module first.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
# Keep C++ log lines out of rendered pages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: XLA flags that make one process use one core: two such workers beat one
#: two-threaded process on these machines (GUIDE §2).
SINGLE_THREAD_XLA_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)


def make_single_threaded() -> None:
    """Restrict XLA to one thread; only effective before JAX is imported."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + SINGLE_THREAD_XLA_FLAGS).strip()
