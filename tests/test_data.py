"""labkit.data: only the genuine datasets are served, whatever the data directory holds; the
prepared copy is checked too; splits are seeded and their sizes known without loading."""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from labkit import data
from labkit.data import DatasetError

SHARED = Path(os.environ["LABKIT_DATA_DIR"])


def clear_caches():
    for cached in (data._mnist, data._california, data._split):
        cached.cache_clear()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data directory and prepared-data cache; nothing loaded in this process yet."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("LABKIT_DATA_DIR", str(folder))
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    clear_caches()
    yield folder
    clear_caches()


@pytest.fixture(scope="module")
def genuine():
    """Keras' MNIST arrays as stored in ``mnist.npz``."""
    with np.load(SHARED / "mnist.npz", allow_pickle=False) as arrays:
        return {name: arrays[name] for name in ("x_train", "y_train", "x_test", "y_test")}


def assert_refused(path: Path, figures, *words):
    with figures.no_crash(), pytest.raises(DatasetError) as error:
        data.mnist() if path.name == "mnist.npz" else data.california()
    message = str(error.value)
    assert str(path) in message and "LABKIT_DATA_DIR" in message, message
    for word in words:
        assert word in message, message
    figures.add(inputs=1, served=0)
    return message


def test_a_valid_but_different_mnist_is_refused(data_dir, genuine, figures):
    np.savez_compressed(data_dir / "mnist.npz", **{k: v[:1000] for k, v in genuine.items()})
    assert_refused(data_dir / "mnist.npz", figures, "not the genuine MNIST", "genuine one")


def test_the_same_arrays_packed_otherwise_are_accepted(data_dir, genuine):
    np.savez(data_dir / "mnist.npz", **genuine)  # uncompressed, unlike Keras' file
    (x_train, y_train), (x_test, y_test) = data.mnist()
    assert x_train.shape == (60_000, 784) and x_train.dtype == np.float32
    assert np.array_equal(y_test, genuine["y_test"]) and np.array_equal(x_test[0] * 255, genuine["x_test"][0].ravel())
    assert round(float(x_train.mean()), 4) == 0.1307


def npz_without(genuine, name):
    def write(path):
        np.savez(path, **{k: v for k, v in genuine.items() if k != name})
    return write


DAMAGED_NPZ = {
    "truncated": lambda path: path.write_bytes((SHARED / "mnist.npz").read_bytes()[:300_000]),
    "garbage": lambda path: path.write_bytes(os.urandom(4096)),
    "empty": lambda path: path.write_bytes(b""),
    "a folder": lambda path: path.mkdir(),
    "object arrays": lambda path: np.savez(path, x_train=np.array([object()], dtype=object)),
    "a zip of text": lambda path: zipfile.ZipFile(path, "w").writestr("x_train.npy", "not an array"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_NPZ) + ["missing x_test"])
def test_a_damaged_mnist_names_the_file_and_the_fix(data_dir, genuine, damage, figures):
    path = data_dir / "mnist.npz"
    (npz_without(genuine, "x_test") if damage == "missing x_test" else DAMAGED_NPZ[damage])(path)
    message = assert_refused(path, figures)
    for raw in ("BadZipFile", "EOFError", "KeyError", "IsADirectoryError", "ValueError"):
        assert not message.startswith(raw)


def test_a_prepared_copy_zeroed_in_place_is_rebuilt_never_served(data_dir, genuine, monkeypatch, figures):
    os.symlink(SHARED / "mnist.npz", data_dir / "mnist.npz")
    reads = []
    source = data.mnist_source
    monkeypatch.setattr(data, "mnist_source", lambda folder: reads.append(folder) or source(folder))
    (x_train, y_train), _ = data.mnist()
    expected = np.array(x_train[:100])
    prepared = Path(os.environ["LABKIT_CACHE_DIR"]) / "data" / "mnist-prepared-v1"
    for name in ("x_train.npy", "y_train.npy"):
        path = prepared / name
        header = len(path.read_bytes()) - np.load(path, mmap_mode="r").nbytes
        with open(path, "r+b") as file:  # zeroed in place: the header still says float32 (60000, 784)
            file.seek(header)
            file.write(bytes(path.stat().st_size - header))
        clear_caches()
        (x_train, y_train), _ = data.mnist()
        assert np.array_equal(x_train[:100], expected) and y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
        figures.add(faults=1, served=int(not np.array_equal(x_train[:100], expected)))
    assert len(reads) == 3  # built once, rebuilt after each damage
    clear_caches()
    data.mnist()
    assert len(reads) == 3  # the rebuilt copy is served again


