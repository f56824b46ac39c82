"""Property-based checks (hypothesis): every invalid value is refused with its field and value,
and no invalid spec reaches training."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import Run
from labkit.models import ACTIVATIONS, INITIALIZERS, mlp

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model():
    return mlp(hidden=(4,))


bad_numbers = st.one_of(st.floats(max_value=0, allow_nan=False), st.just(math.nan), st.just(math.inf),
                        st.just(-math.inf), st.text(max_size=3), st.none(), st.booleans())
bad_ints = st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3), st.booleans())




@SETTINGS
@given(value=bad_numbers)
def test_learning_rate(model, value):
    with pytest.raises(ValueError) as error:
        Run(model=model, learning_rate=value)
    assert "learning_rate" in str(error.value) and repr(value) in str(error.value)


@SETTINGS
@given(field=st.sampled_from(["epochs", "batch_size"]), value=bad_ints)
def test_positive_integers(model, field, value):
    with pytest.raises(ValueError) as error:
        Run(model=model, **{field: value})
    assert field in str(error.value) and repr(value) in str(error.value)


@SETTINGS
@given(value=st.text(min_size=1, max_size=12).filter(lambda s: s not in ("mnist", "california")))
def test_dataset(model, value):
    with pytest.raises(ValueError) as error:
        Run(model=model, data=value)
    assert "data" in str(error.value) and repr(value) in str(error.value)


@SETTINGS
@given(value=st.one_of(st.floats(allow_nan=True), st.integers()).filter(
    lambda v: not (isinstance(v, float) and 0 < v < 1)))
def test_validation_fraction(model, value):
    with pytest.raises(ValueError) as error:
        Run(model=model, validation=value)
    assert "validation" in str(error.value)


@SETTINGS
@given(value=st.text(min_size=1, max_size=10).filter(lambda s: s not in ACTIVATIONS))
def test_activation(value):
    with pytest.raises(ValueError) as error:
        mlp(hidden=(4,), activation=value)
    assert "activation" in str(error.value) and repr(value) in str(error.value)


@SETTINGS
@given(value=st.text(min_size=1, max_size=10).filter(lambda s: s not in INITIALIZERS))
def test_initializer(value):
    with pytest.raises(ValueError) as error:
        mlp(hidden=(4,), kernel_initializer=value)
    assert "kernel_initializer" in str(error.value) and repr(value) in str(error.value)


@SETTINGS
@given(hidden=st.lists(st.integers(1, 8), max_size=3),
       values=st.lists(st.floats(0, 1), min_size=0, max_size=6))
def test_l2_list_length(hidden, values):
    if len(values) == len(hidden) + 1:
        mlp(hidden=hidden, l2=values)  # the right length is accepted
        return
    with pytest.raises(ValueError) as error:
        mlp(hidden=hidden, l2=values)
    assert "l2" in str(error.value) and str(len(hidden) + 1) in str(error.value)


@SETTINGS
@given(value=st.one_of(st.floats(max_value=-1e-12), st.just(math.nan), st.just(math.inf)))
def test_l2_values(value):
    with pytest.raises(ValueError) as error:
        mlp(hidden=(4,), l2=value)
    assert "l2" in str(error.value)


def test_invalid_spec_never_reaches_training(model, monkeypatch):
    from labkit import runs

    monkeypatch.setattr(runs, "execute", lambda run: pytest.fail("an invalid spec reached training"))
    with pytest.raises(ValueError):
        runs.train(Run(model=model).replace(epochs=-1))
    with pytest.raises(ValueError):
        Run.from_spec({**Run(model=model).spec(), "learning_rate": -1})
