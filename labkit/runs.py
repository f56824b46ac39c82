"""A run is data: a compiled Keras model and fit's arguments, hashed into a key.

``Run(model, data="mnist", epochs=20, batch_size=128)`` takes the model a chapter
builds and compiles; its *spec* is plain JSON (the model's Keras config, the compile's
optimizer, loss and metrics, the data split and fit's arguments, the seed), and its key
the sha256 of that spec.  :func:`fit` is the Keras that trains a spec, in any process:
it rebuilds the model from its config after seeding, compiles it and calls ``fit``.
:func:`train` serves a run from the store, or fits it here and stores it.

Keras names layers per process (``dense_3`` in one, ``dense`` in the next), so the
config is hashed with the names a dense network's layers play: ``input``,
``normalization``, ``hidden_1``… ``output``, in a model named ``mlp``.  Names do not
change the arithmetic, and a student's ``Sequential`` gets the key of the same network
built by any other code.

Every field is checked where it is given, and the message names the field, the value
and the fix; numbers and Keras' aliases are normalised, so one computation has one key.
A record is served only if :func:`check_record` finds it consistent with its spec and
with itself.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from functools import cached_property

import numpy as np
import pandas as pd

from labkit import data as datasets
from labkit import settings
from labkit.store import FORMAT, Store, check_memo, digest, finite

__all__ = ["Run", "Result", "fit", "train", "open_store", "check_record"]

#: What each dataset asks of a model: input width, output units, and the losses its labels admit.
SHAPES = {"mnist": (784, 10), "california": (8, 1)}
LOSSES = {"mnist": ("sparse_categorical_crossentropy",),
          "california": ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh",
                         "mean_absolute_percentage_error", "mean_squared_logarithmic_error")}
#: Keras' other names for one loss or metric: one computation, one key.
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "mape": "mean_absolute_percentage_error",
           "msle": "mean_squared_logarithmic_error", "acc": "accuracy"}
#: Keras' built-in optimizers that ``keras.optimizers.get`` rebuilds from their config by name.
OPTIMIZERS = ("adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "ftrl", "lion", "muon",
              "nadam", "rmsprop", "sgd")
#: Short names of metrics in histories (chapter C reads the data loss as ``crossentropy``).
SHORT = {"sparse_categorical_crossentropy": "crossentropy", "mean_absolute_error": "mae",
         "root_mean_squared_error": "rmse", "mean_squared_error": "mse"}
_COMPILE_DEFAULTS = {"loss_weights": None, "weighted_metrics": None, "run_eagerly": False,
                     "steps_per_execution": 1, "jit_compile": True}
_REPLACEABLE = ("data", "train_size", "validation", "split_seed", "epochs", "batch_size",
                "early_stopping", "evaluate_test", "keep_predictions", "probes", "probe_epochs", "seed")
#: The measurements :mod:`labkit.probes` can take during a run, each with the columns of its
#: table: names in ``PROBE_NAME_COLUMNS``, numbers in the others.
PROBE_COLUMNS = {"weight_norm": {"epoch", "layer", "layer_name", "value"},
                 "weight_hist": {"epoch", "layer", "layer_name", "bin_left", "bin_right", "count"},
                 "signal": {"epoch", "layer", "layer_name", "quantity", "stat", "value"}}
PROBE_NAMES = tuple(PROBE_COLUMNS)
PROBE_NAME_COLUMNS = ("layer_name", "quantity", "stat")
_SEED_LIMIT = 2**32  # NumPy, Keras and scikit-learn seeds are 32-bit


# -- the spec ---------------------------------------------------------------------------
def canonical_model(config: dict) -> dict:
    """A Sequential config with each layer named by its role (see the module docstring)."""
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        raise ValueError("the model must be a keras.Sequential (functional models are not supported)")
    config = json.loads(json.dumps(config))
    config["compile_config"] = {}  # the compile's settings are fields of the spec
    inner = config["config"]
    inner["name"] = "mlp"
    dense = [layer for layer in inner["layers"] if layer["class_name"] == "Dense"]
    counts: dict[str, int] = {}
    for layer in inner["layers"]:
        kind, layer_config = layer["class_name"], layer["config"]
        if kind == "Dense":
            position = next(i for i, other in enumerate(dense, 1) if other is layer)
            layer_config["name"] = "output" if position == len(dense) else f"hidden_{position}"
        else:
            base = {"InputLayer": "input"}.get(kind, "".join(
                f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(kind)))
            layer_config["name"] = base if base not in counts else f"{base}_{counts[base]}"
            counts[base] = counts.get(base, 0) + 1
    return config


def _model_shape(config: dict) -> tuple[int, int, str]:
    """(input width, output units, output activation) read from a Sequential config; an
    ``Activation`` or ``Softmax`` layer after the last Dense gives the output activation."""
    layers = config["config"]["layers"]
    shape = layers[0]["config"].get("batch_shape") or layers[0]["config"].get("batch_input_shape")
    last = max((i for i, layer in enumerate(layers) if layer["class_name"] == "Dense"), default=None)
    if not shape or last is None:
        raise ValueError("the model must start with keras.Input(shape=(n,)) and end with a Dense layer")
    activation = str(layers[last]["config"].get("activation"))
    for layer in layers[last + 1:]:
        if layer["class_name"] in ("Activation", "Softmax"):
            activation = str(layer["config"].get("activation", "softmax"))
    return int(shape[-1]), int(layers[last]["config"]["units"]), activation


def _integer(name, value, low, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value >= high):
        top = f" and < {high}" if high is not None else ""
        raise ValueError(f"{name} must be >= {low}{top}, got {value!r}")
    return int(value)


def _number(value) -> float:
    """A float written back with its shortest decimal: ``1`` and ``1.0``, or NumPy's float32
    ``0.1`` and Python's ``0.1``, give one key."""
    return float(str(value))


