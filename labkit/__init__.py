"""labkit: the small library behind the lab book.

A chapter declares runs (plain data), labkit trains the missing ones in parallel
workers, stores each result as a JSON record and hands back tidy DataFrames for
charts and verdicts.  ``KERAS_BACKEND`` is set to ``jax`` before Keras loads.
"""

from labkit import _env  # noqa: F401  (sets KERAS_BACKEND before anything imports Keras)

__version__ = "0.1.0"

__all__ = ["Run", "Result", "train", "sweep", "sweep_results", "history_frame", "probe_frame",
           "start_workers", "prepare_chapter", "memo", "__version__"]


#: Submodules reachable as ``labkit.<name>`` without importing them first.
_SUBMODULES = ("data", "models", "runs", "sweeps", "store", "charts", "report", "fmt", "profile",
               "paths", "probes", "quarto", "book", "cache", "cli", "chapter")


def __getattr__(name):
    # Lazy: `import labkit` stays cheap (the CLI, the worker start-up, the tests).
    if name in ("Run", "Result", "train"):
        from labkit import runs

        return getattr(runs, name)
    if name in ("sweep", "sweep_results", "history_frame", "probe_frame", "start_workers"):
        from labkit import sweeps as sweep_module

        return getattr(sweep_module, name)
    if name == "prepare_chapter":
        from labkit.chapter import prepare_chapter

        return prepare_chapter
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"labkit.{name}")
    if name == "memo":
        from labkit.cache import memo

        return memo
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
