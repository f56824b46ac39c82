"""Property-based checks (hypothesis) where the inputs are too many to list: a field's value is
either refused, naming the field, before anything trains, or accepted with one key that
survives a round trip; a record that passes its checks can be read by every reader."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from labkit import Run, runs, train
from labkit.runs import open_store
from labkit.store import BadRecord, MissingResult, digest
from labkit.sweep import RESERVED, Item, Sweep, sweep

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=8), st.integers(-3, 3).map(np.int64), st.floats(-2, 2).map(np.float32))
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.tuples(scalars, scalars),
                   st.dictionaries(st.text(max_size=4), scalars, max_size=2))
#: Values valid for some fields, to reach the accepting side too.
plausible = st.one_of(st.integers(0, 10), st.sampled_from([None, True, False, 0.1, 0.5, 300, 2**32 - 1, [0, 1],
                                                           ["weight_norm"], "mnist", "california", "signal"]))


class ReachedTraining(Exception):
    pass


@pytest.fixture
def no_training(monkeypatch, store_dir):
    """``fit`` replaced by a tripwire: a run that reaches training raises ReachedTraining."""
    def tripwire(run):
        raise ReachedTraining(run.key)

    monkeypatch.setattr(runs, "fit", tripwire)


@SETTINGS
@given(field=st.sampled_from(runs._REPLACEABLE), value=st.one_of(values, plausible))
def test_a_field_is_refused_by_name_or_accepted_with_one_key(tiny, no_training, field, value, figures):
    base = tiny()
    try:
        run = base.replace(**{field: value})
    except (ValueError, TypeError) as error:
        assert field in str(error) or repr(value)[:20] in str(error), str(error)
        event("refused")
        figures.add(inputs=1)
        return
    event("accepted")
    again = Run.from_spec(json.loads(json.dumps(run.spec)))
    assert again.key == run.key and again.spec == run.spec
    with pytest.raises(ReachedTraining):
        train(run)  # only a valid run gets this far


@SETTINGS
@given(field=st.sampled_from(["optimizer", "learning_rate", "optimizer_options", "loss", "metrics", "model"]),
       value=st.one_of(values, plausible))
def test_a_spec_from_elsewhere_is_checked_the_same_way(tiny, no_training, field, value, figures):
    spec = {**tiny().spec, field: value}
    try:
        run = Run.from_spec(spec)
    except (ValueError, TypeError) as error:
        assert field in str(error) or "model" in str(error), str(error)
        figures.add(inputs=1)
        return
    assert Run.from_spec(json.loads(json.dumps(run.spec))).key == run.key


@SETTINGS
@given(name=st.text(max_size=10))
def test_a_grid_name_is_a_keyword_that_is_not_a_column(tiny, store_dir, monkeypatch, name, figures):
    monkeypatch.setenv("LABKIT_REQUIRE_CACHED", "1")  # an accepted grid stops before training
    try:
        sweep(lambda **point: tiny(), {name: [1]})
    except ValueError as error:
        assert repr(name) in str(error)
        assert not name.isidentifier() or name in RESERVED
        figures.add(inputs=1)
    except MissingResult:
        assert name.isidentifier()


def reseal(record: dict) -> str:
    rest = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps({**rest, "checksum": digest(rest)})


PATHS = [(), ("history",), ("history", "train"), ("history", "validation", "loss"), ("history", "train", "loss", 0),
         ("final",), ("final", "validation"), ("final", "validation", "accuracy"), ("test",), ("test", "loss"),
         ("predictions",), ("probes",), ("probes", "weight_norm"), ("probes", "weight_norm", "value"),
         ("probes", "weight_norm", "value", 0), ("sizes",), ("sizes", "train"), ("epochs_run",), ("best_epoch",),
         ("diverged",), ("stopped_early",), ("seconds",), ("epoch_seconds",), ("epoch_seconds", 0), ("spec",),
         ("spec", "epochs"), ("spec", "probes"), ("spec", "model", "config", "layers", 1, "config", "units"),
         ("versions",), ("platform",), ("platform", "vector_extensions"),
         # leaves where another number (or a name) is a valid record: the accepting side
         ("history", "train", "accuracy", 0), ("test", "accuracy"), ("probes", "weight_norm", "value", 1),
         ("seconds",), ("epoch_seconds", 1), ("platform", "cpu"), ("versions", "keras"), ("started_at",)]
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)


def read_everything(run: Run, record: dict) -> None:
    """What the chapters and the command line read of a record."""
    from labkit.runs import Result

    result = Result(record, cached=True)
    result.history, result.final, result.test, result.predictions, result.best_epoch, result.diverged
    for name in run.probes:
        result.probe(name)
    table = Sweep([Item({"x": 1}, run.seed, result)], ["x"])
    table.history, table.final(*record["final"]["validation"]), table.final("loss", split="test")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), key=st.text(max_size=6),
       value=st.one_of(json_values, st.floats(-1e6, 1e6), st.none(), st.text(max_size=4)))
def test_a_record_that_passes_its_checks_can_be_read(trained, store_dir, path, value, key, figures):
    run, genuine = trained
    store = open_store()
    genuine = store.save(genuine)  # as a reader gets it: sealed
    edited = copy.deepcopy(genuine)
    target = edited
    try:
        for step in path[:-1]:
            target = target[step]
        if path:
            target[path[-1]] = value
        else:
            edited[key] = value  # a field added
    except (KeyError, IndexError, TypeError):
        return
    store.path(run.key).write_text(reseal(edited))
    try:
        record = store.load(run.key)
    except BadRecord:
        event("refused")
        figures.add(inputs=1)
        return
    event("accepted")
    with figures.no_crash():
        read_everything(run, record)
    for field in ("history", "final", "test", "probes", "sizes", "diverged", "best_epoch", "spec"):
        if record[field] != genuine[field]:  # what passes may differ only in the numbers measured
            assert field in ("history", "final", "test", "probes") and _same_shape(record[field], genuine[field])


def _same_shape(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b))
    numbers = (int, float, type(None))
    return isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool) \
        or isinstance(a, str) and isinstance(b, str)
