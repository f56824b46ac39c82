"""Datasets of the book (MNIST, California housing) and the seeded splits runs share.

Datasets are read from the data directory first (``LABKIT_DATA_DIR`` or
``<project>/data``), else downloaded through Keras / scikit-learn.  Splits are
described by plain values (seed, sizes) so that they enter a run's key.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labkit.paths import data_dir

__all__ = [
    "DATASETS",
    "DatasetUnavailable",
    "Split",
    "mnist",
    "california",
    "split",
    "split_sizes",
    "check_finite",
]

#: Names a run's ``data`` field accepts.
DATASETS = ("mnist", "california")
CALIFORNIA_TARGET = "MedHouseVal"
#: Rows of each dataset as published: MNIST (training, test) images, California block groups.
MNIST_ROWS = (60_000, 10_000)
CALIFORNIA_ROWS = 20_640


class DatasetUnavailable(RuntimeError):
    """A dataset is neither in the data directory nor downloadable."""


def _unavailable(name: str, expected: Path, cause: Exception) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"{name} is not in the data directory and could not be downloaded ({cause}).\n"
        f"Put a copy at {expected} (or set LABKIT_DATA_DIR to a folder that holds it), "
        "or run once with internet access so it is downloaded."
    )


@functools.lru_cache(maxsize=2)
def _mnist_arrays(folder: str):
    path = Path(folder) / "mnist.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:  # noqa: BLE001  (any download failure means the same thing here)
        raise _unavailable("MNIST", path, error) from error


def mnist(flatten: bool = True):
    """MNIST as ``(x_train, y_train), (x_test, y_test)``: float32 pixels in [0, 1].

    Images are flattened to 784 values by default (dense networks).  Reads
    ``<data>/mnist.npz`` (Keras' keys, no pickle) before asking Keras to download.
    The arrays are prepared once per process and shared, hence read-only: copy
    one before changing it.
    """
    return _mnist_prepared(str(data_dir()), flatten)


#: Names of the prepared MNIST arrays, in the order ``mnist()`` returns them.
_MNIST_PARTS = ("x_train", "y_train", "x_test", "y_test")
#: Bump when the preparation changes: older prepared copies are then ignored.
_PREPARED_VERSION = 1


@functools.lru_cache(maxsize=2)
def _mnist_prepared(folder: str, flatten: bool):
    """The prepared arrays, from the prepared copy when there is one.

    Decompressing the npz and converting 70,000 images to float32 takes about a
    second, in every worker of every sweep and in every chapter that reads
    labels.  The prepared copy is a set of ``.npy`` files mapped into memory
    (read-only, shared by the processes through the page cache), keyed by the
    npz's content; its values are the very floats computed here.
    """
    source = Path(folder) / "mnist.npz"
    cached = _prepared_folder(source, flatten)
    arrays = _read_prepared(cached, flatten) if cached is not None else None
    if arrays is None:
        arrays = _prepare_mnist(folder, flatten)
        if cached is not None:
            _write_prepared(cached, arrays)
    (x_train, y_train), (x_test, y_test) = arrays
    return ((_read_only(x_train), _read_only(y_train)), (_read_only(x_test), _read_only(y_test)))


def _prepared_folder(source: Path, flatten: bool) -> Path | None:
    """Where the prepared copy of ``source`` lives (None: no local npz to key it on)."""
    if not source.is_file():
        return None
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:24]
    from labkit.paths import data_cache_dir

    return data_cache_dir() / f"mnist-v{_PREPARED_VERSION}-{'flat' if flatten else 'images'}-{digest}"


def _expected_shapes(flatten: bool) -> list[tuple[tuple, str]]:
    """(shape, dtype) of each of ``_MNIST_PARTS``."""
    image = (784,) if flatten else (28, 28)
    n_train, n_test = MNIST_ROWS
    return [((n_train, *image), "float32"), ((n_train,), "int64"),
            ((n_test, *image), "float32"), ((n_test,), "int64")]


def _read_prepared(folder: Path, flatten: bool):
    """The prepared arrays, memory-mapped; None when missing or damaged (then rebuilt)."""
    arrays = []
    try:
        for name, (shape, dtype) in zip(_MNIST_PARTS, _expected_shapes(flatten)):
            array = np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False))
            if array.shape != shape or array.dtype != dtype:
                return None
            arrays.append(array)
    except (OSError, ValueError):
        return None
    x_train, y_train, x_test, y_test = arrays
    return (x_train, y_train), (x_test, y_test)


def _write_prepared(folder: Path, arrays) -> None:
    """Write the copy atomically (a folder renamed into place); a cache that cannot be
    written (read-only home, full disk) costs only the time it would have saved."""
    import shutil
    import tempfile

    (x_train, y_train), (x_test, y_test) = arrays
    staging = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
        for name, array in zip(_MNIST_PARTS, (x_train, y_train, x_test, y_test)):
            np.save(staging / f"{name}.npy", array, allow_pickle=False)
        if folder.exists():  # damaged, or written meanwhile by another process
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except OSError:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _prepare_mnist(folder: str, flatten: bool):
    (x_train, y_train), (x_test, y_test) = _mnist_arrays(folder)

    def prepare(x, what):
        x = x.astype("float32") / 255.0
        x = x.reshape(len(x), -1) if flatten else x
        check_finite(x, what)
        return x

    return ((prepare(x_train, "mnist x_train"), y_train.astype("int64")),
            (prepare(x_test, "mnist x_test"), y_test.astype("int64")))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=2)
def _california_frame(folder: str) -> pd.DataFrame:
    from sklearn.datasets import fetch_california_housing

    home = Path(folder) / "scikit_learn_data"
    try:
        bunch = fetch_california_housing(data_home=home, as_frame=True)
    except Exception as error:  # noqa: BLE001
        raise _unavailable("California housing", home / "cal_housing_py3.pkz", error) from error
    return bunch.frame


def california() -> pd.DataFrame:
    """California housing: 20,640 block groups, 8 features and ``MedHouseVal`` (100 k$)."""
    return _california_frame(str(data_dir())).copy()


@dataclass(frozen=True)
class Split:
    """Arrays of one seeded train / validation / test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...] = ()

    @property
    def sizes(self) -> dict:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def _validation_count(validation: float, n: int) -> int:
    if not 0 < validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1), got {validation!r}")
    return int(round(validation * n))


