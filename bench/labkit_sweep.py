"""The labkit side: the same grid as ``plain_keras.py``, as one ``labkit.sweep``.

Run as a fresh process by ``bench/run.py`` with an empty run store
(``LABKIT_RUNS_DIR``) and an empty JAX compilation cache (``LABKIT_JAX_CACHE``),
so worker start-up and compilation are included.  Like the chapters, it calls
``prepare_chapter()`` first: the workers start while it imports Keras.  Prints one JSON line: the
driver's timings and, from the records the workers wrote, each run's timing
(process id, time in ``execute``, in ``fit``, per epoch) to see where time goes.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import labkit  # noqa: E402

if __name__ == "__main__":  # (spawned workers import this file too)
    labkit.prepare_chapter()  # as the chapters do: workers start while this script imports Keras

from labkit import Run, sweep  # noqa: E402

from labkit.models import mlp  # noqa: E402
from labkit.runs import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lrs", type=float, nargs="+", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    imported = time.perf_counter() - START

    def make(lr):
        return Run(model=mlp(hidden=(256, 128)), data="mnist", validation=0.1, epochs=args.epochs,
                   batch_size=args.batch_size, optimizer="sgd", learning_rate=lr, seed=0)

    make(args.lrs[0])  # the driver's first Run imports Keras: timed apart from the sweep
    ready = time.perf_counter() - START
    start = time.perf_counter()
    frame = sweep(make, {"lr": args.lrs}, label="bench")
    swept = time.perf_counter() - start
    store = open_store()
    runs = [_timing(store.load(key)) for key in frame["key"].unique()]
    print(json.dumps({"import_seconds": imported, "ready_seconds": ready, "sweep_seconds": swept,
                      "runs": runs, "total_seconds": time.perf_counter() - START}))


def _timing(record: dict) -> dict:
    return {"lr": record["spec"]["learning_rate"], "pid": record["platform"]["pid"],
            "compute_seconds": record.get("compute_seconds"), "fit_seconds": record["seconds"],
            "epoch_seconds": record["epoch_seconds"], "epochs": record["epochs_run"],
            "val_accuracy": record["final"]["validation"].get("accuracy")}


if __name__ == "__main__":
    main()
