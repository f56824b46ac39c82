"""``labkit.prepare_chapter``: what each chapter's set-up cell calls."""

import json
import os
import subprocess
import sys


def test_prepare_chapter_imports_keras_and_freezes_the_imports_out_of_gc_passes():
    """After it, a full collection skips Keras', JAX's, pandas' and Altair's objects (frozen),
    and the collector is on again (it is paused during the imports), unless it was off before."""
    code = ("import gc, json, sys, labkit; labkit.prepare_chapter(); "
            "state = [gc.get_freeze_count(), len(gc.get_objects()), gc.isenabled(), "
            "'keras' in sys.modules, 'altair' in sys.modules]; "
            "gc.disable(); labkit.prepare_chapter(); print(json.dumps(state + [gc.isenabled()]))")
    env = {**os.environ, "LABKIT_REQUIRE_CACHED": "1"}  # no workers: only the imports and the freeze
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    frozen, still_collected, enabled, keras, altair, enabled_after_off = json.loads(
        out.strip().splitlines()[-1])
    assert frozen > 100_000 and still_collected < frozen / 10
    assert enabled and keras and altair
    assert not enabled_after_off
