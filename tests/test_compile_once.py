"""Two processes that need the same XLA program at the same moment compile it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# One process: set up labkit's compilation cache (or not), count XLA compilations,
# signal it is ready, wait for the go, then run a function that is slow to compile.
WORKER = r"""
import json, os, sys, time
from pathlib import Path
folder, name, lock = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "lock"
from labkit import _compile_once, _env
if not lock:
    _compile_once.install = lambda lock_dir: False
_env.enable_compilation_cache()
import jax, jax.numpy as jnp
from jax._src import compiler

compiled = []
original = compiler.backend_compile_and_load
def counting(backend, computation, *args, **kwargs):
    compiled.append(str(computation.operation.attributes["sym_name"]))
    return original(backend, computation, *args, **kwargs)
compiler.backend_compile_and_load = counting

def slow_to_compile(x):
    for i in range(40):
        x = jnp.tanh(x @ x.T + i) * jnp.cos(x) + jnp.sort(x, axis=0)
    return x

x = jnp.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
(folder / f"ready-{name}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
value = float(jax.jit(slow_to_compile)(x).sum())
print(json.dumps({"compiled": [c for c in compiled if "slow_to_compile" in c], "value": value}))
"""


def _race(tmp_path: Path, lock: bool) -> list[dict]:
    """Start two processes on one compilation cache and release them at the same moment."""
    env = {**os.environ, "LABKIT_JAX_CACHE": str(tmp_path / "jax-cache")}
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), name,
                                   "lock" if lock else "no-lock"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{name}").exists() for name in ("a", "b")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
            [p.communicate() for p in processes]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


@pytest.mark.parametrize("lock, compilations", [(True, 1), (False, 2)],
                         ids=["with-lock", "without-lock-both-compile"])
def test_the_same_program_is_compiled_once_across_processes(tmp_path, lock, compilations):
    """Without the lock both processes miss the cache and compile (the control, which shows
    the race is real); with it, the second one waits and loads the first one's program."""
    outputs = _race(tmp_path, lock)
    assert sum(len(o["compiled"]) for o in outputs) == compilations
    assert outputs[0]["value"] == outputs[1]["value"]


def test_nothing_is_wrapped_when_jax_changed(monkeypatch, tmp_path):
    """A JAX whose private function has other parameters is left alone (compiles as before)."""
    from jax._src import compiler

    from labkit import _compile_once

    def other_signature(backend, computation, options):
        return None

    monkeypatch.setattr(compiler, "_compile_and_write_cache", other_signature)
    assert _compile_once.install(tmp_path / "locks") is False
    assert compiler._compile_and_write_cache is other_signature
