"""The reference: the plain sequential Keras loop a student writes, one model per learning rate.

``bench/run.py`` runs it as a new process (imports, data and compilation included).
Keras on JAX with XLA's default multi-threading, MNIST read from its npz with labkit's
validation split, batch 128, ``verbose=0``; the model is in ``common.py``, shared with
labkit's side.  The only additions to what a student types are the timers and the JSON
line printed at the end.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

from common import compiled_mlp, load_mnist  # noqa: E402  (bench/common.py: labkit's split, the model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="path of mnist.npz")
    parser.add_argument("--lrs", type=float, nargs="+", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=None)
    args = parser.parse_args()
    x_train, x_val, y_train, y_val = load_mnist(args.data, args.train_size)
    fits = []
    for lr in args.lrs:
        keras.utils.set_random_seed(0)
        model = compiled_mlp(lr)
        start = time.perf_counter()
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
                            batch_size=args.batch_size, verbose=0)
        fits.append({"lr": lr, "seconds": time.perf_counter() - start,
                     "val_accuracy": history.history["val_accuracy"][-1]})
    print(json.dumps({"fits": fits, "train_size": len(y_train), "validation_size": len(y_val),
                      "total_seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
