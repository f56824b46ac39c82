"""``make rebuild`` (tools/rebuild.py) on tiny stores: a real retrain is bit-identical on this
machine, an edited record is caught, and a record from another CPU is explained by the machine."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from labkit.runs import machine, open_store, train
from labkit.store import Store
from test_cli import tiny_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import rebuild  # noqa: E402


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """Two tiny runs trained in this process (``train``), then rebuilt by the tool in sweep workers."""
    folder = tmp_path_factory.mktemp("rebuild")
    committed = Store(folder / "committed", open_store().validators)
    keys = [train(tiny_run(seed=seed), store=committed).key for seed in (0, 1)]
    code = rebuild.main(["--store", str(committed.root), "--out", str(folder / "out"),
                         "--json", str(folder / "report.json")])
    return committed, folder / "out", keys, code, json.loads((folder / "report.json").read_text())


def test_a_rebuild_on_the_same_machine_is_bit_identical(rebuilt):
    committed, out, keys, code, report = rebuilt
    assert code == 0
    assert [row["result"] for row in report["rows"]] == ["identical", "identical"]
    assert sorted(row["key"] for row in report["rows"]) == sorted(keys)
    assert sorted(Store(out / "store").keys()) == sorted(keys)
    assert "| identical, bit for bit | 2 |" in (out / "report.md").read_text()


@pytest.fixture
def copies(rebuilt, tmp_path, train_log):
    """Copies of the committed store (to edit) and of the rebuilt one (nothing trains again)."""
    committed, out, keys, _, _ = rebuilt
    shutil.copytree(committed.root, tmp_path / "committed")
    shutil.copytree(out, tmp_path / "out")
    yield Store(tmp_path / "committed", committed.validators), tmp_path / "out", keys
    assert train_log() == []


def edit(store: Store, key: str, shift: float, **fields) -> None:
    """Shift a record's validation accuracy (one epoch: history and final) and save it again, sealed."""
    record = json.loads(json.dumps(store.load(key)))
    record["history"]["validation"]["accuracy"][0] += shift
    record["final"]["validation"]["accuracy"] += shift
    store.save({**record, **fields})


def run(store: Store, out: Path, *options: str) -> tuple[int, dict, str]:
    code = rebuild.main(["--store", str(store.root), "--out", str(out), "--json", str(out / "r.json"), *options])
    return code, json.loads((out / "r.json").read_text()), (out / "report.md").read_text()


def test_a_difference_on_the_same_cpu_is_a_bug(copies):
    store, out, keys = copies
    edit(store, keys[0], 5e-4)  # within the tolerance, still a bug here
    edit(store, keys[1], 0.02)
    code, report, text = run(store, out)
    assert code == 1
    results = {row["key"]: (row["result"], row["cause"]) for row in report["rows"]}
    assert results == {keys[0]: ("within", "none"), keys[1]: ("beyond", "none")}
    assert "this is a BUG" in text and "validation.accuracy" in text


def test_a_difference_from_another_cpu_is_explained_by_the_machine(copies):
    store, out, keys = copies
    here = machine()
    other = {**here, "cpu_model": "999", "vector_extensions": ["sse4_1", "avx", "avx2"]}
    edit(store, keys[0], 0.02, platform=other)
    edit(store, keys[1], 5e-4, platform={"cpu": here["cpu"], "cores": 2})  # an older record
    code, report, text = run(store, out)
    assert code == 0
    results = {row["key"]: (row["result"], row["cause"]) for row in report["rows"]}
    assert results == {keys[0]: ("beyond", "machine"), keys[1]: ("within", "machine?")}
    assert "these differences come from the machine" in text and "it cannot be told" in text
    assert "model 999; sse4_1, avx, avx2" in text and "Largest difference 0.02" in text


def test_other_versions_are_named_as_the_cause(copies):
    store, out, keys = copies
    record = store.load(keys[0])
    edit(store, keys[0], 0.02, versions={**record["versions"], "jax": "0.0.1"})
    code, report, _ = run(store, out, "--only", keys[0][:8])
    assert code == 0 and [(r["key"], r["cause"]) for r in report["rows"]] == [(keys[0], "versions")]


def test_only_and_limit_select_a_sample_and_damaged_records_are_listed(copies):
    store, out, keys = copies
    store.path("ab" * 32).mkdir()
    _, report, text = run(store, out, "--limit", "1")
    assert [row["key"] for row in report["rows"]] == [min(keys)]
    assert report["damaged"][0]["key"] == "ab" * 32 and "1 damaged committed records" in text
    _, report, _ = run(store, out, "--only", keys[1][:6], keys[0][:6])
    assert len(report["rows"]) == 2


@pytest.mark.parametrize("options, message", [
    (["--only", "XYZ"], "lowercase hexadecimal"), (["--limit", "0"], ">= 1"),
    (["--only", "f" * 64 + "0"], "no run record"),
])
def test_bad_options_say_what_is_wrong(copies, capsys, options, message):
    store, out, _ = copies
    with pytest.raises(SystemExit):
        rebuild.main(["--store", str(store.root), "--out", str(out), *options])
    assert message in capsys.readouterr().err


def test_compare_reads_tolerance_and_non_numeric_differences():
    base = {"diverged": False, "history": {"validation": {"loss": [0.5, 0.4]}}, "final": {}}
    same = rebuild.compare(base, json.loads(json.dumps(base)))
    assert same["result"] == "identical" and same["where"] is None
    close = rebuild.compare(base, {**base, "history": {"validation": {"loss": [0.5, 0.4009]}}})
    assert close["result"] == "within" and close["largest"] == pytest.approx(9e-4)
    far = rebuild.compare(base, {**base, "history": {"validation": {"loss": [0.5, 0.402]}}})
    assert far["result"] == "beyond" and "loss[1]" in far["where"]
    nan = rebuild.compare(base, {**base, "diverged": True, "history": {"validation": {"loss": [0.5, None]}}})
    assert nan["result"] == "beyond" and nan["where"].startswith("diverged")
