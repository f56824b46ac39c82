"""A run is data: a serialisable spec, its stable key, its training, its record.

The spec holds everything that decides the result (the model's Keras config,
optimiser, loss, data split, fit parameters, seed, probes); its key is the
sha256 of its canonical JSON, so a stored record is exactly what ran.  Training
rebuilds the model from the spec after seeding, in any process.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from labkit import _env  # noqa: F401
from labkit import data as datasets
from labkit import profile
from labkit.store import FORMAT, BadRecord, Store, digest

__all__ = ["Run", "Result", "train", "open_store", "require_cached", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adamw")
DEFAULT_LOSS = {"mnist": "sparse_categorical_crossentropy", "california": "mean_squared_error"}
DEFAULT_METRICS = {
    "mnist": ("accuracy", "sparse_categorical_crossentropy"),
    "california": ("mean_absolute_error", "root_mean_squared_error"),
}
#: Short names used in histories (the data loss of chapter C is ``crossentropy``).
METRIC_NAMES = {
    "sparse_categorical_crossentropy": "crossentropy",
    "mean_absolute_error": "mae",
    "root_mean_squared_error": "rmse",
    "mean_squared_error": "mse",
}
#: Batches per compiled step: fewer Python round-trips, identical updates.
STEPS_PER_EXECUTION = 32
_AUTO_NAME = re.compile(r"^(.*?)(_\d+)?$")


# -- the spec --------------------------------------------------------------
def _model_config(model) -> dict:
    """The model's Keras config as a dict, with Keras' per-process auto names canonicalised."""
    if isinstance(model, str):
        config = json.loads(model)
    elif isinstance(model, dict):
        config = json.loads(json.dumps(model))
    elif hasattr(model, "to_json"):
        config = json.loads(model.to_json())
    else:
        raise ValueError(f"model must be a keras.Sequential, its JSON or config, got {type(model).__name__}")
    if config.get("class_name") != "Sequential":
        raise ValueError(f"model must be a keras.Sequential, got {config.get('class_name')!r}")
    return _canonical_names(config)


def _canonical_names(config: dict) -> dict:
    """Rename Keras' auto names (``dense_3``, ``sequential_2``) by position.

    Keras numbers layers per process, so the same architecture built twice gets
    different names; names a user chose (``hidden_1``) are kept.
    """
    counters: dict[str, int] = {}
    inner = config["config"]
    if _is_auto_name(inner.get("name", ""), "sequential"):
        inner["name"] = "sequential"
    for layer in inner.get("layers", []):
        cfg = layer.get("config", {})
        base = _snake(layer.get("class_name", "layer"))
        if _is_auto_name(cfg.get("name", ""), base):
            number = counters.get(base, 0)
            counters[base] = number + 1
            cfg["name"] = base if number == 0 else f"{base}_{number}"
    return config


def _snake(class_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def _is_auto_name(name: str, base: str) -> bool:
    match = _AUTO_NAME.match(name)
    return bool(match) and match.group(1) == base


def _check_number(field_name: str, value, minimum=None, integer=False, allow_none=False):
    if value is None and allow_none:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{field_name} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field_name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Run:
    """Everything that decides a training result, as plain data.

    ``model`` accepts a ``keras.Sequential`` (stored as its JSON config).
    ``validation`` is the fraction of the training images held out (fixed
    ``split_seed``); ``train_size`` an optional stratified subset of the rest.
    ``early_stopping`` is a patience in epochs on the validation loss (best
    weights restored).  ``evaluate_test`` touches the test set once, at the end.
    ``probes`` are measured at ``probe_epochs`` (default: every epoch and 0).
    """

    model: Any
    data: str = "mnist"
    train_size: int | None = None
    validation: float = 0.1
    split_seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    optimizer_options: dict = field(default_factory=dict)
    loss: str | None = None
    metrics: tuple[str, ...] | None = None
    early_stopping: int | None = None
    evaluate_test: bool = False
    keep_predictions: bool = False
    probes: tuple[str, ...] = ()
    probe_epochs: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        setter = object.__setattr__
        if self.data not in datasets.DATASETS:
            raise ValueError(f"unknown dataset data={self.data!r}; choose one of {', '.join(datasets.DATASETS)}")
        setter(self, "model", _model_config(self.model))
        setter(self, "loss", self.loss or DEFAULT_LOSS[self.data])
        setter(self, "metrics", tuple(self.metrics or DEFAULT_METRICS[self.data]))
        setter(self, "probes", tuple(self.probes))
        if self.probe_epochs is not None:
            setter(self, "probe_epochs", tuple(int(e) for e in self.probe_epochs))
        setter(self, "optimizer_options", dict(sorted(dict(self.optimizer_options).items())))
        self._check()

    def _check(self) -> None:
        _check_number("epochs", self.epochs, minimum=1, integer=True)
        _check_number("batch_size", self.batch_size, minimum=1, integer=True)
        _check_number("seed", self.seed, minimum=0, integer=True)
        _check_number("split_seed", self.split_seed, minimum=0, integer=True)
        _check_number("train_size", self.train_size, minimum=10, integer=True, allow_none=True)
        _check_number("early_stopping", self.early_stopping, minimum=1, integer=True, allow_none=True)
        _check_number("learning_rate", self.learning_rate)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        _check_number("validation", self.validation)
        if not 0 < self.validation < 1:
            raise ValueError(f"validation must be a fraction in (0, 1), got {self.validation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        from labkit.probes import PROBES

        for name in self.probes:
            if name not in PROBES:
                raise ValueError(f"unknown probe {name!r}; choose among {', '.join(PROBES)}")
        for epoch in self.probe_epochs or ():
            if not 0 <= epoch <= self.epochs:
                raise ValueError(f"probe_epochs must lie in 0..epochs={self.epochs}, got {epoch!r}")
        if self.keep_predictions and not self.evaluate_test:
            raise ValueError("keep_predictions=True needs evaluate_test=True (predictions are on the test set)")

    def replace(self, **changes) -> "Run":
        """A copy with some fields changed (validated like a new run)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"Run has no field {sorted(unknown)[0]!r}")
        return dataclasses.replace(self, **changes)

    def spec(self) -> dict:
        """The plain-data description that is hashed, stored and shipped to workers."""
        spec = dataclasses.asdict(self)
        spec["metrics"] = list(self.metrics)
        spec["probes"] = list(self.probes)
        spec["probe_epochs"] = None if self.probe_epochs is None else list(self.probe_epochs)
        return spec

    @classmethod
    def from_spec(cls, spec: dict) -> "Run":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - names
        if unknown:
            raise ValueError(f"unknown run field {sorted(unknown)[0]!r} in spec")
        return cls(**spec)

    @functools.cached_property
    def key(self) -> str:
        """sha256 of the canonical spec; computed once per ``Run`` (a chapter asks for it
        several times per run, and a spec holds the model's whole Keras config)."""
        return digest({"format": FORMAT, "spec": self.spec()})

    def split(self) -> datasets.Split:
        return datasets.split(self.data, self.validation, self.train_size, self.split_seed)

    def build_model(self):
        """The Keras model of the spec (weights depend on the global seed)."""
        import keras

        return keras.models.model_from_json(json.dumps(self.model))


