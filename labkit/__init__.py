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

# Imported now (none imports Keras): ``labkit.sweep`` must stay the function, which a later import
# of the module of the same name (a worker unpickling a task) would otherwise rebind.
from labkit.runs import Result, Run, fit, train  # noqa: E402
from labkit.settings import choose  # noqa: E402
from labkit.store import memo  # noqa: E402
from labkit.sweep import sweep  # noqa: E402

__version__ = "0.2.0"

__all__ = ["Run", "Result", "fit", "train", "sweep", "memo", "choose", "__version__"]


def __getattr__(name):
    # Lazy, so that `import labkit` does not import Keras (the command line does not need it).
    import importlib

    if name in ("data", "runs", "store", "probes", "models", "report", "fr", "charts", "settings"):
        return importlib.import_module(f"labkit.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