def _fraction(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not 0 < value < 1:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")
    return _number(value)


def _rate(value) -> float:
    """A learning rate as Keras holds it (float32), written back with its shortest decimal:
    ``lr=1``, ``1.0`` and the optimizer's ``0.10000000149`` for 0.1 give one key."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(np.float32(value)) or np.float32(value) <= 0:
        raise ValueError(f"learning_rate must be a number > 0 that float32 holds, got {value!r}: give the "
                         "optimizer a number, e.g. SGD(learning_rate=0.1) (learning-rate schedules are not supported)")
    return _number(np.float32(value))


def _flag(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _option(name, value):
    """An optimizer option as JSON holds it: NumPy scalars as Python ones."""
    value = value.item() if isinstance(value, np.generic) else value
    if value is not None and not isinstance(value, (bool, int, float, str)) \
            or isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"optimizer_options[{name!r}]={value!r} is not a finite number, a flag or a name")
    return value


def _compiled(model) -> dict:
    """The spec fields a compiled Keras model gives: its config, optimizer, loss and metrics."""
    import keras

    if not isinstance(model, keras.Sequential):
        raise TypeError(f"Run takes a compiled keras.Sequential, got {type(model).__name__}")
    compile_config = model.get_compile_config() if model.compiled else None
    if not compile_config:
        raise ValueError("compile the model first: model.compile(optimizer=..., loss=..., metrics=[...])")
    for name, default in _COMPILE_DEFAULTS.items():
        if compile_config.get(name, default) != default:
            raise ValueError(f"compile({name}={compile_config.get(name)!r}) is not supported by labkit.Run; "
                             f"leave it at its default ({default!r})")
    optimizer = model.optimizer
    name = type(optimizer).__name__.lower()
    if name not in OPTIMIZERS or type(optimizer) is not getattr(keras.optimizers, type(optimizer).__name__):
        raise ValueError(f"optimizer {type(optimizer).__name__} is not one of Keras' built-in optimizers "
                         f"({', '.join(OPTIMIZERS)}); a run must be rebuilt from its spec in any process")
    options, defaults = optimizer.get_config(), type(optimizer)().get_config()
    learning_rate = _rate(options.pop("learning_rate"))
    options = {k: float(v) if isinstance(defaults.get(k), float) and isinstance(v, int) else v
               for k, v in options.items() if k != "name" and defaults.get(k) != v}
    loss, metrics = compile_config["loss"], compile_config.get("metrics") or []
    if not isinstance(loss, str) or not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ValueError("give the loss and the metrics to compile() by name, e.g. "
                         "loss='sparse_categorical_crossentropy', metrics=['accuracy']")
    return {"model": json.loads(model.to_json()), "optimizer": name, "learning_rate": learning_rate,
            "optimizer_options": options, "loss": loss, "metrics": metrics}


def _checked_model(spec: dict) -> dict:
    """The canonical model of a spec, checked against its dataset and loss."""
    try:
        model = canonical_model(spec["model"])
        width, units, activation = _model_shape(model)
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(f"model is not the config of a keras.Sequential ({error}); give Run a compiled "
                         "keras.Sequential that starts with keras.Input(shape=(n,))") from None
    data, loss = spec["data"], spec["loss"]
    wanted_width, wanted_units = SHAPES[data]
    if (width, units) != (wanted_width, wanted_units):
        raise ValueError(f"data={data!r} needs a model with {wanted_width} inputs and {wanted_units} output "
                         f"unit(s); this one has {width} and {units}")
    if loss not in LOSSES[data]:
        raise ValueError(f"loss={loss!r} does not fit {data}'s labels; use one of {', '.join(LOSSES[data])}")
    if loss == "sparse_categorical_crossentropy" and activation != "softmax":
        raise ValueError("loss sparse_categorical_crossentropy expects probabilities: give the "
                         f"output layer activation='softmax' (it has {activation!r})")
    return model


def _checked_split(spec: dict) -> dict:
    data, validation, train_size = spec["data"], _fraction("validation", spec["validation"]), spec["train_size"]
    if not isinstance(data, str) or data not in datasets.DATASETS:
        raise ValueError(f"unknown dataset data={data!r}; choose one of {', '.join(datasets.DATASETS)}")
    if train_size is not None:
        train_size = _integer("train_size", train_size, 10)
        available = datasets.split_sizes(data, validation)["train"]
        if train_size >= available:
            raise ValueError(f"train_size={train_size} is not below the {available} training rows {data} "
                             f"has with validation={validation}; use train_size=None for all of them")
    return {"data": data, "validation": validation, "train_size": train_size,
            "split_seed": _integer("split_seed", spec["split_seed"], 0, _SEED_LIMIT)}


def _checked_compile(spec: dict) -> dict:
    """The optimizer, its settings, the loss and the metrics, by the names Keras gives them."""
    optimizer, options, loss, metrics = (spec[name] for name in ("optimizer", "optimizer_options", "loss", "metrics"))
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not one of Keras' built-in optimizers ({', '.join(OPTIMIZERS)})")
    if not isinstance(options, dict) or not all(isinstance(k, str) and k.isidentifier() for k in options) \
            or {"learning_rate", "name"} & set(options):
        raise ValueError(f"optimizer_options={options!r} must be a dict of the optimizer's other settings, "
                         "without learning_rate or name: the learning rate has its own field")
    if not isinstance(loss, str):
        raise ValueError(f"loss must be a name, e.g. 'sparse_categorical_crossentropy', got {loss!r}")
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) \
            or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"metrics must be a list of names, e.g. ['accuracy'], got {metrics!r}")
    names = [ALIASES.get(m, m) for m in metrics]  # 'mae' and 'mean_absolute_error' are one metric
    if twice := next((m for m in names if names.count(m) > 1), None):
        raise ValueError(f"metrics must be distinct names: {metrics!r} asks for {twice!r} twice; keep one of them")
    return {"optimizer": optimizer, "learning_rate": _rate(spec["learning_rate"]),
            "optimizer_options": {k: _option(k, v) for k, v in sorted(options.items())},
            "loss": ALIASES.get(loss, loss), "metrics": names}


def _checked_probes(spec: dict, epochs: int) -> dict:
    probes, probe_epochs = spec["probes"] if spec["probes"] is not None else (), spec["probe_epochs"]
    if isinstance(probes, str) or not isinstance(probes, (list, tuple)) \
            or not all(isinstance(p, str) and p in PROBE_NAMES for p in probes):
        raise ValueError(f"probes={probes!r} must be a list of probe names among {', '.join(PROBE_NAMES)}")
    if probe_epochs is not None:
        if not probes or not isinstance(probe_epochs, (list, tuple, range)) or not probe_epochs:
            raise ValueError(f"probe_epochs={probe_epochs!r} must be a non-empty list of epochs and needs probes "
                             "(leave it None to measure before training and after every epoch)")
        probe_epochs = sorted({_integer("probe_epochs", e, 0, epochs + 1) for e in probe_epochs})
    return {"probes": sorted(set(probes)), "probe_epochs": probe_epochs}


def _checked(spec: dict) -> dict:
    """The spec with every field validated and normalised (one computation, one key)."""
    unknown = set(spec) - set(Run.FIELDS)
    if unknown:
        raise ValueError(f"unknown run field {sorted(unknown, key=str)[0]!r}; fields are {', '.join(Run.FIELDS)}")
    spec = {name: spec.get(name) for name in Run.FIELDS}
    epochs = _integer("epochs", spec["epochs"], 1, 100_000)
    checked = {
        **spec, **_checked_split(spec), **_checked_compile(spec), **_checked_probes(spec, epochs),
        "epochs": epochs, "batch_size": _integer("batch_size", spec["batch_size"], 1, 2**31),
        "seed": _integer("seed", spec["seed"], 0, _SEED_LIMIT),
        "early_stopping": None if spec["early_stopping"] is None
        else _integer("early_stopping", spec["early_stopping"], 1),
        "evaluate_test": _flag("evaluate_test", spec["evaluate_test"]),
        "keep_predictions": _flag("keep_predictions", spec["keep_predictions"]),
    }
    if checked["keep_predictions"] and (not checked["evaluate_test"] or checked["data"] != "california"):
        raise ValueError("keep_predictions=True keeps the test predictions of a regression: it needs "
                         f"evaluate_test=True and data='california' (got {checked['evaluate_test']!r}, "
                         f"{checked['data']!r})")
    return {**checked, "model": _checked_model(checked)}


class Run:
    """One training, as data: a compiled Keras model, its data split and fit's arguments.

    ``validation`` is the fraction of the training set held out (seeded by ``split_seed``),
    ``train_size`` an optional subset of the rest.  ``early_stopping`` is a patience in
    epochs on the validation loss, best weights restored.  ``evaluate_test`` reads the
    test set once, at the end (``keep_predictions`` keeps its predictions).  ``probes``
    measure inside the network at ``probe_epochs`` (default: 0 and every epoch).
    """

    FIELDS = ("model", "data", "train_size", "validation", "split_seed", "epochs", "batch_size",
              "optimizer", "learning_rate", "optimizer_options", "loss", "metrics", "early_stopping",
              "evaluate_test", "keep_predictions", "probes", "probe_epochs", "seed")

    def __init__(self, model, *, data: str, epochs: int, batch_size: int, validation: float = 0.1,
                 train_size: int | None = None, split_seed: int = 0, early_stopping: int | None = None,
                 evaluate_test: bool = False, keep_predictions: bool = False, probes=(),
                 probe_epochs=None, seed: int = 0):
        self.spec = _checked({
            **_compiled(model), "data": data, "train_size": train_size, "validation": validation,
            "split_seed": split_seed, "epochs": epochs, "batch_size": batch_size,
            "early_stopping": early_stopping, "evaluate_test": evaluate_test,
            "keep_predictions": keep_predictions, "probes": probes, "probe_epochs": probe_epochs,
            "seed": seed})

    @classmethod
    def from_spec(cls, spec: dict) -> "Run":
        """The run of a spec (a record's, or one shipped to a worker), validated again."""
        if not isinstance(spec, dict):
            raise TypeError(f"a run spec is a dict, got {type(spec).__name__}")
        run = cls.__new__(cls)
        run.spec = _checked(spec)
        return run

    def replace(self, **changes) -> "Run":
        """A copy with data, fit or seed fields changed (a new model needs a new ``Run``)."""
        refused = set(changes) - set(_REPLACEABLE)
        if refused:
            raise ValueError(f"Run.replace cannot change {sorted(refused)}: build and compile a new model "
                             f"for that; it can change {', '.join(_REPLACEABLE)}")
        return Run.from_spec({**self.spec, **changes})

    @cached_property
    def key(self) -> str:
        return digest({"format": FORMAT, "spec": self.spec})

    def __getattr__(self, name):
        if name in Run.FIELDS:
            return self.spec[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"Run({self.key[:12]}, data={self.data!r}, lr={self.learning_rate:g}, seed={self.seed})"

    def split(self) -> datasets.Split:
        return datasets.split(self.data, self.validation, self.train_size, self.split_seed)

    @property
    def probe_schedule(self) -> list[int]:
        """The epochs the probes measure: ``probe_epochs``, by default 0 and every epoch."""
        return self.probe_epochs if self.probe_epochs is not None else list(range(self.epochs + 1))


# -- training -------------------------------------------------------------------------
def fit(run: Run) -> dict:
    """Train ``run`` in this process; return its record (not stored).

    The model is rebuilt from its config after seeding, so its initial
    weights and the order of its batches follow from the seed alone.
    :class:`~labkit.probes.Watch` times the epochs, stops a run whose loss
    is no longer a number and takes the probes.
    """
    import keras

    from labkit.probes import Watch

    data = run.split()
    keras.utils.set_random_seed(run.seed)
    model = keras.models.model_from_json(json.dumps(run.model))
    config = {"learning_rate": run.learning_rate, **run.optimizer_options}
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": run.optimizer, "config": config}),
        loss=run.loss,
        metrics=run.metrics,
        steps_per_execution=32,  # 32 batches per call into XLA: same updates
    )
    watch = Watch(run, data)
    callbacks = [watch]
    if run.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=run.early_stopping,
            restore_best_weights=True))
    history = model.fit(
        data.x_train, data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=run.epochs, batch_size=run.batch_size, shuffle=True,
        verbose=0, callbacks=callbacks)
    test = predictions = None
    if run.evaluate_test:
        test = model.evaluate(data.x_test, data.y_test, batch_size=2048,
                              verbose=0, return_dict=True)
    if run.keep_predictions:
        predictions = model.predict(data.x_test, batch_size=2048,
                                    verbose=0)[:, 0]
    return _record(run, history.history, watch, test, predictions, data)