# -- the record ------------------------------------------------------------
def validate_record(record: dict) -> None:
    """Content checks beyond JSON and checksum: a record must describe a whole run."""
    try:
        spec, history, epochs_run = record["spec"], record["history"], record["epochs_run"]
        diverged, stopped = record["diverged"], record["stopped_early"]
        for key in ("final", "seconds", "versions", "platform"):
            record[key]
    except (KeyError, TypeError) as error:
        raise BadRecord(f"record {str(record.get('key'))[:12]}: missing field {error}") from None
    if not isinstance(epochs_run, int) or not 0 <= epochs_run <= spec.get("epochs", -1):
        raise BadRecord(f"record {record['key'][:12]}: epochs_run={epochs_run!r} outside 0..epochs")
    if not diverged and not stopped and epochs_run != spec["epochs"]:
        raise BadRecord(
            f"record {record['key'][:12]}: {epochs_run} epochs recorded, spec asks {spec['epochs']}"
        )
    for split_name, metrics in history.items():
        for metric, values in metrics.items():
            if len(values) != epochs_run:
                raise BadRecord(
                    f"record {record['key'][:12]}: history {split_name}/{metric} has "
                    f"{len(values)} values for {epochs_run} epochs"
                )


def open_store(prof: str | None = None) -> Store:
    """The run store of a profile (default: the active one)."""
    return Store(profile.store_dir(prof), validate=validate_record)


