"""Two processes that need the same XLA program at the same moment compile it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# One process: labkit's compilation cache without the lock, then with it.  Twice it signals
# it is ready, waits for the go, then runs a program that is slow to compile: first
# ``without_lock``, then ``with_lock`` (another program, so the cache is cold again).
WORKER = r"""
import json, sys, time
from pathlib import Path
folder, name = Path(sys.argv[1]), sys.argv[2]
from labkit import _compile_once, _env
install = _compile_once.install
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

def slow_to_compile(x, shift):
    for i in range(40):
        x = jnp.tanh(x @ x.T + i + shift) * jnp.cos(x) + jnp.sort(x, axis=0)
    return x

def program_a(x):
    return slow_to_compile(x, 0.0)

def program_b(x):
    return slow_to_compile(x, 0.5)

def race(phase, program):
    (folder / f"ready-{phase}-{name}").touch()
    while not (folder / f"go-{phase}").exists():
        time.sleep(0.005)
    value = float(jax.jit(program)(x).sum())
    return {"compiled": sum(program.__name__ in c for c in compiled), "value": value}

x = jnp.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
without_lock = race("without_lock", program_a)
compiled.clear()
assert install(Path(jax.config.jax_compilation_cache_dir) / "locks")
with_lock = race("with_lock", program_b)
print(json.dumps({"without_lock": without_lock, "with_lock": with_lock}))
"""

NAMES = ("a", "b")


def _release(tmp_path: Path, phase: str, processes) -> None:
    """Wait until both processes are ready for ``phase``, then let them go at once."""
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{phase}-{name}").exists() for name in NAMES):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
            [p.communicate() for p in processes]
        time.sleep(0.01)
    (tmp_path / f"go-{phase}").touch()


def test_the_same_program_is_compiled_once_across_processes(tmp_path):
    """Two processes on one compilation cache need the same program at the same moment.
    Without the lock both miss the cache and compile (the control: the race is real); with
    it, the second one waits and loads the first one's program."""
    env = {**os.environ, "LABKIT_JAX_CACHE": str(tmp_path / "jax-cache")}
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), name], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in NAMES]
    for phase in ("without_lock", "with_lock"):
        _release(tmp_path, phase, processes)
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    for phase, compilations in (("without_lock", 2), ("with_lock", 1)):
        assert sum(o[phase]["compiled"] for o in outputs) == compilations, (phase, outputs)
        assert outputs[0][phase]["value"] == outputs[1][phase]["value"]


def test_nothing_is_wrapped_when_jax_changed(monkeypatch, tmp_path):
    """A JAX whose private function has other parameters is left alone (compiles as before)."""
    from jax._src import compiler

    from labkit import _compile_once

    def other_signature(backend, computation, options):
        return None

    monkeypatch.setattr(compiler, "_compile_and_write_cache", other_signature)
    assert _compile_once.install(tmp_path / "locks") is False
    assert compiler._compile_and_write_cache is other_signature
