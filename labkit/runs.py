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
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from functools import cached_property

import numpy as np
import pandas as pd

from labkit import _env  # noqa: F401  (backend and XLA flags before Keras)
from labkit import data as datasets
from labkit import settings
from labkit.store import FORMAT, Store, check_memo, digest, finite

__all__ = ["Run", "Result", "fit", "train", "open_store", "check_record"]

#: Batches per call into XLA: the same updates as one batch per call, fewer round-trips.
STEPS_PER_EXECUTION = 32
#: What each dataset asks of a model: input width, output units, the activations its loss needs.
SHAPES = {"mnist": (784, 10), "california": (8, 1)}
#: Short names of metrics in histories (chapter C reads the data loss as ``crossentropy``).
SHORT = {"sparse_categorical_crossentropy": "crossentropy", "mean_absolute_error": "mae",
         "root_mean_squared_error": "rmse", "mean_squared_error": "mse"}
_COMPILE_DEFAULTS = {"loss_weights": None, "weighted_metrics": None, "run_eagerly": False,
                     "steps_per_execution": 1}
_REPLACEABLE = ("data", "train_size", "validation", "split_seed", "epochs", "batch_size",
                "early_stopping", "evaluate_test", "keep_predictions", "probes", "probe_epochs", "seed")
#: The measurements :mod:`labkit.probes` can take during a run.
PROBE_NAMES = ("weight_norm", "weight_hist", "signal")
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
    dense = [layer for layer in inner["layers"] if layer.get("class_name") == "Dense"]
    counts: dict[str, int] = {}
    for layer in inner["layers"]:
        kind, layer_config = layer.get("class_name"), layer["config"]
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
    """(input width, output units, output activation) read from a Sequential config."""
    layers = config["config"]["layers"]
    first = layers[0]["config"]
    shape = first.get("batch_shape") or first.get("batch_input_shape")
    with_units = [layer["config"] for layer in layers if "units" in layer["config"]]
    if not shape or not with_units:
        raise ValueError("the model must start with keras.Input(shape=(n,)) and end with a Dense layer")
    return int(shape[-1]), int(with_units[-1]["units"]), str(with_units[-1].get("activation"))


def _integer(name, value, low, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value >= high):
        top = f" and < {high}" if high is not None else ""
        raise ValueError(f"{name} must be >= {low}{top}, got {value!r}")
    return int(value)


def _fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")
    return float(value)


def _rate(value) -> float:
    """A learning rate as Keras holds it (float32), written back with its shortest decimal:
    ``lr=1``, ``1.0`` and the optimizer's ``0.10000000149`` for 0.1 give one key."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"the learning rate must be a finite number > 0, got {value!r} "
                         "(learning-rate schedules are not supported)")
    return float(str(np.float32(value)))


def _compiled(model) -> dict:
    """The spec fields a compiled Keras model gives: its config, optimizer, loss and metrics."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"Run takes a compiled keras.Sequential, got {type(model).__name__}")
    compile_config = model.get_compile_config() if model.compiled else None
    if not compile_config:
        raise ValueError("compile the model first: model.compile(optimizer=..., loss=..., metrics=[...])")
    for name, default in _COMPILE_DEFAULTS.items():
        if compile_config.get(name) != default:
            raise ValueError(f"compile({name}={compile_config.get(name)!r}) is not supported by labkit.Run; "
                             f"leave it at its default ({default!r})")
    optimizer = model.optimizer
    name = type(optimizer).__name__.lower()
    if type(keras.optimizers.get(name)) is not type(optimizer):
        raise ValueError(f"optimizer {type(optimizer).__name__} is not one of Keras' built-in optimizers")
    options, defaults = optimizer.get_config(), type(optimizer)().get_config()
    learning_rate = _rate(options.pop("learning_rate"))
    options = {k: v for k, v in options.items() if k not in ("name", "learning_rate") and defaults.get(k) != v}
    loss, metrics = compile_config["loss"], compile_config.get("metrics") or []
    if not isinstance(loss, str) or not all(isinstance(m, str) for m in metrics):
        raise ValueError("give the loss and the metrics to compile() by name, e.g. "
                         "loss='sparse_categorical_crossentropy', metrics=['accuracy']")
    return {"model": canonical_model(json.loads(model.to_json())), "optimizer": name,
            "learning_rate": learning_rate, "optimizer_options": options, "loss": loss,
            "metrics": list(metrics)}


