"""labkit.runs: spec keys, training once, reproducibility, divergence, damaged records."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from labkit import Run, train
from labkit.models import mlp
from labkit.runs import open_store
from labkit.store import MissingRun

TINY = dict(data="mnist", train_size=300, epochs=2, batch_size=64, optimizer="sgd", learning_rate=0.1)


def tiny_run(**changes):
    return Run(model=mlp(hidden=(16,)), **{**TINY, **changes})


def student_model():
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def test_key_stable_within_a_process():
    assert tiny_run().key == tiny_run().key
    # Keras names these dense_N with a per-process counter: canonicalised before hashing
    assert Run(model=student_model(), **TINY).key == Run(model=student_model(), **TINY).key


def test_key_stable_across_processes():
    code = (
        "import keras; from labkit import Run; from labkit.models import mlp;"
        "keras.layers.Dense(3);"  # shift Keras' auto-name counter
        "print(Run(model=mlp(hidden=(16,)), data='mnist', train_size=300, epochs=2, batch_size=64,"
        " optimizer='sgd', learning_rate=0.1).key)"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == tiny_run().key


def test_key_changes_with_what_matters():
    base = tiny_run()
    assert base.replace(learning_rate=0.2).key != base.key
    assert base.replace(seed=1).key != base.key
    assert Run(model=mlp(hidden=(17,)), **TINY).key != base.key


def test_second_train_trains_nothing_and_returns_identical_history(store_dir, train_log):
    first = train(tiny_run())
    second = train(tiny_run())
    assert train_log() == [first.key]  # a call counter, not a timer
    assert not first.cached and second.cached
    assert second.history.equals(first.history)
    assert first.history.columns.tolist() == ["epoch", "split", "metric", "value"]
    assert set(first.history["metric"]) == {"loss", "accuracy", "crossentropy"}


def test_same_seed_same_history_other_seed_different(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path / "a"))
    a = train(tiny_run(seed=3))
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path / "b"))
    b = train(tiny_run(seed=3))
    c = train(tiny_run(seed=4))
    assert not b.cached and a.history.equals(b.history)
    assert not np.allclose(a.history["value"], c.history["value"])


def test_record_holds_versions_platform_timing(store_dir):
    record = train(tiny_run()).record
    assert record["versions"]["keras"] == keras.__version__ and record["versions"]["python"]
    assert record["platform"]["cores"] >= 1 and record["platform"]["cpu"]
    assert record["seconds"] > 0 and len(record["epoch_seconds"]) == 2
    assert record["test"] is None  # the test set is touched only when asked


def test_evaluate_test_only_when_asked(store_dir):
    result = train(tiny_run(evaluate_test=True, epochs=1))
    assert set(result.test) == {"loss", "accuracy", "crossentropy"}
    assert (result.history["split"] == "test").sum() == 3


@pytest.mark.parametrize("damage", ["truncate", "edit", "drop_field", "short_history"])
def test_damaged_record_is_retrained_not_served(store_dir, train_log, damage):
    run = tiny_run()
    first = train(run)
    path = open_store().path(run.key)
    text = path.read_text()
    record = json.loads(text)
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":
        record["final"]["validation"]["accuracy"] = 0.999
        path.write_text(json.dumps(record))
    elif damage == "drop_field":
        del record["history"]
        path.write_text(json.dumps(record))
    else:
        record["history"]["train"]["loss"] = record["history"]["train"]["loss"][:1]
        path.write_text(json.dumps(record))
    again = train(run)
    assert not again.cached and train_log() == [run.key, run.key]
    assert again.history.equals(first.history)


def test_damaged_record_refused_when_training_forbidden(store_dir, monkeypatch):
    run = tiny_run()
    train(run)
    open_store().path(run.key).write_text("{")
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")
    with pytest.raises(MissingRun, match="LABKIT_REQUIRE_CACHED"):
        train(run)


def test_diverging_run_is_recorded_not_raised(store_dir):
    # raw (unscaled) California features with a large SGD step: the MSE overflows
    run = Run(model=mlp(input_dim=8, hidden=(8,), output=1), data="california", epochs=5,
              optimizer="sgd", learning_rate=1.0)
    result = train(run)
    assert result.diverged and result.epochs_run < 5
    assert np.isnan(result.history.query("metric == 'loss'")["value"].iloc[-1])
    assert train(run).cached  # a diverged run is a result like any other


def test_probes_are_measured(store_dir):
    run = tiny_run(probes=("weight_norm", "weight_hist", "signal"), probe_epochs=(0, 2))
    result = train(run)
    norms = result.probe("weight_norm")
    assert sorted(norms["epoch"].unique()) == [0, 2] and set(norms["layer_name"]) == {"hidden_1", "output"}
    signal = result.probe("signal")
    assert set(signal["quantity"]) == {"activation", "gradient", "weight_gradient"}
    assert (signal.query("stat == 'std'")["value"] > 0).all()
    hist = result.probe("weight_hist")
    assert hist.groupby(["epoch", "layer"])["count"].sum().tolist() == [784 * 16, 160] * 2


@pytest.mark.parametrize(
    "changes, field, value",
    [
        (dict(learning_rate=-0.1), "learning_rate", "-0.1"),
        (dict(data="cifar"), "data", "cifar"),
        (dict(epochs=0), "epochs", "0"),
        (dict(optimizer="adagrad2"), "optimizer", "adagrad2"),
        (dict(probes=("nope",)), "probe", "nope"),
        (dict(validation=1.5), "validation", "1.5"),
    ],
)
def test_bad_run_fields_name_field_and_value(changes, field, value):
    with pytest.raises(ValueError) as error:
        tiny_run(**changes)
    assert field in str(error.value) and value in str(error.value)


def test_speed_settings_do_not_change_results(monkeypatch):
    """steps_per_execution is outside the key: it must leave every history bit-identical."""
    from labkit import runs

    run = tiny_run(epochs=2)
    monkeypatch.setattr(runs, "STEPS_PER_EXECUTION", 1)
    one = runs.execute(run)["history"]
    monkeypatch.setattr(runs, "STEPS_PER_EXECUTION", 32)
    assert runs.execute(run)["history"] == one
