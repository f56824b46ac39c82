"""Keras model builders for the book, and their parameter count by hand.

``mlp`` builds the dense network a student would write, with readable layer
names; ``count_params_by_hand`` recomputes its size from the architecture alone
(no Keras), so the book can check Keras' ``summary()`` against the course formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from labkit import _env  # noqa: F401  (KERAS_BACKEND before Keras)

# Importing this module means Keras models are coming: the chapters import it before they
# build the student's own networks, whose weight initialisers compile per shape.  With the
# persistent compilation cache on from here, a warm re-execution loads them (B: 3.4 -> 0.6 s).
_env.enable_compilation_cache()

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "mlp",
    "LayerCount",
    "layer_counts_by_hand",
    "count_params_by_hand",
    "architecture",
    "same_architecture",
]

#: Activations the book uses (a subset of Keras' names, checked before building).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softmax", "elu", "gelu", "selu")

#: Keras initialiser names the book compares (chapter B) plus the usual ones.
INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "random_uniform",
    "random_normal",
    "lecun_uniform",
    "lecun_normal",
    "zeros",
    "ones",
)


def _check_positive_int(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")
    return value


def _check_choice(field: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {field} {value!r}; choose one of {', '.join(choices)}")
    return value


def _l2_per_layer(l2, n_dense: int) -> list[float]:
    """One λ per Dense layer (hidden layers then output), validated."""
    values = [l2] * n_dense if isinstance(l2, (int, float)) else list(l2)
    if len(values) != n_dense:
        raise ValueError(
            f"l2 has {len(values)} values but the network has {n_dense} Dense layers "
            f"(hidden layers + output): give a scalar or {n_dense} values, got {l2!r}"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"l2 values must be numbers, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"l2 values must be finite and >= 0, got {value!r}")
    return [float(v) for v in values]


def _check_normalization(normalization, input_dim: int):
    if normalization is None:
        return None
    try:
        mean, variance = normalization
    except (TypeError, ValueError):
        raise ValueError(
            "normalization must be a (mean, variance) pair computed on the training split, "
            f"got {type(normalization).__name__}"
        ) from None
    mean = [float(v) for v in mean]
    variance = [float(v) for v in variance]
    if len(mean) != input_dim or len(variance) != input_dim:
        raise ValueError(
            f"normalization mean and variance need {input_dim} values (input_dim), "
            f"got {len(mean)} and {len(variance)}"
        )
    if not all(math.isfinite(v) for v in mean + variance) or min(variance) < 0:
        raise ValueError("normalization mean/variance must be finite, variance >= 0")
    return mean, variance


def mlp(
    input_dim: int = 784,
    hidden: Sequence[int] = (256, 128),
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float | Sequence[float] = 0.0,
    output: int = 10,
    output_activation: str | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    name: str = "mlp",
):
    """A dense network ``input → hidden… → output`` as a ``keras.Sequential``.

    ``l2`` follows the course's penalty (λ/2)‖w‖²: a scalar λ for every Dense
    layer or one λ per Dense layer (hidden layers, then the output layer); Keras'
    ``L2(l2)`` adds ``l2·Σw²``, so each layer gets ``L2(λ/2)`` on its kernel.
    ``normalization`` takes the training split's per-feature (mean, variance):
    a ``Normalization`` layer built from them survives ``to_json()``, whereas an
    ``adapt()``-ed one keeps its statistics in weights that serialisation drops.
    ``output_activation`` defaults to softmax for several outputs, linear for one.
    Layers are named ``normalization``, ``hidden_1``… ``output`` so that the same
    architecture always gets the same config (and the same run key).
    """
    import keras

    input_dim = _check_positive_int("input_dim", input_dim)
    output = _check_positive_int("output", output)
    if isinstance(hidden, (int, str)) or hidden is None:
        raise ValueError(f"hidden must be a sequence of layer widths, got {hidden!r}")
    hidden = [_check_positive_int("hidden", width) for width in hidden]
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("kernel_initializer", kernel_initializer, INITIALIZERS)
    if output_activation is None:
        output_activation = "softmax" if output > 1 else "linear"
    _check_choice("output_activation", output_activation, ACTIVATIONS)
    lambdas = _l2_per_layer(l2, len(hidden) + 1)
    normalization = _check_normalization(normalization, input_dim)

    layers = [keras.Input(shape=(input_dim,), name="input")]
    if normalization is not None:
        mean, variance = normalization
        layers.append(keras.layers.Normalization(mean=mean, variance=variance, name="normalization"))
    widths = [*hidden, output]
    for index, (units, lam) in enumerate(zip(widths, lambdas), start=1):
        is_output = index == len(widths)
        layers.append(
            keras.layers.Dense(
                units,
                activation=output_activation if is_output else activation,
                kernel_initializer=kernel_initializer,
                kernel_regularizer=keras.regularizers.L2(lam / 2) if lam > 0 else None,
                name="output" if is_output else f"hidden_{index}",
            )
        )
    return keras.Sequential(layers, name=name)


@dataclass(frozen=True)
class LayerCount:
    """One row of the by-hand parameter count: the formula and its value."""

    layer: str
    formula: str
    trainable: int
    non_trainable: int = 0

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def layer_counts_by_hand(
    input_dim: int,
    hidden: Sequence[int],
    output: int,
    normalization: str | None = None,
) -> list[LayerCount]:
    """Parameters per layer from the architecture alone (no Keras involved).

    A Dense layer with ``n`` inputs and ``u`` units holds ``n·u`` weights and
    ``u`` biases.  ``normalization`` is ``None``, ``"constant"`` (built from a
    given mean and variance: no weights) or ``"adapted"`` (``adapt()`` stores
    mean and variance per feature plus a sample count as non-trainable weights).
    """
    rows = []
    if normalization == "adapted":
        rows.append(LayerCount("normalization", f"2 × {input_dim} + 1", 0, 2 * input_dim + 1))
    elif normalization == "constant":
        rows.append(LayerCount("normalization", "0 (moyenne et variance fixées)", 0, 0))
    elif normalization is not None:
        raise ValueError(
            f"normalization must be None, 'constant' or 'adapted', got {normalization!r}"
        )
    fan_in = input_dim
    widths = [*hidden, output]
    for index, units in enumerate(widths, start=1):
        name = "output" if index == len(widths) else f"hidden_{index}"
        rows.append(LayerCount(name, f"{fan_in} × {units} + {units}", fan_in * units + units))
        fan_in = units
    return rows


def count_params_by_hand(
    input_dim: int = 784,
    hidden: Sequence[int] = (256, 128),
    output: int = 10,
    normalization: str | None = None,
) -> int:
    """Total parameters (trainable and not) by the course formula: Σ nᵢ·uᵢ + uᵢ."""
    return sum(row.total for row in layer_counts_by_hand(input_dim, hidden, output, normalization))


def architecture(model) -> dict:
    """Read ``input_dim``, ``hidden``, ``output`` and ``normalization`` back from a model.

    This lets the report count a model's parameters by hand from its structure
    and compare with Keras' own count, whatever built the model.
    """
    import keras

    input_dim = int(model.inputs[0].shape[-1])
    widths, normalization = [], None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            normalization = "adapted" if layer.weights else "constant"
        elif isinstance(layer, keras.layers.Dense):
            widths.append(int(layer.units))
        elif layer.weights:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not a Dense layer")
    if not widths:
        raise ValueError("the model has no Dense layer")
    return {"input_dim": input_dim, "hidden": widths[:-1], "output": widths[-1],
            "normalization": normalization}


def _unnamed(config):
    """A Keras config with every layer and model name removed (names do not change the maths)."""
    if isinstance(config, dict):
        return {k: _unnamed(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_unnamed(v) for v in config]
    return config


def same_architecture(model, other) -> bool:
    """True when two models compute the same function family (layers, sizes, activations,
    initialisers, regularisers), whatever their layer names: a student's ``Sequential``
    against the one labkit builds."""
    import json

    return _unnamed(json.loads(model.to_json())) == _unnamed(json.loads(other.to_json()))