def _checked(spec: dict) -> dict:
    """The spec with every field validated and normalised (one computation, one key)."""
    unknown = set(spec) - set(Run.FIELDS)
    if unknown:
        raise ValueError(f"unknown run field {sorted(unknown)[0]!r}; fields are {', '.join(Run.FIELDS)}")
    spec = {name: spec.get(name) for name in Run.FIELDS}
    if spec["data"] not in datasets.DATASETS:
        raise ValueError(f"unknown dataset data={spec['data']!r}; choose one of {', '.join(datasets.DATASETS)}")
    model = canonical_model(spec["model"])
    width, units, activation = _model_shape(model)
    wanted_width, wanted_units = SHAPES[spec["data"]]
    if (width, units) != (wanted_width, wanted_units):
        raise ValueError(f"{spec['data']} needs a model with {wanted_width} inputs and {wanted_units} "
                         f"output unit(s); this one has {width} and {units}")
    if spec["loss"] == "sparse_categorical_crossentropy" and activation != "softmax":
        raise ValueError("loss sparse_categorical_crossentropy expects probabilities: give the "
                         f"output layer activation='softmax' (it has {activation!r})")
    options = spec["optimizer_options"] or {}
    if not isinstance(options, dict) or {"learning_rate", "name"} & set(options):
        raise ValueError("optimizer_options must be a dict without learning_rate or name "
                         f"(the learning rate has its own field), got {options!r}")
    if not isinstance(spec["optimizer"], str) or not isinstance(spec["loss"], str) \
            or not all(isinstance(m, str) for m in spec["metrics"] or ()):
        raise ValueError("optimizer and loss must be names, metrics a list of names")
    probes = list(spec["probes"] or ())
    for probe in probes:
        if probe not in PROBE_NAMES:
            raise ValueError(f"unknown probe {probe!r}; choose among {', '.join(PROBE_NAMES)}")
    epochs = _integer("epochs", spec["epochs"], 1, 100_000)
    probe_epochs = spec["probe_epochs"]
    if probe_epochs is not None:
        probe_epochs = sorted({_integer("probe_epochs", e, 0, epochs + 1) for e in probe_epochs})
    for name in ("evaluate_test", "keep_predictions"):
        if not isinstance(spec[name], bool):
            raise ValueError(f"{name} must be True or False, got {spec[name]!r}")
    if spec["keep_predictions"] and not spec["evaluate_test"]:
        raise ValueError("keep_predictions=True needs evaluate_test=True (predictions are on the test set)")
    return {
        **spec, "model": model, "optimizer_options": dict(sorted(options.items())),
        "learning_rate": _rate(spec["learning_rate"]), "metrics": list(spec["metrics"] or ()),
        "train_size": None if spec["train_size"] is None else _integer("train_size", spec["train_size"], 10),
        "validation": _fraction("validation", spec["validation"]),
        "split_seed": _integer("split_seed", spec["split_seed"], 0, _SEED_LIMIT),
        "seed": _integer("seed", spec["seed"], 0, _SEED_LIMIT), "epochs": epochs,
        "batch_size": _integer("batch_size", spec["batch_size"], 1),
        "early_stopping": None if spec["early_stopping"] is None
        else _integer("early_stopping", spec["early_stopping"], 1),
        "probes": probes, "probe_epochs": probe_epochs,
    }


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


# -- training -------------------------------------------------------------------------
def fit(run: Run) -> dict:
    """Train ``run`` in this process and return its record (not stored): the Keras below."""
    import keras

    from labkit.probes import Watch

    _env.enable_compilation_cache(settings.cache_dir("jax"))
    _trace(run.key)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data = run.split()
    keras.utils.set_random_seed(run.seed)
    model = keras.models.model_from_json(json.dumps(run.model))
    optimizer = keras.optimizers.get({"class_name": run.optimizer,
                                      "config": {"learning_rate": run.learning_rate, **run.optimizer_options}})
    model.compile(optimizer=optimizer, loss=run.loss, metrics=run.metrics,
                  steps_per_execution=STEPS_PER_EXECUTION)
    watch = Watch(run, data)  # times each epoch, stops a run whose loss is NaN, measures probes
    callbacks = [watch]
    if run.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=run.early_stopping,
                                                       restore_best_weights=True))
    history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                        epochs=run.epochs, batch_size=run.batch_size, shuffle=True, verbose=0,
                        callbacks=callbacks)
    test = predictions = None
    if run.evaluate_test:
        test = model.evaluate(data.x_test, data.y_test, batch_size=2048, verbose=0, return_dict=True)
        if run.keep_predictions:
            predictions = model.predict(data.x_test, batch_size=2048, verbose=0)[:, 0]
    return _record(run, history.history, watch, test, predictions, data, started_at)


def _trace(key: str) -> None:
    """Append the key to the file ``LABKIT_TRAIN_LOG`` names: a count of trainings started,
    across processes (tests prove "trained exactly once" with it)."""
    if os.environ.get("LABKIT_TRAIN_LOG"):
        with open(os.environ["LABKIT_TRAIN_LOG"], "a", encoding="utf-8") as log:
            log.write(key + "\n")


