"""One compilation per XLA program across processes: the others wait, then read JAX's cache.

A cold sweep starts its workers on the same configuration at the same moment, so each
worker compiles the same programs (a training step: about 1.1 s here) at the same time, on
cores they share.  JAX's persistent compilation cache only helps a process that looks
*after* the write.  This module puts a file lock per cache key around JAX's cache-miss
path: the first process compiles and writes the entry; the next one, once the lock is
free, looks again and loads the program instead of compiling it.  A loaded program is the
compiled one, so no result changes; the duplicate compilation's time is saved.

It wraps one private JAX function, ``jax._src.compiler._compile_and_write_cache`` (JAX is
pinned in ``requirements.lock``).  When that function is missing or its parameters are not
the expected ones, nothing is wrapped and every process compiles on its own, as before.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

from filelock import FileLock

#: The parameters of the wrapped JAX function, in order (checked before wrapping).
_EXPECTED_PARAMETERS = ("backend", "computation", "executable_devices", "compile_options",
                        "host_callbacks", "module_name", "cache_key")


def install(lock_dir: Path) -> bool:
    """Serialise this process's cache misses with other processes' through ``lock_dir``.

    Returns whether the wrapper is in place (idempotent).
    """
    try:
        from jax._src import compiler
    except ImportError:
        return False
    original = getattr(compiler, "_compile_and_write_cache", None)
    read_cache = getattr(compiler, "_cache_read", None)
    if original is None or read_cache is None:
        return False
    if getattr(original, "labkit_lock_dir", None) is not None:
        return True
    if tuple(inspect.signature(original).parameters) != _EXPECTED_PARAMETERS:
        return False
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False

    @functools.wraps(original)
    def compile_once(backend, computation, executable_devices, compile_options, host_callbacks,
                     module_name, cache_key):
        with FileLock(lock_dir / f"{cache_key}.lock"):
            # Another process may have compiled this program while we waited for the lock.
            executable, _ = read_cache(module_name, cache_key, compile_options, backend,
                                       executable_devices)
            if executable is not None:
                return executable
            return original(backend, computation, executable_devices, compile_options,
                            host_callbacks, module_name, cache_key)

    compile_once.labkit_lock_dir = lock_dir
    compiler._compile_and_write_cache = compile_once
    return True
