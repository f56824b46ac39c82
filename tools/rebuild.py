"""``make rebuild``: retrain the committed runs into a fresh store and compare each with its record.

It tells a reader how far the book's numbers are reproducible.  On the machine that
trained a record, a retrain is bit-identical, so any difference there is a bug.  On
another CPU it is not: XLA compiles for the host CPU (its vector extensions change the
order of sums), so results agree only within a tolerance, and the report says which
differences come from the machine.  Records name their CPU (``record["platform"]``:
cpu, cpu_family, cpu_model, vector_extensions); an older record that names only
``cpu`` cannot tell, and the report says so.

    python tools/rebuild.py --out build/rebuild                 # every run (as long as the book's cold build)
    python tools/rebuild.py --out build/rebuild --limit 5       # a sample: the first 5 keys (hashes: random)
    python tools/rebuild.py --out build/rebuild --only 01fa 35  # the runs whose keys start so
    python tools/rebuild.py --out build/rebuild --json report.json

The fresh store is ``<out>/store`` (runs already there are reused: a stopped rebuild
resumes); the report is printed and written to ``<out>/report.md``.  Memo records hold
values computed by chapter code, not runs: a cold ``make book`` recomputes them.
Exit status 1 when a run could not be retrained or differs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import labkit  # noqa: F401  (backend and XLA flags before Keras)
from labkit import settings
from labkit.cli import cpu_name, scan
from labkit.runs import Run, machine, open_store
from labkit.store import Store, StoreError
from labkit.sweep import SweepError, sweep

#: |fresh − committed| ≤ ATOL + RTOL·|committed|, on every number of a run's results:
#: accuracies and losses in [0, 1] agree to 1e-3, larger values (norms, RMSE) to 0.1 %.
RTOL = ATOL = 1e-3
#: What a run's results are; timings, dates, versions and platform are not compared.
RESULTS = ("diverged", "stopped_early", "epochs_run", "best_epoch", "sizes", "history", "final", "test",
           "predictions", "probes")
VERSIONS = ("python", "keras", "jax", "jaxlib", "numpy")
CPU = ("cpu", "cpu_family", "cpu_model", "vector_extensions")


def differences(old, new, path: str = ""):
    """``(path, committed, fresh)`` for every leaf where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            yield from differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, f"{path}[{index}]")
    elif old != new or type(old) is not type(new):
        yield path, old, new


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(committed: dict, fresh: dict, rtol: float = RTOL, atol: float = ATOL) -> dict:
    """``{"result": identical | within | beyond, "largest": |Δ|, "where": ...}`` for two records."""
    found = list(differences({k: committed.get(k) for k in RESULTS}, {k: fresh.get(k) for k in RESULTS}))
    numeric = [(path, a, b, abs(a - b)) for path, a, b in found if _number(a) and _number(b)]
    other = [(path, a, b) for path, a, b in found if not (_number(a) and _number(b))]
    beyond = other or [d for d in numeric if not d[3] <= atol + rtol * abs(d[1])]
    largest = max(numeric, key=lambda d: d[3], default=None)
    shown = other[0] if other else largest[:3] if largest else None  # what a reader should look at first
    return {"result": "identical" if not found else "beyond" if beyond else "within",
            "largest": largest[3] if largest else 0.0, "differences": len(found),
            "where": None if shown is None else f"{shown[0]}: {shown[1]!r} → {shown[2]!r}"}


def cause(committed: dict, fresh: dict) -> str:
    """Why two trainings of one spec may differ: ``machine``, ``machine?`` (the committed
    record does not name its CPU precisely), ``versions``, or ``none`` (then it is a bug)."""
    old, new = committed.get("platform") or {}, fresh.get("platform") or {}
    if not isinstance(old.get("vector_extensions"), list):
        return "machine?"
    if any(old.get(field) != new.get(field) for field in CPU):
        return "machine"
    versions = committed.get("versions") or {}, fresh.get("versions") or {}
    return "versions" if any(versions[0].get(v) != versions[1].get(v) for v in VERSIONS) else "none"


CAUSES = {
    "machine": "trained on another CPU: XLA compiles for the host CPU, so these differences come from the machine",
    "machine?": "the committed record names its CPU without its vector extensions (an older record): the "
                "difference may come from the machine (XLA compiles for the host CPU); it cannot be told",
    "versions": "trained with other library versions (Python, Keras, JAX or NumPy)",
    "none": "same CPU and library versions: a retrain must be bit-identical, so this is a BUG",
}


def select(committed: Store, only=(), limit: int | None = None) -> tuple[dict[str, dict], list]:
    """The committed run records to rebuild (``only``: key prefixes), and the damaged ones."""
    good, damaged = scan(committed)
    records = {r["key"]: r for r in good["runs"] if not only or r["key"].startswith(tuple(only))}
    keys = sorted(records)[:limit] if limit is not None else sorted(records)
    return {key: records[key] for key in keys}, damaged


def retrain(records: dict[str, dict], fresh: Store) -> str | None:
    """Train every record's spec into ``fresh`` (one sweep per seed: a sweep sets the seed);
    the message of the runs that failed, if any (the others are stored)."""
    specs, by_seed, failed = {}, defaultdict(list), []
    for key, record in records.items():
        specs[key] = record["spec"]
        by_seed[record["spec"]["seed"]].append(key)
    for seed, keys in sorted(by_seed.items()):
        try:
            sweep(lambda record: Run.from_spec(specs[record]), {"record": keys}, seeds=[seed], store=fresh,
                  label=f"rebuild, seed {seed}")
        except SweepError as error:
            failed.append(str(error))
    return "\n".join(failed) or None


