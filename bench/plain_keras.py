"""The reference: the plain sequential Keras loop a student writes, one model per learning rate.

Run as a fresh process by ``bench/run.py`` (cold: imports, data, compilation
included).  Keras on JAX with XLA's default multi-threading; MNIST loaded once
from the npz; the same stratified 10 % validation split as labkit's
(``labkit.data``); ``validation_data=``, batch 128, ``verbose=0``.  The only
additions to what a student types are the timers and the JSON line printed at
the end for the benchmark.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


def load_mnist(path: str, validation: float = 0.1):
    with np.load(path) as f:
        x, y = f["x_train"], f["y_train"]
    x = x.reshape(len(x), -1).astype("float32") / 255.0
    return train_test_split(x, y.astype("int64"), test_size=int(round(validation * len(y))),
                            stratify=y, random_state=0)


def build_model():
    return keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="path of mnist.npz")
    parser.add_argument("--lrs", type=float, nargs="+", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    imported = time.perf_counter() - START
    x_train, x_val, y_train, y_val = load_mnist(args.data)
    loaded = time.perf_counter() - START
    fits = []
    for lr in args.lrs:
        keras.utils.set_random_seed(0)
        model = build_model()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
                            batch_size=args.batch_size, verbose=0)
        fits.append({"lr": lr, "seconds": time.perf_counter() - start,
                     "val_accuracy": float(history.history["val_accuracy"][-1])})
    print(json.dumps({"import_seconds": imported, "ready_seconds": loaded, "fits": fits,
                      "train_size": len(y_train), "validation_size": len(y_val),
                      "total_seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