def _record(run: Run, raw: dict, watch, test, predictions, data) -> dict:
    history = {"train": {}, "validation": {}}
    for name, values in raw.items():
        split, metric = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
        history[split][SHORT.get(metric, metric)] = [float(v) for v in values]
    epochs_run = len(raw.get("loss", []))
    return finite({
        "kind": "runs", "spec": run.spec, "history": history, "epochs_run": epochs_run,
        "diverged": watch.diverged, **_outcome(run, history, epochs_run, watch.diverged),
        "test": None if test is None else {SHORT.get(k, k): float(v) for k, v in test.items()},
        "predictions": None if predictions is None else [round(float(v), 5) for v in predictions],
        "probes": watch.tables, "seconds": watch.seconds, "epoch_seconds": watch.epoch_seconds,
        "started_at": watch.started_at, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sizes": data.sizes, "versions": versions(), "platform": machine(),
    })


def versions() -> dict:
    import jax
    import jaxlib
    import keras

    from labkit import __version__

    return {"python": platform.python_version(), "keras": keras.__version__, "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": np.__version__, "labkit": __version__,
            "backend": keras.backend.backend()}


def machine() -> dict:
    """What a record's numbers depend on besides its spec: XLA compiles for the host CPU, and
    the same run gives other last digits on a CPU with other vector extensions."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                name, _, value = line.partition(":")
                info.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    flags = (info.get("flags") or info.get("Features") or "").split()
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_vendor": info.get("vendor_id", ""), "cpu_family": info.get("cpu family", ""),
            "cpu_model": info.get("model", ""), "cpu_stepping": info.get("stepping", ""),
            "vector_extensions": sorted(f for f in flags if re.match(VECTOR_EXTENSIONS, f)),
            "machine": platform.machine(), "system": platform.system(), "cores": os.cpu_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


#: CPU flags that name vector instructions LLVM may use when XLA compiles for this CPU.
VECTOR_EXTENSIONS = r"(sse|ssse|avx|fma|f16c|amx|asimd|sve|neon)"


# -- records ---------------------------------------------------------------------------
#: The fields of a run record, each with its type; ``compute_seconds`` is in older records.
RECORD_FIELDS = {"key": str, "format": int, "kind": str, "checksum": str, "spec": dict, "history": dict,
                 "epochs_run": int, "diverged": bool, "stopped_early": bool, "best_epoch": int, "final": dict,
                 "test": (dict, type(None)), "predictions": (list, type(None)), "probes": dict,
                 "seconds": (int, float), "epoch_seconds": list, "started_at": str, "finished_at": str,
                 "sizes": dict, "versions": dict, "platform": dict}
OPTIONAL_FIELDS = {"compute_seconds": (int, float)}


def _numbers(values, what: str) -> None:
    """Numbers as a record holds them: JSON numbers, ``null`` for a NaN."""
    if not isinstance(values, list) or not all(
            v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{what} must be a list of numbers, got {values!r:.80}")


def _check_fields(record: dict) -> None:
    missing = set(RECORD_FIELDS) - set(record)
    extra = set(record) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS)
    if missing or extra:
        raise ValueError(f"fields missing {sorted(missing)}, unknown {sorted(extra)}")
    for name, kind in {**RECORD_FIELDS, **OPTIONAL_FIELDS}.items():
        value = record.get(name)
        if name in record and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
            kinds = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise TypeError(f"{name} must be of type {kinds.replace('NoneType', 'null')}, got {value!r:.80}")
    for name in ("versions", "platform"):
        for item, value in record[name].items():
            if not (value is None or isinstance(value, (int, float, str)) or isinstance(value, list)
                    and all(isinstance(v, str) for v in value)):
                raise TypeError(f"{name}.{item} must be a number, a name or a list of names")


def _check_history(record: dict, run: Run) -> list[str]:
    """The history's metrics (the same for training and validation), each one value per epoch."""
    history, epochs_run = record["history"], record["epochs_run"]
    if set(history) != {"train", "validation"} or not all(isinstance(h, dict) for h in history.values()):
        raise ValueError("history must hold train and validation metrics")
    metrics = sorted(history["train"])
    if metrics != sorted(history["validation"]) or "loss" not in metrics or len(metrics) != 1 + len(run.metrics):
        raise ValueError(f"history metrics {metrics} do not match the loss and metrics {run.metrics} of the spec")
    for split, values_of in history.items():
        for metric, values in values_of.items():
            _numbers(values, f"history {split}/{metric}")
            if len(values) != epochs_run:
                raise ValueError(f"history {split}/{metric} holds {len(values)} values for {epochs_run} epochs")
    return metrics