def require_cached() -> bool:
    """``LABKIT_REQUIRE_CACHED=1``: any run that would need training is an error."""
    return os.environ.get("LABKIT_REQUIRE_CACHED", "").strip() not in ("", "0", "false", "no")


def _versions() -> dict:
    import jax
    import jaxlib
    import keras

    import labkit

    return {"python": platform.python_version(), "keras": keras.__version__,
            "jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__,
            "labkit": labkit.__version__, "backend": keras.backend.backend()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _platform() -> dict:
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "system": platform.system(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "pid": os.getpid()}


# -- training --------------------------------------------------------------
def _short(name: str) -> str:
    return METRIC_NAMES.get(name, name)


def _history(raw: dict) -> dict:
    history: dict[str, dict[str, list]] = {"train": {}, "validation": {}}
    for name, values in raw.items():
        split_name, metric = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
        history[split_name][_short(metric)] = [float(v) for v in values]
    return history


def _finite_or_none(value: float):
    return value if math.isfinite(value) else None


def _make_callbacks(run: Run, recorder, epoch_seconds: list, state: dict):
    import keras

    class Watch(keras.callbacks.Callback):
        """Times epochs, runs the probes, and stops a diverging run (loss not finite)."""

        def on_train_begin(self, logs=None):
            if recorder is not None:
                recorder.measure(self.model, 0)
            self._start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self._start)
            if not math.isfinite(float((logs or {}).get("loss", float("nan")))):
                state["diverged"] = True
                self.model.stop_training = True
            elif recorder is not None:
                recorder.measure(self.model, epoch + 1)

    callbacks = [Watch()]
    if run.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=run.early_stopping, restore_best_weights=True))
    return callbacks


def _train_log(key: str) -> None:
    """Append the key to ``LABKIT_TRAIN_LOG``: a call counter across processes (tests)."""
    path = os.environ.get("LABKIT_TRAIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{key}\n")


def execute(run: Run) -> dict:
    """Train ``run`` now, in this process, and return its record (not saved)."""
    import keras

    from labkit.probes import ProbeRecorder

    _train_log(run.key)
    _env.enable_compilation_cache()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data = run.split()
    keras.utils.set_random_seed(run.seed)
    model = run.build_model()
    optimizer = keras.optimizers.get(
        {"class_name": run.optimizer, "config": {"learning_rate": run.learning_rate, **run.optimizer_options}}
    )
    model.compile(optimizer=optimizer, loss=run.loss, metrics=list(run.metrics),
                  steps_per_execution=STEPS_PER_EXECUTION)
    recorder = None
    if run.probes:
        epochs = set(run.probe_epochs) if run.probe_epochs is not None else set(range(run.epochs + 1))
        recorder = ProbeRecorder(run.probes, epochs, data.x_val, data.y_val, keras.losses.get(run.loss))
    epoch_seconds: list[float] = []
    state = {"diverged": False}
    start = time.perf_counter()
    fit = model.fit(
        data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=run.epochs,
        batch_size=run.batch_size, shuffle=True, verbose=0,
        callbacks=_make_callbacks(run, recorder, epoch_seconds, state),
    )
    seconds = time.perf_counter() - start
    history = _history(fit.history)
    epochs_run = len(fit.history.get("loss", []))
    best_epoch = _best_epoch(history, run, epochs_run, state["diverged"])
    record = {
        "kind": "runs", "spec": run.spec(), "history": history, "epochs_run": epochs_run,
        "diverged": state["diverged"], "stopped_early": epochs_run < run.epochs and not state["diverged"],
        "best_epoch": best_epoch, "final": _final(history, best_epoch),
        "test": None, "predictions": None,
        "probes": recorder.tables if recorder is not None else {},
        "seconds": seconds, "epoch_seconds": epoch_seconds,
        "started_at": started_at, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sizes": data.sizes, "versions": _versions(), "platform": _platform(),
    }
    if run.evaluate_test:
        record["test"] = _evaluate(model, data)
        if run.keep_predictions:
            predictions = model.predict(data.x_test, batch_size=2048, verbose=0).reshape(len(data.y_test), -1)
            record["predictions"] = [round(float(v), 5) for v in predictions[:, 0]]
    return record


