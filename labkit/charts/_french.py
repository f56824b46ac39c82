"""The charts' French wording: column and metric titles, value and layer labels, articles for titles."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = [
    # titles
    "METRIC_TITLES",
    "SPLIT_TITLES",
    "FIELD_TITLES",
    "field_title",
    "metric_title",
    "facet_suffix",
    # words
    "lower_first",
    "article",
    "short",
    "int_fr",
    # labels of values
    "value_label",
    "labels",
    "layer_label",
    "layer_names",
]

METRIC_TITLES = {
    "accuracy": "Exactitude",
    "loss": "Perte",
    "crossentropy": "Entropie croisée",
    "mae": "Erreur absolue moyenne (100 k$)",
    "rmse": "RMSE (100 k$)",
    "mse": "Erreur quadratique moyenne ((100 k$)²)",
}
SPLIT_TITLES = {"train": "entraînement", "validation": "validation", "test": "test"}
FIELD_TITLES = {
    "lr": "Taux d'apprentissage",
    "l2": "λ (pénalité L2)",
    "depth": "Profondeur (couches cachées)",
    "width": "Largeur (neurones par couche)",
    "units": "Neurones par couche",
    "init": "Initialisation",
    "initializer": "Initialisation",
    "activation": "Activation",
    "optimizer": "Optimiseur",
    "batch_size": "Taille de lot",
    "dropout": "Dropout",
    "epochs": "Époques",
    "model": "Modèle",
    "seed": "Graine",
    "epoch": "Époque",
    "layer": "Couche",
    "params": "Nombre de paramètres",
    "n_params": "Nombre de paramètres",
    "seconds_per_epoch": "Secondes par époque",
}
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def field_title(name: str) -> str:
    """French axis/legend title for a column name (the name itself when unknown)."""
    return FIELD_TITLES.get(name, name)


def metric_title(metric: str, split: str | None = None) -> str:
    """'Exactitude (validation)': the y title names the split when the chart shows only one."""
    text = METRIC_TITLES.get(metric, metric)
    return f"{text} ({SPLIT_TITLES.get(split, split)})" if split else text


def facet_suffix(facet: str | None, facet_title: str | None) -> str:
    """', par initialisation': what a default title adds when the chart has one panel per value."""
    return f", par {lower_first(facet_title or field_title(facet))}" if facet else ""


def lower_first(text: str) -> str:
    """A title inside a sentence: 'Taux d'…' → 'taux d'…', but acronyms ('RMSE') stay as they are."""
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def article(name: str) -> str:
    """'le taux d'apprentissage', 'la profondeur', 'λ'... for default titles."""
    lowered = lower_first(name)
    feminine = ("profondeur", "largeur", "taille", "pénalité", "initialisation", "activation")
    if not lowered[:1].isalpha() or lowered[:1] in "λ":
        return lowered
    if lowered[:1] in "aeiouyéè":
        return "l'" + lowered
    return ("la " if lowered.startswith(feminine) else "le ") + lowered


def short(name: str) -> str:
    """'λ (pénalité L2)' → 'λ': the name without its parenthesised gloss."""
    return name.split(" (")[0]


def int_fr(count: int) -> str:
    """An integer with French digit grouping (narrow no-break space): 4 000."""
    return f"{int(count):,}".replace(",", "\u202f")


def value_label(value) -> str:
    """A grid value as a French label: ``0,001``, ``10⁻⁵``, ``oui``."""
    if isinstance(value, (bool, np.bool_)):
        return "oui" if value else "non"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        text = f"{float(value):g}"
        if "e" in text:
            mantissa, exponent = text.split("e")
            power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
            return power if mantissa == "1" else f"{mantissa.replace('.', ',')}·{power}"
        return text.replace(".", ",")
    return str(value)


def labels(frame: pd.DataFrame, column: str | None) -> tuple[pd.Series, list[str]]:
    """French labels for a grid column and their order (numeric order when numeric).

    Vega-Lite would sort '0,01' before '0,001' as text: the order travels with the labels.
    """
    if column is None:
        return pd.Series("", index=frame.index), [""]
    values = frame[column]
    order = sorted(pd.unique(values), key=lambda v: (isinstance(v, str), v))
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        order = list(pd.unique(values))
    names = {v: value_label(v) for v in order}
    return values.map(names), [names[v] for v in order]


def layer_label(name) -> str:
    """Keras-style layer names in French: hidden_2 → 'cachée 2', output → 'sortie'."""
    text = str(name)
    if text.startswith("hidden_"):
        return "cachée " + text[len("hidden_") :]
    return {"output": "sortie", "input": "entrée"}.get(text, text)


def layer_names(data: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """French layer labels and their order by depth (``layer_name`` when present, else ``layer``)."""
    names = data["layer_name"] if "layer_name" in data else "couche " + data["layer"].astype(str)
    named = names.map(layer_label)
    order = list(
        pd.DataFrame({"l": data["layer"], "n": named}).sort_values("l")["n"].drop_duplicates()
    )
    return named, order