def test_a_foreign_mnist_stops_a_run_before_it_trains(data_dir, genuine, tiny, store_dir, train_log, figures):
    from labkit import train
    from labkit.runs import open_store

    np.savez(data_dir / "mnist.npz", **{k: v[:1000] for k, v in genuine.items()})
    with pytest.raises(DatasetError, match="mnist.npz"):
        train(tiny())
    assert train_log() == [] and open_store().keys() == []
    figures.add(inputs=1)


def evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return pickle.dumps(Evil())


@pytest.fixture
def california_dir(data_dir):
    shutil.copytree(SHARED / "scikit_learn_data", data_dir / "scikit_learn_data")
    (data_dir / "scikit_learn_data").chmod(0o755)
    path = data_dir / "scikit_learn_data" / "cal_housing_py3.pkz"
    path.chmod(0o644)
    return path


def test_the_genuine_scikit_learn_cache_loads(california_dir):
    frame = data.california()
    assert frame.shape == (20_640, 9) and frame.iloc[0]["MedInc"] == pytest.approx(8.3252)
    assert frame["MedHouseVal"].mean() == pytest.approx(2.068558, abs=1e-6)


def crafted_object_array(path: Path, marker: Path) -> None:
    """A joblib cache whose array holds objects: their nested pickle calls os.system."""
    import joblib

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    joblib.dump(np.array([Evil()], dtype=object), path, compress=3)


CRAFTED_PKZ = {
    "a pickle that calls os.system": lambda path, marker: path.write_bytes(zlib.compress(evil_pickle(marker))),
    "an object array whose items call os.system": crafted_object_array,
    "a plain pickle of the right array": lambda path, marker: path.write_bytes(
        zlib.compress(pickle.dumps(np.zeros((20_640, 9))))),
    "not compressed": lambda path, marker: path.write_bytes(evil_pickle(marker)),
    "truncated": lambda path, marker: path.write_bytes(path.read_bytes()[:1000]),
    "a compression bomb": lambda path, marker: path.write_bytes(zlib.compress(bytes(200 * 2**20))),
    "another table": lambda path, marker: __import__("joblib").dump(np.ones((20_640, 9)), path, compress=6),
}


@pytest.mark.parametrize("craft", list(CRAFTED_PKZ))
def test_a_crafted_california_cache_is_refused_and_runs_no_code(california_dir, tmp_path, craft, figures):
    marker = tmp_path / "code-ran"
    CRAFTED_PKZ[craft](california_dir, marker)
    assert_refused(california_dir, figures)
    assert not marker.exists()


@pytest.mark.parametrize("data_name, validation, train_size", [
    ("mnist", 0.1, None), ("mnist", 0.1, 2000), ("mnist", 0.15, 999),
    ("california", 0.1, None), ("california", 0.15, 2000),
])
def test_split_sizes_are_known_without_loading(data_name, validation, train_size):
    expected = data.split(data_name, validation=validation, train_size=train_size, seed=3).sizes
    assert data.split_sizes(data_name, validation=validation, train_size=train_size) == expected


def test_california_holds_out_the_test_fraction_every_run_uses():
    assert data.split_sizes("california")["test"] == 4128 == round(data.TEST_FRACTION * data.CALIFORNIA_ROWS)
    assert data.split("california").sizes == data.split_sizes("california")


def test_splits_are_seeded_stratified_and_read_only():
    a, b = data.split("mnist", 0.1, 1000, seed=0), data.split("mnist", 0.1, 1000, seed=1)
    assert a is data.split("mnist", 0.1, 1000, seed=0)  # cached per process
    assert not np.array_equal(a.y_train, b.y_train)
    assert 85 <= np.bincount(a.y_train).min() and np.bincount(a.y_train).max() <= 115
    with pytest.raises(ValueError):
        data.mnist()[0][0][0, 0] = 1.0  # shared: a change would leak into every later split


@pytest.mark.parametrize("data_name", data.DATASETS)
def test_every_array_of_a_cached_split_is_read_only(data_name):
    split = data.split(data_name, 0.1, 1000)
    label = split.y_val[0]
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(split, name)[0] = 99  # would change the split every later caller gets
    assert data.split(data_name, 0.1, 1000).y_val[0] == label
