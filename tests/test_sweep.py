"""labkit.sweep: grid × seeds trained once in workers, bit-identical to training in-process,
every input checked before anything trains, any entry point, any executor (Dask), one writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Executor, Future

import numpy as np
import pytest

from labkit import sweep, train
from labkit.data import DatasetError
from labkit.runs import open_store
from labkit.settings import SettingError
from labkit import settings
from labkit.runs import Result
from labkit.store import NOT_COMPUTED, MissingResult
from labkit.sweep import RESERVED, Item, Sweep, SweepError

def test_tables_and_only_missing_runs_trained(tiny, store_dir, train_log):
    result = sweep(tiny, {"lr": [0.05, 0.2]}, seeds=2)
    assert len(train_log()) == 4 and len(set(train_log())) == 4
    history = result.history
    assert history.columns.tolist() == ["lr", "seed", "key", "diverged", "epoch", "split", "metric", "value"]
    assert set(history["split"]) == {"train", "validation"} and history["epoch"].max() == 1
    final = result.final("accuracy", "loss")
    assert final[["lr", "seed"]].values.tolist() == [[0.05, 0], [0.05, 1], [0.2, 0], [0.2, 1]]
    again = sweep(tiny, {"lr": [0.05, 0.2, 0.4]}, seeds=2)  # one new point: two new runs
    assert len(train_log()) == 6 and [item.result.cached for item in again].count(False) == 2
    assert again.final("accuracy", "loss").iloc[:4].equals(final)


@pytest.mark.slow
def test_a_worker_and_the_notebook_train_bit_identical_records(tiny, tmp_path, monkeypatch):
    run = tiny(0.3, epochs=2, seed=11, probes=["weight_norm"], evaluate_test=True)
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path / "in-process"))
    here = train(run).record
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path / "worker"))
    [item] = sweep(lambda lr: run, {"lr": [0.3]}, seeds=[11]).items
    there = item.result.record
    assert not item.result.cached and there["platform"]["cpu"] == here["platform"]["cpu"]
    for field in ("history", "final", "test", "probes", "best_epoch", "diverged", "sizes"):
        assert there[field] == here[field], field  # exactly: not a tolerance


@pytest.mark.parametrize("grid, seeds, words", [
    ({}, 1, ["grid"]),
    ({"lr": []}, 1, ["grid['lr']", "non-empty"]),
    ({"lr": 0.1}, 1, ["grid['lr']", "0.1"]),
    ({"lr": "0.1"}, 1, ["grid['lr']"]),
    ({"learning rate": [0.1]}, 1, ["'learning rate'", "keyword"]),
    ({"lr": [0.1, 0.1]}, 1, ["same run", "{'lr': 0.1}"]),
    ({"lr": [0.1], "epochs": [1, np.int64(1)]}, 1, ["same run", "'epochs': 1"]),
    ({"lr": [0.1]}, 0, ["seeds", "0"]),
    ({"lr": [0.1]}, [-1], ["seed", "-1"]),
    ({"lr": [0.1]}, [1, 1], ["seeds", "distinct"]),
    ({"lr": [0.1]}, [2**32], ["seed", "4294967296"]),  # the range is the one Run checks
    ({"lr": [0.1]}, [1.5], ["seeds", "integers"]),
    ({"lr": [0.1]}, True, ["seeds", "True"]),
    ({"layer": [1]}, 1, ["'layer'", "columns"]),  # a probe table's column
    ({"count": [1]}, 1, ["'count'", "columns"]),
] + [({name: [0.1]}, 1, [repr(name), "columns"]) for name in RESERVED])
def test_bad_grids_and_seeds_are_refused_before_training(tiny, store_dir, train_log, grid, seeds, words, figures):
    def experiment(lr=0.1, epochs=1, **others):
        return tiny(lr, epochs=epochs)

    with pytest.raises(ValueError) as error:
        sweep(experiment, grid, seeds=seeds)
    for word in words:
        assert word in str(error.value), str(error.value)
    assert train_log() == []
    figures.add(inputs=1)


@pytest.mark.parametrize("experiment, executor, words", [
    ("not a function", None, ["experiment", "function"]),
    (lambda lr: "a run", None, ["labkit.Run", "str"]),
    (None, "a pool", ["concurrent.futures.Executor", "str"]),
])
def test_a_bad_experiment_or_executor_is_named(tiny, store_dir, experiment, executor, words):
    with pytest.raises(TypeError) as error:
        sweep(experiment or tiny, {"lr": [0.1]}, executor=executor)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("variable, value", [("LABKIT_WORKERS", "abc"), ("LABKIT_WORKERS", "0"),
                                             ("LABKIT_IDLE_SECONDS", "-1"), ("LABKIT_IDLE_SECONDS", "soon"),
                                             ("LABKIT_REQUIRE_CACHED", "maybe"), ("LABKIT_PROFILE", "x")])
def test_a_bad_setting_is_named_before_anything_trains(tiny, store_dir, train_log, monkeypatch, variable, value,
                                                      figures):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError, match=f"{variable}={value!r}"):
        sweep(tiny, {"lr": [0.1]})
    assert train_log() == []
    figures.add(inputs=1)


def test_require_cached_names_how_many_runs_are_missing(tiny, store_dir, train_log, monkeypatch):
    sweep(tiny, {"lr": [0.05]})
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")
    assert sweep(tiny, {"lr": [0.05]}).items[0].result.cached
    with pytest.raises(MissingResult, match=r"3 of 4 runs of 'demo' are not in .*LABKIT_REQUIRE_CACHED=1"):
        sweep(tiny, {"lr": np.array([0.05, 0.1])}, seeds=2, label="demo")  # NumPy grids are accepted
    assert len(train_log()) == 1


class Answering(Executor):
    """An executor whose 'workers' answer with whatever ``answer(spec)`` returns."""

    def __init__(self, answer):
        self.answer = answer

    def submit(self, fn, spec):
        future = Future()
        future.set_result(self.answer(spec))
        return future


def test_a_wrong_record_from_a_worker_is_refused_and_reported(trained, store_dir, figures):
    run, genuine = trained
    other = genuine["spec"]
    wrong = {1: lambda: {**genuine, "spec": {**other, "learning_rate": 0.5}},  # another run's record
             2: lambda: {**genuine, "history": {**genuine["history"], "train": {}}},
             3: lambda: ["not", "a", "record"],
             4: lambda: {**genuine, "seconds": np.float32(1.0)},  # not plain JSON
             5: lambda: {**genuine, "diverged": "no"}}

    def answer(spec):
        return genuine if spec["split_seed"] == 0 else wrong[spec["split_seed"]]()

    with figures.no_crash(), pytest.raises(SweepError) as error:
        sweep(lambda case: run.replace(split_seed=case), {"case": [0, *wrong]}, seeds=[run.seed],
              executor=Answering(answer))
    assert "5 of 6 runs" in str(error.value) and str(error.value).count("failed verification") == 5
    assert open_store().keys() == [run.key]  # only the genuine record was saved
    figures.add(inputs=len(wrong), served=len(open_store().keys()) - 1)


@pytest.mark.slow
def test_dask_workers_that_cannot_write_the_store(tiny, store_dir, train_log, tmp_path):
    """A Dask cluster of worker processes whose store folder does not exist (and could not be
    made): the records come back to the driver, the only writer, and verify."""
    distributed = pytest.importorskip("distributed")
    elsewhere = tmp_path / "worker-cache"
    nowhere = "/proc/labkit-store-of-the-workers"  # /proc admits no new folder, even for root
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"LABKIT_RUNS_DIR": nowhere, "LABKIT_CACHE_DIR": str(elsewhere)}) as cluster, \
            distributed.Client(cluster) as client:
        seen = client.run(lambda: os.environ["LABKIT_RUNS_DIR"])
        result = sweep(tiny, {"lr": [0.05, 0.1]}, executor=client.get_executor())
    assert list(seen.values()) == [nowhere]
    assert len(train_log()) == 2 and not os.path.exists(nowhere)
    store = open_store()
    assert sorted(store.keys()) == sorted(item.result.key for item in result)
    assert all(problem is None for _, _, problem in store.scan())
    assert not [p for p in elsewhere.rglob("*.json") if p.stem in store.keys()]  # no record written there


@pytest.mark.slow
def test_a_foreign_dataset_stops_a_sweep_at_once(tiny, store_dir, train_log, tmp_path, monkeypatch):
    with np.load(os.path.join(os.environ["LABKIT_DATA_DIR"], "mnist.npz")) as genuine:
        np.savez(tmp_path / "mnist.npz", **{k: genuine[k][:1000] for k in genuine.files})
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="mnist.npz.*not the genuine MNIST"):
        sweep(tiny, {"lr": [0.05, 0.1, 0.2]})
    assert train_log() == [] and open_store().keys() == []


@pytest.mark.slow
def test_any_entry_point_runs_a_sweep(tmp_path, processes, sweep_script, figures):
    """From standard input, from ``python -c``, from a script file without a main guard: the
    workers never need the driver's ``__main__``; none is left once the driver is done."""
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text(sweep_script([0.05], guard=False))
    commands = {"stdin": ([sys.executable, "-"], sweep_script([0.05])),
                "-c": ([sys.executable, "-c", sweep_script([0.05])], None),
                "file without main guard": ([sys.executable, str(unguarded)], None)}
    started = {}
    for name, (command, stdin) in commands.items():
        env = processes.env(LABKIT_WORKERS="1", LABKIT_RUNS_DIR=str(tmp_path / name))
        started[name] = (subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, cwd=tmp_path), stdin, env)
    results = {}
    for name, (driver, stdin, env) in started.items():
        out, err = driver.communicate(stdin, timeout=300)
        assert driver.returncode == 0, f"{name}: {err[-2000:]}"
        results[name] = json.loads(out.split("RESULT", 1)[1].strip().replace("'", '"'))
        left = processes.gone_after(env["LABKIT_TEST_TAG"], timeout=10)
        figures.add(orphans=int(left == float("inf")))
        assert left < float("inf"), f"{name}: processes left behind"
    assert len({json.dumps(r) for r in results.values()}) == 1 and len(results["stdin"]) == 1


