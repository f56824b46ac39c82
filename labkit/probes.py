"""Measurements taken inside a network while it trains, stored column-wise in its record.

Chapter B needs the signal at initialisation (activation and gradient spread per layer),
chapter C the weights under L2 (norms over epochs, histograms).  A probe is measured at
chosen epochs (0 = before training) on the first :data:`SIGNAL_BATCH` validation images.
:class:`Watch`, the callback every run trains with, also times epochs and stops a run
whose loss is no longer a number.
"""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np

__all__ = ["PROBES", "Watch", "signal_stats", "weight_norms", "weight_histograms"]

SIGNAL_BATCH = 512
HISTOGRAM_BINS = 41


def _dense(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def weight_norms(model, **_) -> list[dict]:
    """Frobenius norm of each Dense kernel: what L2 shrinks."""
    return [{"layer": i, "layer_name": layer.name,
             "value": float(np.linalg.norm(np.asarray(layer.kernel.numpy(), dtype="float64")))}
            for i, layer in enumerate(_dense(model), start=1)]


def weight_histograms(model, **_) -> list[dict]:
    """Histogram of each Dense kernel on a symmetric range around zero."""
    rows = []
    for i, layer in enumerate(_dense(model), start=1):
        kernel = np.asarray(layer.kernel.numpy(), dtype="float64").ravel()
        bound = float(np.max(np.abs(kernel))) or 1.0
        counts, edges = np.histogram(kernel, bins=HISTOGRAM_BINS, range=(-bound, bound))
        rows += [{"layer": i, "layer_name": layer.name, "bin_left": float(left), "bin_right": float(right),
                  "count": int(count)} for count, left, right in zip(counts, edges[:-1], edges[1:])]
    return rows


def signal_stats(model, x, y, loss, **_) -> list[dict]:
    """Forward and backward signal per Dense layer on a fixed batch (std and mean of each).

    ``activation``: the layer's output; ``gradient``: ∂loss/∂z of its pre-activation
    z = xW + b, per example (the back-propagated signal of Glorot & Bengio, 2010);
    ``weight_gradient``: ∂loss/∂W.
    """
    import jax
    import jax.numpy as jnp

    dense = _dense(model)
    kernels = [jnp.asarray(layer.kernel.value) for layer in dense]

    def forward(kernels, shifts):
        h, activations, i = jnp.asarray(x), [], 0
        for layer in model.layers:
            if layer in dense:
                z = h @ kernels[i] + (jnp.asarray(layer.bias.value) if layer.bias is not None else 0)
                h = layer.activation(z + shifts[i])  # Dense(use_bias=False) has no bias
                activations.append(h)
                i += 1
            else:
                h = layer(h)
        return jnp.mean(loss(jnp.asarray(y), h)), activations

    shifts = [jnp.zeros((len(x), layer.units)) for layer in dense]
    (_, activations), (kernel_grads, shift_grads) = jax.value_and_grad(
        forward, argnums=(0, 1), has_aux=True)(kernels, shifts)
    rows = []
    for i, layer in enumerate(dense, start=1):
        measured = {"activation": activations[i - 1], "gradient": shift_grads[i - 1] * len(x),
                    "weight_gradient": kernel_grads[i - 1]}
        for quantity, values in measured.items():
            values = np.asarray(values, dtype="float64")
            rows += [{"layer": i, "layer_name": layer.name, "quantity": quantity, "stat": stat,
                      "value": float(value)} for stat, value in (("std", values.std()), ("mean", values.mean()))]
    return rows


PROBES = {"weight_norm": weight_norms, "weight_hist": weight_histograms, "signal": signal_stats}


def _trace(key: str) -> None:
    """Append the key to the file ``LABKIT_TRAIN_LOG`` names: a count of trainings started,
    across processes (tests prove "trained exactly once" with it)."""
    if os.environ.get("LABKIT_TRAIN_LOG"):
        with open(os.environ["LABKIT_TRAIN_LOG"], "a", encoding="utf-8") as log:
            log.write(key + "\n")


class Watch(keras.callbacks.Callback):
    """Times each epoch, stops a diverging run (its loss is NaN or infinite) and measures probes."""

    def __init__(self, run, data):
        super().__init__()
        self.key, self.probes = run.key, run.probes
        self.epochs = set(run.probe_schedule)
        self.x, self.y = data.x_val[:SIGNAL_BATCH], data.y_val[:SIGNAL_BATCH]
        self.loss = keras.losses.get(run.loss)
        self.tables: dict[str, dict[str, list]] = {name: {} for name in self.probes}
        self.epoch_seconds: list[float] = []
        self.diverged = False
        self.seconds = 0.0

    def measure(self, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        for name in self.probes:
            for row in PROBES[name](self.model, x=self.x, y=self.y, loss=self.loss):
                for column, value in {"epoch": epoch, **row}.items():
                    self.tables[name].setdefault(column, []).append(value)

    def on_train_begin(self, logs=None):
        _trace(self.key)
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.measure(0)
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.epoch_started)
        if not math.isfinite(float((logs or {}).get("loss", math.nan))):
            self.diverged = True
            self.model.stop_training = True
        else:
            self.measure(epoch + 1)

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.started
