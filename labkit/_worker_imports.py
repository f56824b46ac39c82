"""What a sweep worker imports, imported once by the fork server the workers are forked from.

On Linux, workers are forked from a server process (``multiprocessing``'s fork server)
that imported this module: Keras, JAX and labkit's training code, 4–5 s of CPU on these
machines, are loaded once rather than once per worker, and a worker starts in a fraction of
a second.  Forking after these imports is safe: they start no thread and do not create
JAX's backend (each worker creates its own).  Elsewhere, workers are spawned and import
the stack themselves (:func:`import_stack`, called by every worker at start).
"""

from labkit import _env


def import_stack() -> None:
    """Import Keras, JAX and labkit's training code, then keep them out of garbage collections."""
    with _env.imports_out_of_gc():
        import keras  # noqa: F401

        from labkit import probes, runs  # noqa: F401


try:
    import_stack()
except Exception:  # noqa: BLE001
    # An error here would stop the fork server with an obscure message.  Every worker
    # calls import_stack() again at start: that call raises it with its real traceback.
    pass
