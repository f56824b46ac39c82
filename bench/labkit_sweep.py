"""The labkit side: the grid of ``plain_keras.py`` as one ``labkit.sweep``, as a chapter writes it.

``bench/run.py`` runs it as a new process with an empty run store (``LABKIT_RUNS_DIR``)
and an empty JAX compilation cache (``LABKIT_CACHE_DIR``), so worker start-up and
compilation are included.  Prints one JSON line: the sweep's wall time and each run's
epoch times, from the records the driver stored.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import labkit  # noqa: E402  (sets KERAS_BACKEND before Keras is imported)
from common import compiled_mlp  # noqa: E402  (bench/common.py: the model plain_keras.py trains)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lrs", type=float, nargs="+", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=None)
    args = parser.parse_args()

    def experiment(lr):
        return labkit.Run(compiled_mlp(lr), data="mnist", epochs=args.epochs, batch_size=args.batch_size,
                          train_size=args.train_size)

    start = time.perf_counter()
    results = labkit.sweep(experiment, {"lr": args.lrs}, label="bench")
    swept = time.perf_counter() - start
    runs = [{"lr": item.point["lr"], "fit_seconds": item.result.record["seconds"],
             "epoch_seconds": item.result.epoch_seconds, "trained": not item.result.cached}
            for item in results]
    print(json.dumps({"sweep_seconds": swept, "runs": runs, "total_seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
