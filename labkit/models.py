"""Parameters of a dense network counted by hand, next to the count Keras gives.

The course asks for every network's size by hand, checked against ``summary()``.  The
count by hand reads only the architecture (widths of the layers): a ``Dense`` layer with
``n`` inputs and ``u`` units holds ``n × u`` weights and ``u`` biases; a ``Normalization``
built from a given mean and variance holds none, an ``adapt()``-ed one holds its mean,
variance and sample count (``2n + 1``, not trained).  A disagreement with Keras raises:
the formula or the model would not be what the chapter says.
"""

from __future__ import annotations

import keras
import pandas as pd

from labkit import fr
from labkit.report import table

__all__ = ["ParameterCountMismatch", "param_counts", "param_table"]


class ParameterCountMismatch(AssertionError):
    """Keras and the count by hand disagree."""


def param_counts(model: keras.Model) -> pd.DataFrame:
    """One row per layer with weights: ``layer``, ``formula``, ``by_hand``, ``keras``."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: start it with keras.Input(shape=(n,))")
    rows, width = [], int(model.inputs[0].shape[-1])
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            formula, by_hand = f"{width} × {layer.units} + {layer.units}", width * layer.units + layer.units
            width = layer.units
        elif isinstance(layer, keras.layers.Normalization):
            adapted = bool(layer.weights)
            formula = f"2 × {width} + 1 (non entraînés)" if adapted else "0 (moyenne et variance données)"
            by_hand = 2 * width + 1 if adapted else 0
        elif layer.weights:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no count by hand here")
        else:
            continue
        rows.append({"layer": layer.name, "formula": formula, "by_hand": by_hand, "keras": layer.count_params()})
    counts = pd.DataFrame(rows)
    wrong = counts[counts["by_hand"] != counts["keras"]]
    if len(wrong) or counts["by_hand"].sum() != model.count_params():
        raise ParameterCountMismatch(f"count by hand differs from Keras':\n{counts}\n"
                                     f"Keras total: {model.count_params()}")
    return counts


def param_table(model: keras.Model):
    """The counts as a table for the page, with the total (raises if Keras disagrees)."""
    counts = param_counts(model)
    shown = pd.DataFrame({"Couche": [f"`{name}`" for name in counts["layer"]] + ["**Total**"],
                          "Formule": [*counts["formula"], ""],
                          "À la main": [fr.num(n) for n in counts["by_hand"]] + [f"**{fr.num(counts['by_hand'].sum())}**"],
                          "Keras": [fr.num(n) for n in counts["keras"]] + [f"**{fr.num(model.count_params())}**"]})
    return table(shown)