def _record(run: Run, raw: dict, watch, test, predictions, data, started_at: str) -> dict:
    history = {"train": {}, "validation": {}}
    for name, values in raw.items():
        split, metric = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
        history[split][SHORT.get(metric, metric)] = [float(v) for v in values]
    epochs_run = len(raw.get("loss", []))
    best = epochs_run
    if run.early_stopping and not watch.diverged:
        losses = [v if math.isfinite(v) else math.inf for v in history["validation"].get("loss", [])]
        best = int(np.argmin(losses)) + 1 if losses else epochs_run
    return finite({
        "kind": "runs", "spec": run.spec, "history": history, "epochs_run": epochs_run,
        "diverged": watch.diverged, "stopped_early": epochs_run < run.epochs and not watch.diverged,
        "best_epoch": best,
        "final": {split: {m: values[best - 1] for m, values in metrics.items()} if best else {}
                  for split, metrics in history.items()},
        "test": None if test is None else {SHORT.get(k, k): float(v) for k, v in test.items()},
        "predictions": None if predictions is None else [round(float(v), 5) for v in predictions],
        "probes": watch.tables, "seconds": watch.seconds, "epoch_seconds": watch.epoch_seconds,
        "started_at": started_at, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
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


#: CPU features that change the code XLA generates for this machine (recorded with each run).
VECTOR_EXTENSIONS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                     "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve")


def machine() -> dict:
    """What a record's numbers depend on besides its spec: XLA compiles for the host CPU."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                name, _, value = line.partition(":")
                info.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", info.get("Features", "")).split())
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_family": info.get("cpu family", ""), "cpu_model": info.get("model", ""),
            "vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags],
            "machine": platform.machine(), "system": platform.system(), "cores": os.cpu_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


# -- records ---------------------------------------------------------------------------
def _numbers(values, what: str, allow_none: bool = True) -> None:
    for value in values:
        if not (value is None and allow_none) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{what} holds {value!r}, not a number")


def check_record(record: dict) -> None:
    """A run record's schema: every field present, of its type, consistent with its spec."""
    spec = Run.from_spec(record["spec"])
    if spec.key != record["key"]:
        raise ValueError("its spec does not hash to its key")
    epochs_run, best = record["epochs_run"], record["best_epoch"]
    for name in ("diverged", "stopped_early"):
        if not isinstance(record[name], bool):
            raise TypeError(f"{name} must be true or false, got {record[name]!r}")
    if type(epochs_run) is not int or not 0 <= epochs_run <= spec.epochs:
        raise ValueError(f"epochs_run={epochs_run!r} outside 0..{spec.epochs}")
    if not record["diverged"] and not record["stopped_early"] and epochs_run != spec.epochs:
        raise ValueError(f"{epochs_run} epochs recorded, the spec asks {spec.epochs}")
    if best is not None and (type(best) is not int or not 0 <= best <= epochs_run):
        raise ValueError(f"best_epoch={best!r} outside 0..{epochs_run}")
    if set(record["history"]) != {"train", "validation"}:
        raise ValueError("history must hold train and validation")
    for split, metrics in record["history"].items():
        for metric, values in metrics.items():
            if not isinstance(values, list) or len(values) != epochs_run:
                raise ValueError(f"history {split}/{metric} does not hold {epochs_run} values")
            _numbers(values, f"history {split}/{metric}")
    for split, metrics in record["final"].items():
        _numbers(metrics.values(), f"final {split}")
    if (record["test"] is None) == spec.evaluate_test:
        raise ValueError("test metrics must be present exactly when the spec evaluates the test set")
    _numbers((record["test"] or {}).values(), "test")
    if (record["predictions"] is None) == spec.keep_predictions:
        raise ValueError("predictions must be present exactly when the spec keeps them")
    _numbers(record["predictions"] or [], "predictions", allow_none=False)
    for name, table in record["probes"].items():
        if name not in spec.probes or len({len(column) for column in table.values()}) > 1:
            raise ValueError(f"probe {name!r} is not asked for by the spec, or its columns differ in length")
    _numbers([record["seconds"], *record["epoch_seconds"]], "seconds", allow_none=False)
    for name in ("sizes", "versions", "platform"):
        if not isinstance(record[name], dict):
            raise TypeError(f"{name} must be an object")


def open_store(profile: str | None = None) -> Store:
    """The run store of a profile (default: the active one), with both record schemas."""
    return Store(settings.store_dir(profile), validators={"runs": check_record, "memo": check_memo})


# -- results ---------------------------------------------------------------------------
class Result:
    """A run's record, read back: history, final and test metrics, probes, timings."""

    def __init__(self, run: Run, record: dict, cached: bool):
        self.run, self.record, self.cached = run, record, cached

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
        return pd.DataFrame(self.record["probes"].get(name, {}))

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
    return Result(run, record, cached)