def _outcome(run: Run, history: dict, epochs_run: int, diverged: bool) -> dict:
    """What a history of one epoch or more implies (``fit`` records it, ``check_record`` checks it):
    whether the run stopped early, and the epoch whose weights it keeps (the last, or under early
    stopping the first of lowest validation loss, as Keras keeps it) with its metrics there."""
    best = epochs_run
    if run.early_stopping and not diverged:
        losses = [v if v is not None and math.isfinite(v) else math.inf for v in history["validation"]["loss"]]
        best = int(np.argmin(losses)) + 1
    return {"stopped_early": epochs_run < run.epochs and not diverged, "best_epoch": best,
            "final": {split: {m: values[best - 1] for m, values in metrics.items()}
                      for split, metrics in history.items()}}


def check_record(record: dict) -> None:
    """A run record's schema: every field present and of its type, and consistent with its
    spec and with itself (a re-sealed record whose values were edited is refused)."""
    _check_fields(record)
    run = Run.from_spec(record["spec"])
    if run.key != record["key"]:
        raise ValueError("its spec does not hash to its key")
    epochs_run, diverged = record["epochs_run"], record["diverged"]
    if not 1 <= epochs_run <= run.epochs:
        raise ValueError(f"epochs_run={epochs_run} outside 1..{run.epochs}")
    metrics = _check_history(record, run)
    if diverged != (record["history"]["train"]["loss"][-1] is None):
        raise ValueError(f"diverged={diverged} but the last training loss is "
                         f"{record['history']['train']['loss'][-1]!r}")
    implied = _outcome(run, record["history"], epochs_run, diverged)
    if record["stopped_early"] != implied["stopped_early"] or record["stopped_early"] and not run.early_stopping:
        raise ValueError(f"stopped_early={record['stopped_early']} after {epochs_run} of {run.epochs} epochs")
    if record["best_epoch"] != implied["best_epoch"] or record["final"] != implied["final"]:
        raise ValueError(f"best_epoch and final must be epoch {implied['best_epoch']} of the history")
    if (record["test"] is None) == run.evaluate_test:
        raise ValueError("test metrics must be present exactly when the spec evaluates the test set")
    if record["test"] is not None and (sorted(record["test"]) != metrics or not all(
            v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in record["test"].values())):
        raise ValueError(f"test must hold a number for each of {metrics}")
    sizes = datasets.split_sizes(run.data, run.validation, run.train_size)
    if record["sizes"] != sizes:
        raise ValueError(f"sizes {record['sizes']} are not the split's {sizes}")
    if (record["predictions"] is None) == run.keep_predictions:
        raise ValueError("predictions must be present exactly when the spec keeps them")
    if record["predictions"] is not None:
        _numbers(record["predictions"], "predictions")
        if len(record["predictions"]) != sizes["test"]:
            raise ValueError(f"{len(record['predictions'])} predictions for {sizes['test']} test rows")
    _check_probes(record, run)
    _numbers([record["seconds"], *record["epoch_seconds"]], "seconds")
    if len(record["epoch_seconds"]) != epochs_run:
        raise ValueError(f"epoch_seconds holds {len(record['epoch_seconds'])} values for {epochs_run} epochs")


