"""labkit.memo: non-Keras results computed once per parameters and profile."""

import pytest

from labkit import memo
from labkit.store import MissingRun


def test_memo_computes_once_and_keys_on_params(store_dir):
    calls = []

    def compute():
        calls.append(1)
        return {"rmse": 0.5, "values": [1, 2]}

    assert memo("baseline", {"seed": 0}, compute) == {"rmse": 0.5, "values": [1, 2]}
    assert memo("baseline", {"seed": 0}, compute) == {"rmse": 0.5, "values": [1, 2]}
    assert len(calls) == 1
    memo("baseline", {"seed": 1}, compute)
    assert len(calls) == 2


def test_memo_respects_require_cached(store_dir, monkeypatch):
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")
    with pytest.raises(MissingRun):
        memo("baseline", {"seed": 9}, lambda: 1)


def test_memo_checks_arguments(store_dir):
    with pytest.raises(ValueError, match="params"):
        memo("x", [1], lambda: 1)


def test_memo_version_recomputes(store_dir):
    assert memo("v", {}, lambda: 1) == 1
    assert memo("v", {}, lambda: 2) == 1  # same key: served
    assert memo("v", {}, lambda: 2, version=2) == 2


def test_submodules_reachable_lazily():
    import labkit

    assert labkit.data.DATASETS == ("mnist", "california")