def _mnist_split(validation: float, train_size: int | None, seed: int) -> Split:
    """Split indices first, then gather each array once (a subset is not copied twice).

    ``train_test_split`` draws its permutation from ``y`` and the sample count
    only, so splitting ``arange(n)`` selects exactly the rows splitting ``x`` would.
    """
    from sklearn.model_selection import train_test_split

    (x, y), (x_test, y_test) = mnist()
    train, val = train_test_split(
        np.arange(len(y)), test_size=_validation_count(validation, len(y)), stratify=y, random_state=seed
    )
    if train_size is not None and train_size < len(train):
        train, _ = train_test_split(train, train_size=train_size, stratify=y[train], random_state=seed)
    return Split(x[train], y[train], x[val], y[val], x_test, y_test)


def _california_split(validation: float, train_size: int | None, seed: int, test: float) -> Split:
    from sklearn.model_selection import train_test_split

    frame = california()
    features = frame.drop(columns=CALIFORNIA_TARGET)
    x = features.to_numpy("float32")
    y = frame[CALIFORNIA_TARGET].to_numpy("float32")
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=_validation_count(validation, len(y)), random_state=seed
    )
    if train_size is not None and train_size < len(y_train):
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, tuple(features.columns))


@functools.lru_cache(maxsize=8)
def split(
    data: str = "mnist",
    validation: float = 0.1,
    train_size: int | None = None,
    seed: int = 0,
    test: float = 0.2,
) -> Split:
    """The seeded split that Keras runs and scikit-learn baselines share.

    MNIST: the official 10,000 test images; ``validation`` of the 60,000 training
    images carved out, stratified; then an optional stratified ``train_size``
    subset of the rest.  California: ``test`` of the rows held out, then
    ``validation`` (a fraction of all rows) carved from the remainder.  Cached
    per process: a worker loads each split once.  Do not modify the arrays.
    """
    if data not in DATASETS:
        raise ValueError(f"unknown dataset {data!r}; choose one of {', '.join(DATASETS)}")
    _check_train_size(train_size)
    if data == "mnist":
        return _mnist_split(validation, train_size, seed)  # mnist() checked its pixels once
    if not 0 < test < 1:
        raise ValueError(f"test must be a fraction in (0, 1), got {test!r}")
    result = _california_split(validation, train_size, seed, test)
    for name in ("x_train", "x_val", "x_test"):
        check_finite(getattr(result, name), f"{data} {name}")
    return result


def _check_train_size(train_size) -> None:
    if train_size is not None and (isinstance(train_size, bool) or not isinstance(train_size, int)
                                   or train_size < 10):
        raise ValueError(f"train_size must be an integer >= 10 or None, got {train_size!r}")


def split_sizes(
    data: str = "mnist",
    validation: float = 0.1,
    train_size: int | None = None,
    seed: int = 0,
    test: float = 0.2,
) -> dict:
    """``split(...).sizes`` without loading the dataset: the counts follow from the
    published row counts and the split's fractions (the seed only picks which rows).

    A chapter that only states its sizes re-executes without reading 55 MB of pixels.
    """
    del seed  # the same counts for every seed
    _check_train_size(train_size)
    if data == "mnist":
        rows, n_test = MNIST_ROWS
        n_val = _validation_count(validation, rows)
        n_train = rows - n_val
    elif data == "california":
        if not 0 < test < 1:
            raise ValueError(f"test must be a fraction in (0, 1), got {test!r}")
        n_test = math.ceil(test * CALIFORNIA_ROWS)  # scikit-learn rounds a test fraction up
        n_val = _validation_count(validation, CALIFORNIA_ROWS)
        n_train = CALIFORNIA_ROWS - n_test - n_val
    else:
        raise ValueError(f"unknown dataset {data!r}; choose one of {', '.join(DATASETS)}")
    if train_size is not None:
        n_train = min(n_train, train_size)
    return {"train": n_train, "validation": n_val, "test": n_test}


def check_finite(array: np.ndarray, what: str) -> None:
    """Reject NaN or infinite inputs: a data bug, not a diverging run."""
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])[:5].tolist()
        raise ValueError(
            f"{what} holds {int(bad.sum())} NaN or infinite values (first rows: {rows}); "
            "clean the data before training"
        )
