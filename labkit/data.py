"""The book's two datasets, checked by content, and the seeded splits every run shares.

A run's key names its dataset (``mnist`` or ``california``) but not the files it was
read from, so labkit accepts only the genuine datasets: the arrays loaded must have the
published content (a sha256 of the arrays, not of the file: the same arrays come in
differently packed files, and a genuine download must pass).  Anything else is refused
with a message naming the file and how to get the real one, before any training.

Files are read from the data directory (``LABKIT_DATA_DIR``, default ``<project>/data``),
else downloaded through Keras or scikit-learn.  Nothing is unpickled unchecked:
scikit-learn caches California housing as a pickle, which is first read with an
unpickler that admits only NumPy arrays.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import settings

__all__ = ["DATASETS", "TARGET", "TEST_FRACTION", "DatasetError", "Split", "mnist", "mnist_source",
           "california", "split", "split_sizes"]

DATASETS = ("mnist", "california")
TARGET = "MedHouseVal"
TEST_FRACTION = 0.2  #: California rows held out for test by every run (its key does not record it)
MNIST_ROWS = (60_000, 10_000)
CALIFORNIA_ROWS = 20_640
CALIFORNIA_CACHE_BYTES = 4 * 2**20  # scikit-learn's cache: 0.4 MB, 1.5 MB once decompressed
#: sha256 of the genuine arrays (see ``_digest``): Keras' MNIST as uint8, the same prepared
#: as float32 in [0, 1] and int64 labels, and scikit-learn's California housing frame.
MNIST_SHA256 = "52cd6c10ae77107af32269dd9d10ca19c1b749e83235a0c75e2f0729ebeaf141"
PREPARED_SHA256 = "f71f8e40803e8833437ecfb507a838ab43507cc0fd78fbe0212010398a32cc9d"
CALIFORNIA_SHA256 = "5d0e59946a5795729246cff64e217e3b6cb4540f40ce5374446ee7f284c4b2ec"


class DatasetError(RuntimeError):
    """A dataset that is missing, damaged or not the genuine one (the message says what to do)."""


def _digest(arrays) -> str:
    """sha256 of arrays' dtypes, shapes and bytes: identical for identical content."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _refuse(path: Path, problem: str) -> DatasetError:
    return DatasetError(
        f"{path}: {problem}. labkit trains only on the genuine dataset (a run's key does not "
        f"record the file). Delete or replace this file with the genuine one, or point "
        "LABKIT_DATA_DIR at a folder that holds it; with internet access and no file, "
        "labkit downloads it through Keras / scikit-learn.")


def _read_only(arrays):
    """Lock arrays shared by every caller: a change in place would leak into later calls."""
    for array in arrays:
        if isinstance(array, np.ndarray) and array.flags.writeable:
            array.flags.writeable = False
    return arrays


# -- MNIST -------------------------------------------------------------------------------
def mnist_source(folder: Path):
    """Keras' MNIST, read from ``folder/mnist.npz`` (else downloaded), refused unless genuine.
    ``labkit doctor --verify`` calls it: :func:`mnist` serves its prepared copy without the file."""
    path = folder / "mnist.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as arrays:
                parts = [arrays[name] for name in ("x_train", "y_train", "x_test", "y_test")]
        except Exception as error:  # noqa: BLE001  (BadZipFile, EOFError, KeyError, ValueError...)
            raise _refuse(path, f"cannot be read as Keras' mnist.npz ({type(error).__name__}: {error})") from None
    else:
        import keras

        try:
            parts = [array for pair in keras.datasets.mnist.load_data() for array in pair]
        except Exception as error:  # noqa: BLE001  (any download failure means the same here)
            raise DatasetError(f"MNIST is not at {path} and could not be downloaded ({error}); copy "
                               "Keras' mnist.npz there, set LABKIT_DATA_DIR, or run once online") from None
        path = "Keras' download"
    if _digest(parts) != MNIST_SHA256:
        raise _refuse(Path(path), "its arrays are not the genuine MNIST (content differs)")
    return (parts[0], parts[1]), (parts[2], parts[3])


def _prepare(source):
    (x_train, y_train), (x_test, y_test) = source
    flat = [x.astype("float32").reshape(len(x), -1) / 255.0 for x in (x_train, x_test)]
    return flat[0], y_train.astype("int64"), flat[1], y_test.astype("int64")


def _read_prepared(folder: Path):
    try:
        arrays = [np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                  for name in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, EOFError):  # missing, truncated, not an .npy file
        return None
    return arrays if _digest(arrays) == PREPARED_SHA256 else None


def _write_prepared(folder: Path, arrays) -> None:
    """Write the prepared copy atomically (a folder renamed into place); failing only costs time."""
    staging = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
        for name, array in zip(("x_train", "y_train", "x_test", "y_test"), arrays):
            np.save(staging / f"{name}.npy", array, allow_pickle=False)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except OSError:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _mnist(folder: str):
    """Converting 70,000 images to float32 takes about a second in every worker, so the
    result is kept as memory-mapped ``.npy`` files shared through the page cache.  That
    copy is served only while its content hashes to :data:`PREPARED_SHA256`."""
    cached = settings.cache_dir("data") / "mnist-prepared-v1"
    arrays = _read_prepared(cached)
    if arrays is None:
        arrays = _prepare(mnist_source(Path(folder)))
        _write_prepared(cached, arrays)
    return tuple(_read_only(arrays))


def mnist():
    """``(x_train, y_train), (x_test, y_test)``: 784 float32 pixels in [0, 1], int64 labels.

    The arrays are shared read-only: copy one before changing it.
    """
    x_train, y_train, x_test, y_test = _mnist(str(settings.data_dir()))
    return (x_train, y_train), (x_test, y_test)