def test_a_probe_not_recorded_is_refused_with_the_probes_there(trained):
    run, record = trained
    table = Sweep([Item({"lr": 0.1}, run.seed, Result(record, cached=True))], ["lr"])
    assert len(table.probe("weight_norm")) == 2 * 3  # layers × probe epochs 0, 1, 2
    with pytest.raises(KeyError) as error:
        table.probe("signals")  # misspelt: not an empty table
    assert all(word in str(error.value) for word in ("'signals'", "['weight_norm']", "probes=["))


def test_a_damaged_record_is_reported_once_by_a_sweep(trained, store_dir, monkeypatch):
    run, genuine = trained
    store, told = open_store(), []
    path = store.path(store.save(genuine)["key"])
    monkeypatch.setattr(settings, "tell", told.append)
    damaged = path.read_text().replace('"epochs_run": 2', '"epochs_run": 1')
    path.write_text(damaged)
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")
    with pytest.raises(MissingResult):
        sweep(lambda lr: run, {"lr": [0.1]}, seeds=[run.seed])
    assert len(told) == 1 and run.key in told[0] and told[0].endswith(NOT_COMPUTED)  # not "computing it again"
    told.clear()
    monkeypatch.delenv("LABKIT_REQUIRE_CACHED")
    result = sweep(lambda lr: run, {"lr": [0.1]}, seeds=[run.seed], executor=Answering(lambda spec: genuine))
    assert not result.items[0].result.cached and store.load(run.key) is not None
    [report] = [message for message in told if run.key in message]  # progress lines aside
    assert report.endswith("computing it again")
