"""The ``labkit`` command: look into a run store and check the set-up.

    labkit runs list   [--profile P]     one line per record (damaged ones say why)
    labkit runs show   KEY [--json]      one record; KEY may be its first characters
    labkit runs rm     KEY [KEY ...]     delete records (they are computed again next time)
    labkit runs stats  [--profile P]     counts, training time, size, damaged records
    labkit doctor      [--verify]        backend, versions, datasets, Quarto, profile, store

A damaged record (a stray byte, a directory in its place, a field of the wrong type) is
reported, never fatal.  :func:`summary` gives the book's preface its environment table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

from labkit import fr, settings
from labkit.runs import machine, open_store
from labkit.store import KINDS, Store, StoreError

__all__ = ["main", "summary", "safe", "cpu_name"]


def safe(value, limit: int = 200) -> str:
    """Text from a record, inert in Markdown and HTML: letters, digits, ``.,:;-+()/%`` and
    spaces are kept, control characters dropped, anything else (``<``, ``|``, ``*``, ``[``…)
    written as an HTML entity, which Pandoc and browsers show as the character itself."""
    text = " ".join("".join(c for c in str(value) if c.isprintable() or c.isspace()).split())[:limit]
    return "".join(c if c.isalnum() or c in " .,:;-+()/%" else f"&#{ord(c)};" for c in text)


#: The widest vector instruction set among a CPU's extensions, first match: the preface's
#: short form of XLA's target (``labkit runs show`` lists them all).
_WIDEST = (("avx512", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse", "SSE"))


def cpu_name(machine, french: bool = False) -> str:
    """``AMD EPYC (family 25, model 17; avx, avx2, avx512f)``: what XLA compiled for; in
    French, for the preface, the widest set only: ``AMD EPYC (famille 25, modèle 17 ; AVX-512)``."""
    words = ("famille", "modèle", "extensions vectorielles non enregistrées") if french else \
        ("family", "model", "vector extensions not recorded")
    machine = machine if isinstance(machine, dict) else {}
    where = [f"{word} {machine[key]}" for key, word in zip(("cpu_family", "cpu_model"), words)
             if machine.get(key) not in (None, "")]
    extensions = machine.get("vector_extensions")
    what = ", ".join(map(str, extensions)) if isinstance(extensions, list) else words[2]
    if french and isinstance(extensions, list):
        what = next((name for prefix, name in _WIDEST if any(str(e).startswith(prefix) for e in extensions)),
                    "sans extension vectorielle connue")
    separator = " ; " if french else "; "
    return f"{machine.get('cpu') or '?'} ({separator.join(filter(None, [', '.join(where), what]))})"


def _day(text) -> date | None:
    """The day a record's ``finished_at`` names, or None when it names none."""
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def scan(store: Store) -> tuple[dict[str, list[dict]], list[tuple[str, str, str]]]:
    """The readable records of each kind, and ``(kind, key, problem)`` for every damaged one."""
    good: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    damaged = []
    for kind in KINDS:
        try:
            for key, record, problem in store.scan(kind):
                good[kind].append(record) if problem is None else damaged.append((kind, key, problem))
        except OSError as error:  # the folder itself cannot be listed
            damaged.append((kind, "*", f"{store.root / kind}: cannot be listed ({error.strerror or error})"))
    return good, damaged


def summary(store: Store | None = None) -> dict[str, str]:
    """The preface's table, French label → text safe for Markdown and HTML, computed from the
    records: counts, training time, the Python/Keras/JAX versions and the CPUs they were
    trained on, and their period.  No path of the machine that builds the book appears."""
    good, damaged = scan(store or open_store())
    runs = good["runs"]

    def seen(values) -> str:
        counts: dict[str, int] = {}
        for value in values:
            text = "inconnu" if value in (None, "") else safe(value)
            counts[text] = counts.get(text, 0) + 1
        if len(counts) == 1:
            return next(iter(counts))
        return " ; ".join(f"{value} — {fr.num(n)} runs" for value, n in sorted(counts.items())) or "—"

    from babel.dates import format_date

    days = sorted(day for day in map(_day, (r.get("finished_at") for r in runs)) if day)
    days = [format_date(day, "d MMMM y", locale="fr_FR") for day in days[:1] + days[-1:]]
    period = "—" if not days else days[0] if days[0] == days[-1] else f"du {days[0]} au {days[-1]}"
    return {
        "Runs enregistrés": fr.num(len(runs)),
        "Runs ayant divergé": fr.num(sum(r["diverged"] for r in runs)),
        "Enregistrements illisibles (recalculés)": fr.num(len(damaged)),
        "Temps d'entraînement cumulé": fr.seconds(sum(r["seconds"] for r in runs)),
        "Python": seen(r["versions"].get("python") for r in runs),
        "Keras": seen(r["versions"].get("keras") for r in runs),
        "JAX": seen(r["versions"].get("jax") for r in runs),
        "Processeurs": seen(cpu_name(r["platform"], french=True) for r in runs),
        "Cœurs par machine": seen(r["platform"].get("cores") for r in runs),
        "Période des entraînements": period,
    }


# -- commands -----------------------------------------------------------------------------
class Refused(Exception):
    """A request the command cannot carry out; the message says what to type instead."""


def _line(record: dict) -> str:
    spec = record["spec"]
    final = record["final"].get("validation", {})
    metric = "accuracy" if "accuracy" in final else "loss"
    value = "—" if final.get(metric) is None else f"{final[metric]:.4f}"
    return (f"{record['key'][:12]}  {spec['data']:<10} {spec['optimizer']:<7} lr={spec['learning_rate']:<8g} "
            f"epochs={record['epochs_run']}/{spec['epochs']:<4} seed={spec['seed']:<3} val_{metric}={value}  "
            f"{record['seconds']:.1f}s" + ("  diverged" if record["diverged"] else ""))


def cmd_list(args) -> int:
    good, damaged = scan(open_store(args.profile))
    for record in good["runs"]:
        print(_line(record))
    for record in good["memo"]:
        print(f"{record['key'][:12]}  memo       {record['name']!r}")
    for kind, key, problem in damaged:
        print(f"{key[:12]}  DAMAGED ({kind}): {problem}")
    return 0


def _resolve(store: Store, prefix: str) -> tuple[str, str]:
    """``(kind, key)`` of the one record whose key starts with ``prefix``."""
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise Refused(f"{prefix!r} is not a key: keys are lowercase hexadecimal; `labkit runs list` shows them")
    matches = [(kind, key) for kind in KINDS for key in store.keys(kind) if key.startswith(prefix)]
    if not matches:
        raise Refused(f"no record of the {store.root.name} store ({store.root}) starts with {prefix!r}; "
                      "`labkit runs list` shows the keys (add --profile quick for the drafting store)")
    if len(matches) > 1:
        shown = ", ".join(key[:16] for _, key in matches[:5]) + (" …" if len(matches) > 5 else "")
        raise Refused(f"{len(matches)} records start with {prefix!r} ({shown}); type more characters of the key")
    return matches[0]


def cmd_show(args) -> int:
    store = open_store(args.profile)
    kind, key = _resolve(store, args.key)
    try:
        record = store.load(key, kind)
    except StoreError as error:
        raise Refused(f"{error}\nIt is never served; `labkit runs rm {key[:12]}` deletes it") from None
    if args.json:
        print(json.dumps(record, indent=1, sort_keys=True))
        return 0
    print(_line(record) if kind == "runs" else f"{key}  memo {record['name']!r}  params={record['params']}")
    for field in ("best_epoch", "stopped_early", "final", "test", "sizes", "versions", "started_at", "probes"):
        if field in record:
            print(f"  {field}: {sorted(record[field]) if field == 'probes' else record[field]}")
    if kind == "runs":
        print(f"  cpu: {cpu_name(record['platform'])}")
    return 0


def cmd_rm(args) -> int:
    store = open_store(args.profile)
    targets = [_resolve(store, prefix) for prefix in args.keys]  # every key checked before any removal
    for kind, key in targets:
        path = store.path(key, kind)
        if path.is_dir():
            print(f"{path} is a directory, not a record: remove it by hand (rm -r '{path}')")
        elif store.remove(key, kind):
            print(f"removed {kind} record {key}")
    return 0


def _stats(store: Store) -> tuple[dict, list]:
    good, damaged = scan(store)
    files = [p for kind in KINDS for p in (store.root / kind).glob("*.json") if p.is_file()] \
        if store.root.is_dir() else []
    runs = good["runs"]
    return {"store": str(store.root), "runs": len(runs), "diverged": sum(r["diverged"] for r in runs),
            "memo": len(good["memo"]), "damaged": len(damaged),
            "training": f"{sum(r['seconds'] for r in runs) / 3600:.2f} h",
            "size": f"{sum(p.stat().st_size for p in files) / 1e6:.1f} MB"}, damaged


def cmd_stats(args) -> int:
    counts, damaged = _stats(open_store(args.profile))
    for name, value in counts.items():
        print(f"{name:>9}: {value}")
    for kind, key, problem in damaged:
        print(f"  damaged {kind} record {key[:12]} (never served, computed again when needed): {problem}")
    return 0


def _doctor_checks(args) -> list:
    """``(name, check)`` pairs; each check returns ``(ok, text)`` and none may stop the others."""
    data = settings.data_dir()
    versions = ", ".join(f"{name} {_version(name)}" for name in ("keras", "jax", "jaxlib", "numpy"))
    return [
        ("python", lambda: (True, f"{platform.python_version()} ({sys.executable})")),
        ("backend", lambda: (os.environ.get("KERAS_BACKEND") == "jax",
                             f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}; {versions}")),
        ("xla flags", lambda: (True, os.environ.get("XLA_FLAGS", ""))),
        ("cpu", lambda: (True, cpu_name(machine()))),
        ("profile", lambda: (True, settings.profile())),
        ("workers", lambda: (True, f"{settings.workers()}, LABKIT_REQUIRE_CACHED={int(settings.require_cached())}")),
        ("data dir", lambda: (data.is_dir(), str(data))),
        ("mnist", lambda: _dataset(data / "mnist.npz", "mnist", args.verify)),
        ("california", lambda: _dataset(data / "scikit_learn_data" / "cal_housing_py3.pkz", "california",
                                        args.verify)),
        ("quarto", _quarto),
        ("run store", lambda: _store_health(open_store(args.profile))),
    ]


def _quarto() -> tuple[bool, str]:
    found = shutil.which("quarto") or str(Path(sys.prefix) / "bin" / "quarto")
    if Path(found).is_file():
        return True, found
    return False, ("not found: `make book` installs it (pip install -e '.[book]', needs internet), "
                   "or see https://quarto.org/docs/get-started/")


def _store_health(store: Store) -> tuple[bool, str]:
    counts, _ = _stats(store)
    return counts["damaged"] == 0, (f"{counts['store']}: {counts['runs']} runs, {counts['memo']} memo, "
                                    f"{counts['size']}, {counts['damaged']} damaged (labkit runs stats lists them)")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _dataset(path: Path, name: str, verify: bool) -> tuple[bool, str]:
    if not path.is_file():
        return False, f"{path} not found: downloaded on first use (needs internet), or set LABKIT_DATA_DIR"
    if verify:
        from labkit import data

        # DatasetError names the file and the fix; data.mnist() would serve a prepared copy instead
        data.mnist_source(path.parent) if name == "mnist" else data.california()
    return True, f"{path}" + (": genuine content" if verify else "")


def cmd_doctor(args) -> int:
    for name, check in _doctor_checks(args):
        try:
            ok, text = check()
        except Exception as error:  # noqa: BLE001  (the doctor reports every problem, stops at none)
            ok, text = False, f"{type(error).__name__}: {error}"
        print(f"{'ok  ' if ok else 'MISS'} {name:<11} {text}")
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", choices=settings.PROFILES, help="the store of this profile (default: active)")
    main_parser = argparse.ArgumentParser(prog="labkit", description="Look into a run store and check the set-up.")
    commands = main_parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="inspect the run store").add_subparsers(dest="action", required=True)
    runs.add_parser("list", parents=[common], help="one line per record").set_defaults(func=cmd_list)
    show = runs.add_parser("show", parents=[common], help="one record")
    show.add_argument("key", help="the key or its first characters")
    show.add_argument("--json", action="store_true", help="the whole record")
    show.set_defaults(func=cmd_show)
    remove = runs.add_parser("rm", parents=[common], help="delete records")
    remove.add_argument("keys", nargs="+", metavar="KEY")
    remove.set_defaults(func=cmd_rm)
    runs.add_parser("stats", parents=[common], help="counts and totals").set_defaults(func=cmd_stats)
    doctor = commands.add_parser("doctor", parents=[common], help="check the set-up")
    doctor.add_argument("--verify", action="store_true", help="load the datasets and check their content")
    doctor.set_defaults(func=cmd_doctor)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (Refused, StoreError, settings.SettingError, OSError) as error:
        print(f"labkit: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
