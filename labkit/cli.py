"""The ``labkit`` command: look into the run store and check the set-up.

    labkit runs list [--profile P]      one line per stored run
    labkit runs show KEY                a record's summary (or --json for all of it)
    labkit runs rm KEY [KEY ...]        delete records (they retrain next time)
    labkit runs stats                   counts, size, training time, damaged records
    labkit doctor                       backend, versions, datasets, Quarto, store
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from labkit import _env  # noqa: F401
from labkit import profile

__all__ = ["main"]


def _validate(record: dict) -> None:
    # labkit.runs imports NumPy and pandas (most of a second): only when a record is read.
    from labkit.runs import validate_record

    validate_record(record)


def _store(args):
    """``labkit.runs.open_store(args.profile)``, without importing labkit.runs until a record is
    parsed: with an up-to-date summary index, ``labkit runs stats`` parses none."""
    from labkit.store import Store

    return Store(profile.store_dir(args.profile), validate=_validate)


def _summary(record: dict) -> str:
    spec = record["spec"]
    final = record["final"].get("validation", {})
    metric = "accuracy" if "accuracy" in final else "rmse"
    value = final.get(metric)
    shown = "—" if value is None else f"{value:.4f}"
    flag = " diverged" if record["diverged"] else ""
    return (f"{record['key'][:12]}  {spec['data']:<10} {spec['optimizer']:<7} lr={spec['learning_rate']:<8g} "
            f"epochs={record['epochs_run']}/{spec['epochs']:<4} seed={spec['seed']:<3} "
            f"val_{metric}={shown}  {record['seconds']:.1f}s{flag}")


def _resolve(store, prefix: str) -> str:
    matches = [key for key in store.keys() if key.startswith(prefix)]
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise SystemExit(f"labkit: {what} in {store.root} match {prefix!r}; give more characters of the key")
    return matches[0]


def cmd_list(args) -> int:
    for record in _store(args).records():
        print(_summary(record))
    return 0


def cmd_show(args) -> int:
    store = _store(args)
    record = store.load(_resolve(store, args.key))
    if args.json:
        print(json.dumps(record, indent=1, sort_keys=True))
        return 0
    print(_summary(record))
    for field in ("best_epoch", "stopped_early", "final", "test", "sizes", "versions", "platform",
                  "started_at", "finished_at"):
        print(f"  {field}: {record.get(field)}")
    print(f"  probes: {sorted(record.get('probes', {}))}")
    return 0


def cmd_rm(args) -> int:
    store = _store(args)
    for prefix in args.keys:
        key = _resolve(store, prefix)
        store.remove(key)
        print(f"removed {key}")
    return 0


def stats(store) -> dict:
    """Counts and totals of a store (damaged records counted, never served).

    Records the store's summary index vouches for are not parsed (``Store.summaries``),
    so the cost is one ``stat`` per record once the index is up to date.
    """
    count = damaged = diverged = 0
    seconds = 0.0
    size = 0
    for record_bytes, fields in store.summaries().values():
        size += record_bytes
        if fields is None:
            damaged += 1
            continue
        count += 1
        diverged += bool(fields["diverged"])
        seconds += float(fields["seconds"])
    return {"root": str(store.root), "runs": count, "damaged": damaged, "diverged": diverged,
            "training_seconds": round(seconds, 1), "bytes": size,
            "memo": len(store.keys("memo"))}


def cmd_stats(args) -> int:
    for name, value in stats(_store(args)).items():
        print(f"{name:>17}: {value}")
    return 0


def cmd_doctor(args) -> int:
    import platform

    from labkit.paths import data_dir, jax_cache_dir, project_root

    checks = []
    try:
        import jax
        import keras

        checks.append(("keras backend", f"{keras.backend.backend()} (keras {keras.__version__}, "
                                        f"jax {jax.__version__}, devices {jax.devices()})", True))
    except Exception as error:  # noqa: BLE001  (doctor reports, never crashes)
        checks.append(("keras", f"cannot import: {error}", False))
    checks.append(("python", platform.python_version(), True))
    checks.append(("project root", str(project_root()), (project_root() / "_quarto.yml").is_file()))
    folder = data_dir()
    checks.append(("mnist", str(folder / "mnist.npz"), (folder / "mnist.npz").is_file()))
    california = folder / "scikit_learn_data" / "cal_housing_py3.pkz"
    checks.append(("california", str(california), california.is_file()))
    quarto = shutil.which("quarto") or (Path(sys.prefix) / "bin" / "quarto")
    quarto_ok = Path(quarto).is_file()
    checks.append(("quarto", str(quarto) if quarto_ok else "not found (pip install -e '.[book]')", quarto_ok))
    checks.append(("profile", profile.active(), True))
    info = stats(_store(args))
    checks.append(("run store", f"{info['root']}: {info['runs']} runs, {info['bytes'] / 1e6:.1f} MB, "
                                f"{info['damaged']} damaged", info["damaged"] == 0))
    checks.append(("jax cache", str(jax_cache_dir()), True))
    for name, value, ok in checks:
        print(f"{'ok  ' if ok else 'MISS'} {name:<14} {value}")
    missing_data = [name for name, _, ok in checks if name in ("mnist", "california") and not ok]
    if missing_data:
        print("\nDatasets not found locally are downloaded on first use (needs internet), "
              "or set LABKIT_DATA_DIR to a folder holding mnist.npz and scikit_learn_data/.")
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="labkit", description=__doc__.split("\n")[0])
    main_parser.add_argument("--profile", choices=profile.PROFILES, default=None,
                             help="store of this profile (default: the active one)")
    commands = main_parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="inspect the run store")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    runs_commands.add_parser("list", help="one line per run").set_defaults(func=cmd_list)
    show = runs_commands.add_parser("show", help="one run's record")
    show.add_argument("key", help="the key or its first characters")
    show.add_argument("--json", action="store_true", help="print the whole record")
    show.set_defaults(func=cmd_show)
    remove = runs_commands.add_parser("rm", help="delete records")
    remove.add_argument("keys", nargs="+")
    remove.set_defaults(func=cmd_rm)
    runs_commands.add_parser("stats", help="counts and totals").set_defaults(func=cmd_stats)
    commands.add_parser("doctor", help="check the set-up").set_defaults(func=cmd_doctor)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
