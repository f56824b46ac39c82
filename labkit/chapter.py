"""What a chapter's hidden set-up cell calls once: :func:`prepare_chapter`.

A chapter's kernel imports Keras, JAX, pandas and Altair: about 260,000 objects
that live as long as the kernel.  Python's cyclic garbage collector walks every
one of them at each full collection (0.27 s here), and a chapter triggers several:
allocation counts set them off, and Quarto's ``%reset`` at the start of each
re-execution forces one.  Measured on chapter C re-executed warm in a kept-alive
kernel: 1.3 s of its 6.0 s went to four full collections.  ``gc.freeze()`` moves
the objects alive at that point to a permanent generation the collector skips:
the same four collections then took 0.05 s.

The price: an object frozen here that later becomes part of unreachable cycles is
not reclaimed.  The frozen objects are the imported modules and the state left by
an earlier execution of the chapter, which a kernel keeps anyway; the chapter's own
tables, charts and models are created after the freeze and collected as usual.
"""

from __future__ import annotations

from labkit import _env

__all__ = ["prepare_chapter"]


def prepare_chapter() -> None:
    """Start the sweep workers, import what every chapter uses, then freeze it out of GC passes.

    Called first in a chapter's set-up cell.  Workers first, so that their start-up
    overlaps the imports (:func:`labkit.start_workers`); then Keras, which every chapter
    loads to build its networks, and the labkit modules the chapters use.  Collection
    is paused while they import (each full collection during the imports walks the
    growing set again: importing them took 3.5–3.8 s instead of 4.4–4.7 s); they are
    then frozen.  Calling it again (a kept-alive kernel re-executing the chapter) only
    freezes what survived the previous execution.
    """
    with _env.imports_out_of_gc():
        from labkit.sweeps import start_workers

        start_workers()
        import keras  # noqa: F401

        from labkit import charts, fmt, models, profile, report, runs, sweeps  # noqa: F401