def _check_probes(record: dict, run: Run) -> None:
    """Each probe asked for, measured at the probe epochs the run reached (a diverged run's
    last epoch is not measured)."""
    probes, epochs_run = record["probes"], record["epochs_run"]
    if sorted(probes) != run.probes:
        raise ValueError(f"probes {sorted(probes)} are not the spec's {run.probes}")
    measured = {e for e in run.probe_schedule if e < epochs_run or e == epochs_run and not record["diverged"]}
    for name, table in probes.items():
        columns = PROBE_COLUMNS[name] if measured else set()  # nothing measured: no column
        if not isinstance(table, dict) or set(table) != columns \
                or measured and (not isinstance(table["epoch"], list) or set(table["epoch"]) != measured):
            raise ValueError(f"probe {name} must be a table with columns {sorted(columns)} "
                             f"measured at epochs {sorted(measured)}")
        for column, values in table.items():
            if column in PROBE_NAME_COLUMNS:
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise TypeError(f"probe {name}/{column} must be a list of names")
            else:
                _numbers(values, f"probe {name}/{column}")
        if len({len(values) for values in table.values()}) > 1:
            raise ValueError(f"the columns of probe {name} differ in length")


def open_store(profile: str | None = None) -> Store:
    """The run store of a profile (default: the active one), with both record schemas."""
    return Store(settings.store_dir(profile), validators={"runs": check_record, "memo": check_memo})


