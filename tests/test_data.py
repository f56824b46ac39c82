"""labkit.data: datasets from the data directory, seeded splits, input checks."""

import numpy as np
import pytest

from labkit import data


def test_mnist_shapes_and_scale():
    (x_train, y_train), (x_test, y_test) = data.mnist()
    assert x_train.shape == (60_000, 784) and x_test.shape == (10_000, 784)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert round(float(x_train.mean()), 4) == 0.1307


def test_mnist_split_is_stratified_seeded_and_disjoint():
    a = data.split("mnist", validation=0.1, train_size=1000, seed=0)
    b = data.split("mnist", validation=0.1, train_size=1000, seed=0)
    c = data.split("mnist", validation=0.1, train_size=1000, seed=1)
    assert a.sizes == {"train": 1000, "validation": 6000, "test": 10_000}
    assert np.array_equal(a.y_train, b.y_train) and not np.array_equal(a.y_train, c.y_train)
    counts = np.bincount(a.y_train, minlength=10)
    assert counts.min() >= 85 and counts.max() <= 115  # stratified: ≈ 100 per class


def test_california_frame_and_split():
    frame = data.california()
    assert frame.shape == (20_640, 9) and "MedHouseVal" in frame
    assert frame.iloc[0]["MedInc"] == pytest.approx(8.3252)
    split = data.split("california", validation=0.2, seed=0)
    assert sum(split.sizes.values()) == 20_640
    assert split.sizes["test"] == 4128 and split.x_train.shape[1] == 8
    assert split.feature_names[0] == "MedInc"


def test_data_dir_from_project_not_cwd(monkeypatch, tmp_path):
    from labkit import paths

    monkeypatch.delenv("LABKIT_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert paths.data_dir() == paths.project_root() / "data"
    assert (paths.project_root() / "pyproject.toml").is_file()


def test_missing_dataset_offline_gives_clear_error(monkeypatch, tmp_path):
    import keras

    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    data._mnist_arrays.cache_clear()
    with pytest.raises(data.DatasetUnavailable) as error:
        data.mnist()
    assert str(tmp_path / "mnist.npz") in str(error.value) and "LABKIT_DATA_DIR" in str(error.value)
    data._mnist_arrays.cache_clear()


def test_unknown_dataset_named():
    with pytest.raises(ValueError, match="'cifar'"):
        data.split("cifar")


def test_nan_inputs_rejected_before_training():
    x = np.ones((20, 3), dtype="float32")
    x[4, 1] = np.nan
    x[7, 0] = np.inf
    with pytest.raises(ValueError) as error:
        data.check_finite(x, "mnist x_train")
    assert "2 NaN or infinite" in str(error.value) and "[4, 7]" in str(error.value)


@pytest.mark.parametrize("train_size", [None, 1000])
def test_mnist_split_selects_the_rows_splitting_the_arrays_would(train_size):
    """Splitting indices (one gather) must give exactly the arrays of splitting x itself:
    every stored run was trained on the latter."""
    from sklearn.model_selection import train_test_split

    (x, y), _ = data.mnist()
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=6000, stratify=y, random_state=0)
    if train_size is not None:
        x_train, _, y_train, _ = train_test_split(x_train, y_train, train_size=train_size,
                                                  stratify=y_train, random_state=0)
    split = data.split("mnist", validation=0.1, train_size=train_size, seed=0)
    for got, expected in [(split.x_train, x_train), (split.y_train, y_train),
                          (split.x_val, x_val), (split.y_val, y_val)]:
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_mnist_arrays_are_shared_read_only():
    (x_train, _), _ = data.mnist()
    assert data.mnist()[0][0] is x_train  # prepared once per process
    with pytest.raises(ValueError):
        x_train[0, 0] = 1.0  # a change would leak into every later split


@pytest.mark.parametrize("data_name, validation, train_size, test", [
    ("mnist", 0.1, None, 0.2), ("mnist", 0.1, 2000, 0.2), ("mnist", 0.15, 999, 0.2),
    ("california", 0.1, None, 0.2), ("california", 0.15, 2000, 0.25), ("california", 0.2, None, 0.1),
])
def test_split_sizes_match_the_split_without_loading(data_name, validation, train_size, test):
    expected = data.split(data_name, validation=validation, train_size=train_size, seed=0, test=test).sizes
    assert data.split_sizes(data_name, validation=validation, train_size=train_size, test=test) == expected


def test_published_row_counts():
    (x_train, _), (x_test, _) = data.mnist()
    assert (len(x_train), len(x_test)) == data.MNIST_ROWS
    assert len(data.california()) == data.CALIFORNIA_ROWS


@pytest.mark.parametrize("function", [data.split, data.split_sizes])
def test_split_and_its_sizes_refuse_the_same_bad_train_size(function):
    with pytest.raises(ValueError, match="train_size must be an integer >= 10"):
        function("mnist", validation=0.1, train_size=5)


@pytest.fixture
def fresh_prepared_cache(tmp_path, monkeypatch):
    """An empty prepared-data cache, and no MNIST prepared in this process yet."""
    folder = tmp_path / "data-cache"
    monkeypatch.setenv("LABKIT_DATA_CACHE", str(folder))
    data._mnist_prepared.cache_clear()
    yield folder
    data._mnist_prepared.cache_clear()


def _count_npz_reads(monkeypatch) -> list:
    reads = []
    original = data._prepare_mnist

    def counted(folder, flatten):
        reads.append(folder)
        return original(folder, flatten)

    monkeypatch.setattr(data, "_prepare_mnist", counted)
    return reads


@pytest.mark.parametrize("flatten", [True, False])
def test_mnist_prepared_once_then_read_from_the_prepared_copy(fresh_prepared_cache, monkeypatch, flatten):
    reads = _count_npz_reads(monkeypatch)
    first = data.mnist(flatten=flatten)
    assert len(reads) == 1 and len(list(fresh_prepared_cache.glob("mnist-*/*.npy"))) == 4
    data._mnist_prepared.cache_clear()  # as a new process would
    again = data.mnist(flatten=flatten)
    assert len(reads) == 1  # the npz was not decompressed again
    for got, expected in zip([*again[0], *again[1]], [*first[0], *first[1]]):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
        assert not got.flags.writeable


def test_damaged_prepared_copy_is_rebuilt_not_served(fresh_prepared_cache, monkeypatch):
    reads = _count_npz_reads(monkeypatch)
    (x_train, y_train), _ = data.mnist()
    expected = np.array(x_train[:3])
    data._mnist_prepared.cache_clear()
    [damaged] = fresh_prepared_cache.glob("mnist-*/x_train.npy")
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated
    (x_train, _), _ = data.mnist()
    assert len(reads) == 2 and np.array_equal(x_train[:3], expected)
    data._mnist_prepared.cache_clear()
    data.mnist()
    assert len(reads) == 2  # repaired


def test_unwritable_prepared_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LABKIT_DATA_CACHE", str(blocker / "data"))
    data._mnist_prepared.cache_clear()
    try:
        (x_train, y_train), _ = data.mnist()
        assert x_train.shape == (60_000, 784) and y_train[:3].tolist() == [5, 0, 4]
    finally:
        data._mnist_prepared.cache_clear()
