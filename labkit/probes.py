"""Probes: extra measurements taken during a run and stored in its record.

Chapter B needs the signal at initialisation (activation and gradient spread per
layer), chapter C the weights under L2 (norms over epochs, histograms).  A probe
is measured at chosen epochs (0 = before training) on a fixed batch, and its
rows are stored column-wise so the record stays plain JSON.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["PROBES", "ProbeRecorder", "signal_stats", "weight_norms", "weight_histograms"]

#: Size of the fixed batch the signal probe measures (first validation images).
SIGNAL_BATCH = 512
HISTOGRAM_BINS = 41


def _dense_layers(model):
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def weight_norms(model, **_) -> list[dict]:
    """Frobenius norm of each Dense kernel: what L2 shrinks."""
    rows = []
    for index, layer in enumerate(_dense_layers(model), start=1):
        kernel = np.asarray(layer.kernel.numpy(), dtype="float64")
        rows.append({"layer": index, "layer_name": layer.name, "value": float(np.linalg.norm(kernel))})
    return rows


def weight_histograms(model, **_) -> list[dict]:
    """Histogram of each Dense kernel on a symmetric range around zero."""
    rows = []
    for index, layer in enumerate(_dense_layers(model), start=1):
        kernel = np.asarray(layer.kernel.numpy(), dtype="float64").ravel()
        bound = float(np.max(np.abs(kernel))) or 1.0
        counts, edges = np.histogram(kernel, bins=HISTOGRAM_BINS, range=(-bound, bound))
        for count, left, right in zip(counts, edges[:-1], edges[1:]):
            rows.append({"layer": index, "layer_name": layer.name, "bin_left": float(left),
                         "bin_right": float(right), "count": int(count)})
    return rows


def signal_stats(model, x, y, loss, **_) -> list[dict]:
    """Forward and backward signal per Dense layer on a fixed batch.

    ``activation``: the layer's output (after its activation); ``gradient``:
    ∂loss/∂z of its pre-activation z = xW + b (the back-propagated signal of
    Glorot & Bengio, 2010); ``weight_gradient``: ∂loss/∂W.  Each as std and mean.
    """
    import jax
    import jax.numpy as jnp

    layers = list(model.layers)
    dense = _dense_layers(model)
    kernels = [jnp.asarray(layer.kernel.value) for layer in dense]
    loss_fn = loss

    def forward(kernels, shifts):
        h, activations, i = jnp.asarray(x), [], 0
        for layer in layers:
            if layer in dense:
                z = h @ kernels[i] + jnp.asarray(layer.bias.value) + shifts[i]
                h = layer.activation(z)
                activations.append(h)
                i += 1
            else:
                h = layer(h)
        return jnp.mean(loss_fn(jnp.asarray(y), h)), activations

    shifts = [jnp.zeros((len(x), layer.units)) for layer in dense]
    (_, activations), (kernel_grads, shift_grads) = jax.value_and_grad(
        forward, argnums=(0, 1), has_aux=True
    )(kernels, shifts)
    rows = []
    for index, layer in enumerate(dense, start=1):
        measured = {
            "activation": activations[index - 1],
            # mean loss over the batch: rescale so the value is the per-example gradient
            "gradient": shift_grads[index - 1] * len(x),
            "weight_gradient": kernel_grads[index - 1],
        }
        for quantity, values in measured.items():
            values = np.asarray(values, dtype="float64")
            for stat, value in (("std", values.std()), ("mean", values.mean())):
                rows.append({"layer": index, "layer_name": layer.name, "quantity": quantity,
                             "stat": stat, "value": float(value)})
    return rows


PROBES: dict[str, Callable[..., list[dict]]] = {
    "weight_norm": weight_norms,
    "weight_hist": weight_histograms,
    "signal": signal_stats,
}


class ProbeRecorder:
    """Collects probe rows at the requested epochs into column-wise tables."""

    def __init__(self, names, epochs: set[int], x, y, loss):
        unknown = [name for name in names if name not in PROBES]
        if unknown:
            raise ValueError(f"unknown probe {unknown[0]!r}; choose among {', '.join(PROBES)}")
        self.names, self.epochs = tuple(names), epochs
        self.x, self.y, self.loss = x[:SIGNAL_BATCH], y[:SIGNAL_BATCH], loss
        self.tables: dict[str, dict[str, list]] = {name: {} for name in self.names}

    def measure(self, model, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        for name in self.names:
            for row in PROBES[name](model, x=self.x, y=self.y, loss=self.loss):
                table = self.tables[name]
                for column, value in {"epoch": epoch, **row}.items():
                    table.setdefault(column, []).append(value)