# -- results ---------------------------------------------------------------------------
class Result:
    """A run's record, read back: history, final and test metrics, probes, timings."""

    def __init__(self, record: dict, cached: bool):
        self.record, self.cached = record, cached

    key = property(lambda self: self.record["key"])
    diverged = property(lambda self: self.record["diverged"])
    final = property(lambda self: self.record["final"].get("validation", {}))
    test = property(lambda self: self.record["test"])
    best_epoch = property(lambda self: self.record["best_epoch"])
    epoch_seconds = property(lambda self: self.record["epoch_seconds"])

    @property
    def history(self) -> pd.DataFrame:
        """Tidy: one row per (epoch, split, metric); test metrics at the epoch whose weights were kept."""
        rows = [(epoch, split, metric, np.nan if value is None else value)
                for split, metrics in self.record["history"].items()
                for metric, values in metrics.items()
                for epoch, value in enumerate(values, start=1)]
        rows += [(self.best_epoch, "test", metric, np.nan if value is None else value)
                 for metric, value in (self.test or {}).items()]
        return pd.DataFrame(rows, columns=["epoch", "split", "metric", "value"])

    def probe(self, name: str) -> pd.DataFrame:
        """The table of one probe (a name it did not record is refused, not an empty table)."""
        if name not in self.record["probes"]:
            raise KeyError(f"probe {name!r} was not recorded; this run has {sorted(self.record['probes'])}. "
                           f"Probes ({', '.join(PROBE_NAMES)}) are asked for by the run: Run(..., probes=[...])")
        return pd.DataFrame(self.record["probes"][name])

    @property
    def predictions(self) -> np.ndarray | None:
        values = self.record["predictions"]
        return None if values is None else np.asarray(values, dtype="float64")


def train(run: Run, store: Store | None = None) -> Result:
    """The result of ``run``: from the store if it is there, else trained here and stored."""
    if not isinstance(run, Run):
        raise TypeError(f"train() takes a labkit.Run, got {type(run).__name__}")
    store = store or open_store()
    record, cached = store.get_or_compute(run.key, lambda: fit(run),
                                          allow_compute=not settings.require_cached())
    return Result(record, cached)