def _best_epoch(history: dict, run: Run, epochs_run: int, diverged: bool) -> int:
    """The epoch whose weights the model ends with (restored best, or the last)."""
    if run.early_stopping and not diverged:
        losses = [v if math.isfinite(v) else math.inf for v in history["validation"].get("loss", [])]
        if losses:
            return int(np.argmin(losses)) + 1
    return epochs_run


def _final(history: dict, best_epoch: int) -> dict:
    return {split_name: {metric: _finite_or_none(values[best_epoch - 1]) if best_epoch else None
                         for metric, values in metrics.items()}
            for split_name, metrics in history.items()}


def _evaluate(model, data: datasets.Split) -> dict:
    scores = model.evaluate(data.x_test, data.y_test, batch_size=2048, verbose=0, return_dict=True)
    return {_short(name): _finite_or_none(float(value)) for name, value in scores.items()}


# -- results ---------------------------------------------------------------
@dataclass
class Result:
    """A run's record, read back: history, final metrics, probes, timing."""

    run: Run
    record: dict
    cached: bool

    key = property(lambda self: self.record["key"])
    diverged = property(lambda self: bool(self.record["diverged"]))
    seconds = property(lambda self: float(self.record["seconds"]))
    final = property(lambda self: self.record["final"].get("validation", {}))
    test = property(lambda self: self.record.get("test"))
    best_epoch = property(lambda self: self.record.get("best_epoch"))
    epochs_run = property(lambda self: self.record["epochs_run"])

    @property
    def history(self) -> pd.DataFrame:
        """Tidy history: one row per (epoch, split, metric); test rows at the last epoch."""
        rows = [
            (epoch, split_name, metric, np.nan if value is None else value)
            for split_name, metrics in self.record["history"].items()
            for metric, values in metrics.items()
            for epoch, value in enumerate(values, start=1)
        ]
        for metric, value in (self.test or {}).items():
            rows.append((self.epochs_run, "test", metric, np.nan if value is None else value))
        return pd.DataFrame(rows, columns=["epoch", "split", "metric", "value"])

    def probe(self, name: str) -> pd.DataFrame:
        """The rows of probe ``name`` as a DataFrame (empty if not measured)."""
        return pd.DataFrame(self.record.get("probes", {}).get(name, {}))

    @property
    def predictions(self) -> np.ndarray | None:
        values = self.record.get("predictions")
        return None if values is None else np.asarray(values, dtype="float64")


def _warn(message: str) -> None:
    """A warning for the person running the book (a damaged record is retrained)."""
    print(f"[labkit] {message}", file=_env.terminal() or sys.stderr, flush=True)


def train(run: Run, store: Store | None = None) -> Result:
    """The result of ``run``: from the store if recorded, else trained here and stored."""
    if not isinstance(run, Run):
        raise TypeError(f"train() takes a labkit.Run, got {type(run).__name__}")
    store = store or open_store()
    record, cached = store.get_or_compute(
        run.key, lambda: execute(run), allow_compute=not require_cached(),
        on_bad=lambda error: _warn(f"{error}; retraining"),
    )
    return Result(run, record, cached)