# -- California housing ----------------------------------------------------------------
class _ArraysOnly:
    """An unpickler mix-in that refuses every global but the few a pickled NumPy array
    needs: reading a crafted file runs no code."""

    ALLOWED = {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def _vet_pickle(path: Path) -> None:
    """Read scikit-learn's cache with :class:`_ArraysOnly` before scikit-learn unpickles it.

    The cache is a zlib-compressed joblib pickle whose array bytes follow their wrapper
    in the stream; the globals a pickle names are what could run code, and each must be
    one of the allowed array types (joblib routes the nested pickle of an object array
    through the same check).  Its size is bounded before anything is decompressed.
    """
    try:
        with open(path, "rb") as file:
            inflate = zlib.decompressobj()
            raw = inflate.decompress(file.read(CALIFORNIA_CACHE_BYTES), CALIFORNIA_CACHE_BYTES)
    except (OSError, zlib.error) as error:
        raise _refuse(path, f"is not scikit-learn's compressed cache ({error})") from None
    if inflate.unconsumed_tail:
        raise _refuse(path, "is larger than scikit-learn's California cache")
    import io

    from joblib.numpy_pickle import NumpyUnpickler

    class Vetted(_ArraysOnly, NumpyUnpickler):
        pass

    try:
        array = Vetted(str(path), io.BytesIO(raw), ensure_native_byte_order=True).load()
    except Exception as error:  # noqa: BLE001  (refused global, truncated stream...)
        raise _refuse(path, f"is not a pickled array ({error})") from None
    if not isinstance(array, np.ndarray) or array.shape != (CALIFORNIA_ROWS, 9):
        raise _refuse(path, "does not hold the 20,640 × 9 California table")


@functools.lru_cache(maxsize=1)
def _california(folder: str) -> pd.DataFrame:
    from sklearn.datasets import fetch_california_housing

    home = Path(folder) / "scikit_learn_data"
    cache = home / "cal_housing_py3.pkz"
    if cache.exists():
        _vet_pickle(cache)
    try:
        frame = fetch_california_housing(data_home=home, as_frame=True).frame
    except Exception as error:  # noqa: BLE001
        raise DatasetError(f"California housing is not at {cache} and could not be downloaded "
                           f"({error}); copy scikit-learn's cache there, set LABKIT_DATA_DIR, or "
                           "run once online") from None
    if _digest([frame.to_numpy("float64")]) != CALIFORNIA_SHA256:
        raise _refuse(cache, "its table is not the genuine California housing (content differs)")
    return frame


def california() -> pd.DataFrame:
    """California housing: 20,640 block groups, 8 features and ``MedHouseVal`` (100 k$)."""
    return _california(str(settings.data_dir())).copy()


# -- splits ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """The arrays of one seeded train / validation / test split: shared, so read-only."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...] = ()

    def __post_init__(self):
        _read_only(vars(self).values())

    @property
    def sizes(self) -> dict:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def _check(data, validation, train_size, test) -> None:
    if data not in DATASETS:
        raise ValueError(f"unknown dataset {data!r}; choose one of {', '.join(DATASETS)}")
    for name, value in (("validation", validation), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")
    if train_size is not None and (isinstance(train_size, bool) or not isinstance(train_size, int)
                                   or train_size < 10):
        raise ValueError(f"train_size must be an integer >= 10 or None, got {train_size!r}")


def split(data: str = "mnist", validation: float = 0.1, train_size: int | None = None,
          seed: int = 0, test: float = TEST_FRACTION) -> Split:
    """The split that Keras runs and scikit-learn baselines share, cached per process
    (and per data directory).

    MNIST: the official 10,000 test images; ``validation`` of the 60,000 training images
    held out, stratified by class; then an optional stratified ``train_size`` subset of
    the rest.  California: ``test`` of the rows held out (runs: :data:`TEST_FRACTION`), then
    ``validation`` (a fraction of all rows) from the remainder, then the first ``train_size`` rows.
    """
    _check(data, validation, train_size, test)
    return _split(str(settings.data_dir()), data, validation, train_size, seed, test)


@functools.lru_cache(maxsize=8)
def _split(folder: str, data: str, validation: float, train_size: int | None, seed: int, test: float) -> Split:
    from sklearn.model_selection import train_test_split

    if data == "mnist":
        (x, y), (x_test, y_test) = mnist()
        # Splitting indices draws the same rows as splitting x (only y and n are used).
        train, val = train_test_split(np.arange(len(y)), test_size=int(round(validation * len(y))),
                                      stratify=y, random_state=seed)
        if train_size is not None and train_size < len(train):
            train, _ = train_test_split(train, train_size=train_size, stratify=y[train], random_state=seed)
        return Split(x[train], y[train], x[val], y[val], x_test, y_test)
    frame = california()
    features = frame.drop(columns=TARGET)
    x, y = features.to_numpy("float32"), frame[TARGET].to_numpy("float32")
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=int(round(validation * len(y))), random_state=seed)
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, tuple(features.columns))


def split_sizes(data: str = "mnist", validation: float = 0.1, train_size: int | None = None) -> dict:
    """``split(...).sizes`` from the published row counts, without loading anything (any seed)."""
    _check(data, validation, train_size, TEST_FRACTION)
    if data == "mnist":
        rows, n_test = MNIST_ROWS
    else:
        rows, n_test = CALIFORNIA_ROWS, math.ceil(TEST_FRACTION * CALIFORNIA_ROWS)  # scikit-learn rounds up
    n_val = int(round(validation * rows))
    n_train = rows - n_val - (n_test if data == "california" else 0)
    return {"train": min(n_train, train_size or n_train), "validation": n_val, "test": n_test}
