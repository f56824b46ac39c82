"""labkit.models: the builder, its checks, and the parameter count by hand."""

import keras
import numpy as np
import pytest

from labkit.models import architecture, count_params_by_hand, layer_counts_by_hand, mlp

SHAPES = [
    dict(input_dim=784, hidden=(256, 128), output=10),
    dict(input_dim=784, hidden=(), output=10),
    dict(input_dim=784, hidden=(128,) * 8, output=10),
    dict(input_dim=8, hidden=(50, 50, 50), output=1),
    dict(input_dim=784, hidden=(1024, 1024), output=10),
]


def test_base_network_literal_count():
    # 784·256 + 256 + 256·128 + 128 + 128·10 + 10, the course's formula
    assert count_params_by_hand(784, (256, 128), 10) == 235_146


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_count_by_hand_equals_keras(shape):
    model = mlp(**shape)
    assert count_params_by_hand(**shape) == model.count_params()


def test_normalization_counts():
    mean, var = np.zeros(8), np.ones(8)
    constant = mlp(input_dim=8, hidden=(16,), output=1, normalization=(mean, var))
    assert constant.count_params() == count_params_by_hand(8, (16,), 1, "constant") == 8 * 16 + 16 + 17
    layer = keras.layers.Normalization()
    layer.adapt(np.random.default_rng(0).normal(size=(50, 8)).astype("float32"))
    adapted = keras.Sequential([keras.Input((8,)), layer, keras.layers.Dense(1)])
    assert adapted.count_params() == count_params_by_hand(8, (), 1, "adapted") == 17 + 9
    assert architecture(adapted)["normalization"] == "adapted"
    assert architecture(constant)["normalization"] == "constant"


def test_layer_rows_have_formulas():
    rows = layer_counts_by_hand(784, (256,), 10)
    assert [r.formula for r in rows] == ["784 × 256 + 256", "256 × 10 + 10"]
    assert [r.layer for r in rows] == ["hidden_1", "output"]


def test_architecture_of_a_student_sequential():
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    assert architecture(model) == {"input_dim": 784, "hidden": [64], "output": 10, "normalization": None}


def test_l2_follows_the_course_formula():
    model = mlp(hidden=(32,), l2=[0.02, 0.0])
    first, last = (layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    assert first.kernel_regularizer.l2 == pytest.approx(0.01)  # (λ/2)‖w‖²
    assert last.kernel_regularizer is None


def test_readable_deterministic_names():
    names = [layer.name for layer in mlp(hidden=(8, 8)).layers]
    assert names == ["hidden_1", "hidden_2", "output"]


@pytest.mark.parametrize(
    "kwargs, field, value",
    [
        (dict(activation="relux"), "activation", "relux"),
        (dict(kernel_initializer="glorot"), "kernel_initializer", "glorot"),
        (dict(hidden=(32,), l2=[0.1, 0.1, 0.1]), "l2", "[0.1, 0.1, 0.1]"),
        (dict(l2=-1.0), "l2", "-1.0"),
        (dict(hidden=(0,)), "hidden", "0"),
        (dict(input_dim=-3), "input_dim", "-3"),
        (dict(output=1.5), "output", "1.5"),
    ],
)
def test_bad_arguments_name_field_and_value(kwargs, field, value):
    with pytest.raises(ValueError) as error:
        mlp(**kwargs)
    assert field in str(error.value) and value in str(error.value)


def test_student_sequential_equals_labkit_mlp():
    student = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    from labkit.models import same_architecture

    assert same_architecture(student, mlp(hidden=(256, 128)))
    assert not same_architecture(student, mlp(hidden=(256, 64)))
    assert not same_architecture(student, mlp(hidden=(256, 128), activation="tanh"))


def test_importing_models_turns_the_compilation_cache_on(tmp_path):
    """Chapters import labkit.models before building the student's own networks: their
    initialisers must already be cached on a warm re-execution, not only mlp()'s."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "jax-cache"
    code = ("import labkit.models, jax, keras\n"
            "keras.layers.Dense(7, kernel_initializer='he_normal').build((None, 5))\n"
            "print(jax.config.jax_compilation_cache_dir)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "LABKIT_JAX_CACHE": str(folder)})
    assert done.stdout.strip() == str(folder)
    assert any(folder.iterdir())  # the initialiser's compilation was written there