def rebuild(committed: Store, fresh: Store, only=(), limit=None, rtol=RTOL, atol=ATOL) -> dict:
    """Retrain the selected committed runs into ``fresh``; the report, as plain JSON data."""
    records, damaged = select(committed, only, limit)
    failure = retrain(records, fresh) if records else None
    rows = []
    for key, old in records.items():
        new = fresh.usable(key)
        row = {"key": key, "label": _label(old), "committed_cpu": cpu_name(old["platform"])}
        if new is None:
            rows.append({**row, "result": "not rebuilt", "cause": "training failed"})
            continue
        row.update(compare(old, new, rtol, atol))
        rows.append({**row, "cause": None if row["result"] == "identical" else cause(old, new)})
    return {"committed": str(committed.root), "fresh": str(fresh.root), "rtol": rtol, "atol": atol,
            "this_cpu": cpu_name(machine()), "rows": rows, "failure": failure,
            "damaged": [{"kind": k, "key": key, "problem": p} for k, key, p in damaged],
            "memo_not_rebuilt": len(committed.keys("memo"))}


def _label(record: dict) -> str:
    spec = record["spec"]
    subset = f", {spec['train_size']} examples" if spec["train_size"] else ""
    return f"{spec['data']}{subset}, {spec['epochs']} epoch{'s' * (spec['epochs'] > 1)}, lr {spec['learning_rate']:g}, seed {spec['seed']}"


def _cell(text: str) -> str:
    """Text that stays in its Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def ok(report: dict) -> bool:
    return not report["failure"] and not any(row["cause"] in ("none", "training failed") for row in report["rows"])


def markdown(report: dict) -> str:
    """The report for a person: counts, causes, and every run that is not bit-identical."""
    rows = report["rows"]
    count = Counter(row["result"] for row in rows)
    lines = [f"# Rebuild of {report['committed']}", "",
             f"{len(rows)} committed runs retrained into {report['fresh']}, on {report['this_cpu']}.",
             f"Tolerance on every number of a run's results: |fresh − committed| ≤ {report['atol']:g} + "
             f"{report['rtol']:g}·|committed|.", "", "| result | runs |", "|:--|--:|",
             *(f"| {name} | {count[result]} |" for name, result in (
                 ("identical, bit for bit", "identical"), ("within the tolerance", "within"),
                 ("beyond the tolerance", "beyond"), ("not rebuilt (training failed)", "not rebuilt")))]
    by_cause = defaultdict(list)
    for row in rows:
        if row["cause"] in CAUSES:
            by_cause[row["cause"]].append(row)
    for name, group in by_cause.items():
        cpus = ", ".join(sorted({row["committed_cpu"] for row in group}))
        lines += ["", f"- **{len(group)} runs, {name}**: {CAUSES[name]}. Committed on: {cpus}. Largest "
                  f"difference {max(row['largest'] for row in group):.2g}."]
    different = [row for row in rows if row["result"] != "identical"]
    if different:
        lines += ["", "| run | what | result | largest abs. difference | where (a non-numeric one first) | cause |",
                  "|:--|:--|:--|--:|:--|:--|"]
        lines += [f"| {row['key'][:12]} | {row['label']} | {row['result']} | {row.get('largest', 0):.2g} | "
                  f"{_cell(row.get('where') or '')} | {row['cause']} |" for row in different]
    if report["failure"]:
        lines += ["", "Runs that could not be retrained:", "", "```", report["failure"], "```"]
    if report["damaged"] or report["memo_not_rebuilt"]:
        lines += ["", f"Not rebuilt: {len(report['damaged'])} damaged committed records "
                  f"(`labkit runs stats --profile full` lists them) and {report['memo_not_rebuilt']} memo records "
                  "(values computed by chapter code: a cold `make book` recomputes them)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--out", type=Path, default=Path("build/rebuild"), help="fresh store and report folder")
    parser.add_argument("--store", type=Path, help="the committed store (default: the full profile's)")
    parser.add_argument("--only", nargs="+", default=(), metavar="KEYPREFIX", help="runs whose keys start so")
    parser.add_argument("--limit", type=int, help="rebuild only the first N selected keys (a random sample)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--rtol", type=float, default=RTOL)
    parser.add_argument("--atol", type=float, default=ATOL)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a number of runs >= 1, got {args.limit}")
    if any(not prefix or set(prefix) - set("0123456789abcdef") for prefix in args.only):
        parser.error(f"--only takes key prefixes (lowercase hexadecimal), got {' '.join(args.only)}")
    if settings.require_cached():
        parser.error("LABKIT_REQUIRE_CACHED=1 forbids training, and a rebuild trains every run: unset it")
    committed = open_store("full")
    committed = Store(args.store, committed.validators) if args.store else committed
    if not any(key.startswith(tuple(args.only) or "") for key in committed.keys()):
        parser.error(f"no run record in {committed.root}" + (f" starts with {' or '.join(args.only)}"
                     if args.only else "") + "; `labkit runs list --profile full` shows the keys")
    try:
        report = rebuild(committed, Store(args.out / "store", committed.validators), args.only, args.limit,
                         args.rtol, args.atol)
    except (StoreError, settings.SettingError) as error:
        print(f"rebuild: {error}", file=sys.stderr)
        return 2
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0 if ok(report) else 1


if __name__ == "__main__":
    sys.exit(main())
