"""labkit: the small library behind the lab book.

A chapter builds and compiles its Keras models, describes each training as a
:class:`Run` (plain data, hashed into a key), and asks :func:`sweep` for a grid of
them: stored runs are read back, missing ones are trained in parallel worker
processes by :func:`fit` (plain Keras), and the results come back as one tidy table.

    data      the two datasets, checked by content; seeded splits
    runs      Run, fit, train, Result: one training as data
    store     checked JSON records on disk; memo for results that are not runs
    sweep     grid × seeds in worker processes (loky), tidy frames
    probes    measurements inside a network during training
    models    parameters counted by hand next to Keras' count
    report    verdicts of expectations, guarded sentences, limits
    fr        French numbers for the prose (babel)
    charts    Altair figures: interactive on the site, PNG in the PDF
    settings  every LABKIT_* variable, checked where read
"""

from labkit import _env  # noqa: F401  (backend and XLA flags before anything imports Keras)

# Imported now, not lazily: ``labkit.sweep`` must be the function, and importing the module
# of the same name later (a worker unpickling a task does) would rebind the name to the module.
from labkit.sweep import sweep

__version__ = "0.2.0"

__all__ = ["Run", "Result", "fit", "train", "sweep", "memo", "choose", "__version__"]

_LAZY = {"Run": "runs", "Result": "runs", "fit": "runs", "train": "runs", "memo": "store",
         "choose": "settings"}


def __getattr__(name):
    # Lazy, so that `import labkit` does not import Keras (the command line does not need it).
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"labkit.{_LAZY[name]}"), name)
    if name in ("data", "runs", "store", "probes", "models", "report", "fr", "charts", "settings"):
        return importlib.import_module(f"labkit.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
