"""The book's own helpers: the preface's environment table, notebook links, and the rebuild check.

The preface states where the book's numbers come from (versions, CPU, number of
runs, training time); those facts are read from the run records, never typed.
``python -m labkit.book rebuild`` retrains every chapter into a fresh store and
reports any record whose results differ from the committed one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    # the preface
    "load_records",
    "EnvironmentTable",
    "environment_table",
    "notebook_links",
    "format_number",
    "format_duration",
    # rebuilding from scratch
    "VOLATILE_FIELDS",
    "Comparison",
    "compare_records",
    "rebuild",
    "main",
]

NARROW_NBSP = "\u202f"


# ----------------------------------------------------------------------------
# French formatting
# ----------------------------------------------------------------------------


def format_number(value: float, decimals: int = 0) -> str:
    """``1234.5`` → ``"1 234,5"``: decimal comma, narrow no-break space for thousands."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", NARROW_NBSP).replace(".", ",")


def format_duration(seconds: float) -> str:
    """A training time in French: ``12,3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds < 60:
        return f"{format_number(seconds, 1)} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{format_number(hours)} h {minutes:02d} min"


# ----------------------------------------------------------------------------
# Run records
# ----------------------------------------------------------------------------


def load_records(store_dir: Path | str | None = None) -> list[dict]:
    """Every record of a run store (default: the active profile's); none if it does not exist yet.

    The store module is imported only when there is a store to read, so the
    preface renders before any run was ever trained.
    """
    if store_dir is None:
        from labkit import profile

        store_dir = profile.store_dir()
    store_dir = Path(store_dir)
    if not store_dir.is_dir():
        return []
    from labkit.store import Store

    return list(Store(store_dir).records())


def _distinct(values: Iterable[Any]) -> str:
    present = sorted({str(value) for value in values if value not in (None, "")})
    return ", ".join(present) if present else "inconnu"


def _dataset_name(record: Mapping) -> str:
    data = (record.get("spec") or {}).get("data")
    if isinstance(data, Mapping):
        return str(data.get("name") or data.get("dataset") or "?")
    return str(data or "?")


def _cpu(records: Sequence[Mapping]) -> str:
    seen = []
    for record in records:
        platform = record.get("platform") or {}
        cpu = platform.get("cpu") or "inconnu"
        cores = platform.get("cores")
        text = f"{cpu} ({cores} cœurs)" if cores else str(cpu)
        if text not in seen:
            seen.append(text)
    return " ; ".join(seen)


def _jax(records: Sequence[Mapping]) -> str:
    jax = _distinct((r.get("versions") or {}).get("jax") for r in records)
    jaxlib = _distinct((r.get("versions") or {}).get("jaxlib") for r in records)
    return jax if jaxlib in (jax, "inconnu") else f"{jax} (jaxlib {jaxlib})"


def _period(records: Sequence[Mapping]) -> str:
    days = sorted(str(r.get("finished_at", ""))[:10] for r in records if r.get("finished_at"))
    if not days:
        return "inconnue"
    return days[0] if days[0] == days[-1] else f"du {days[0]} au {days[-1]}"


def _relative(path: Path) -> str:
    from labkit.paths import project_root

    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


@dataclass(repr=False)
class EnvironmentTable:
    """The preface's table, as rows; displays as a Markdown table (HTML and PDF alike)."""

    rows: list[tuple[str, str]]
    store: str = ""

    def to_markdown(self) -> str:
        def cell(text: str) -> str:
            return str(text).replace("|", "\\|").replace("\n", " ")

        lines = ["| Élément | Valeur |", "|:--|:--|"]
        lines += [f"| {cell(name)} | {cell(value)} |" for name, value in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.to_markdown()

    __repr__ = __str__

    def as_dict(self) -> dict[str, str]:
        return dict(self.rows)


def _summary_rows(records: Sequence[Mapping]) -> list[tuple[str, str]]:
    diverged = sum(bool(r.get("diverged")) for r in records)
    total = sum(float(r.get("seconds") or 0.0) for r in records)
    runs = format_number(len(records)) + (f" (dont {format_number(diverged)} divergé(s))" if diverged else "")
    rows = [("Runs enregistrés", runs), ("Temps d'entraînement cumulé", format_duration(total))]
    per_data: dict[str, list[float]] = defaultdict(list)
    for record in records:
        per_data[_dataset_name(record)].append(float(record.get("seconds") or 0.0))
    if len(per_data) > 1:
        for name, seconds in sorted(per_data.items()):
            rows.append((f"dont {name}", f"{format_number(len(seconds))} runs, {format_duration(sum(seconds))}"))
    return rows


def environment_table(records: Iterable[Mapping] | None = None, *, store_dir: Path | str | None = None) -> EnvironmentTable:
    """Versions, CPU, number of runs and training time, computed from the run records.

    ``records`` default to the active profile's store.  An empty store gives a
    one-row table saying so (the preface renders before any training).
    """
    from labkit import profile

    if records is None:
        store = Path(store_dir) if store_dir is not None else profile.store_dir()
        records = load_records(store)
    else:
        store = Path(store_dir) if store_dir is not None else None
    records = list(records)
    label = profile.active() + (f", store {_relative(store)}" if store is not None else "")
    if not records:
        return EnvironmentTable([("Runs enregistrés", f"aucun pour l'instant (profil {label})")], store=str(store or ""))
    versions = [r.get("versions") or {} for r in records]
    rows = [
        ("Profil", label),
        ("Python", _distinct(v.get("python") for v in versions)),
        ("Keras", _distinct(v.get("keras") for v in versions)),
        ("JAX", _jax(records)),
        ("NumPy", _distinct(v.get("numpy") for v in versions)),
        ("labkit", _distinct(v.get("labkit") for v in versions)),
        ("Processeur", _cpu(records)),
        *_summary_rows(records),
        ("Période des entraînements", _period(records)),
    ]
    return EnvironmentTable(rows, store=str(store or ""))


@dataclass(repr=False)
class _Markdown:
    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def notebook_links(root: Path | str | None = None) -> _Markdown:
    """A Markdown list linking each exercise chapter's notebook (written by ``make book``)."""
    import fnmatch

    from labkit import quarto

    root = quarto.find_root(root)
    lines = []
    for chapter in quarto.book_chapters(root):
        if fnmatch.fnmatch(chapter.relative_to(root).as_posix(), quarto.EXERCISE_CHAPTERS):
            name = quarto.notebook_name(chapter)
            lines.append(f"- [{quarto.chapter_title(chapter)}](notebooks/{name}){{download=\"{name}\"}}")
    return _Markdown("\n".join(lines))


# ----------------------------------------------------------------------------
# Rebuild: retrain into a fresh store and compare with the committed one
# ----------------------------------------------------------------------------

#: Record fields that legitimately change between two trainings of the same
#: run (when, how long, where, with which versions): left out of the comparison.
VOLATILE_FIELDS = frozenset(
    {
        "key", "checksum", "seconds", "epoch_seconds", "started_at", "finished_at",
        "timing", "timings", "versions", "platform", "host",
    }
)


@dataclass
class Comparison:
    """How a fresh store differs from the committed one."""

    changed: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # committed, not produced again (stale)
    new: list[str] = field(default_factory=list)  # produced, never committed
    same: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No result changed and nothing the book needs is missing from the commit."""
        return not self.changed and not self.new

    def to_markdown(self) -> str:
        lines = [
            "# Reconstruction du store",
            "",
            f"- records identiques : {self.same}",
            f"- records dont les résultats diffèrent : {len(self.changed)}",
            f"- records produits mais absents du store commité : {len(self.new)}",
            f"- records commités que les chapitres n'ont pas reproduits : {len(self.missing)}",
        ]
        if self.changed:
            lines += ["", "## Résultats différents", "", "| run | champ | commité | reconstruit |", "|--|--|--|--|"]
            for key, diffs in sorted(self.changed.items()):
                for path, old, new in diffs[:20]:
                    lines.append(f"| {self.labels.get(key, key[:12])} | `{path}` | {_short(old)} | {_short(new)} |")
        for title, keys in (("Absents du store commité", self.new), ("Non reproduits", self.missing)):
            if keys:
                lines += ["", f"## {title}", ""] + [f"- {self.labels.get(k, k)}" for k in sorted(keys)]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "same": self.same,
            "changed": {k: [[p, o, n] for p, o, n in v] for k, v in self.changed.items()},
            "new": self.new,
            "missing": self.missing,
        }


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return (text[:60] + "…" if len(text) > 60 else text).replace("|", "\\|")


def _differences(old: Any, new: Any, rtol: float, path: str = "") -> Iterable[tuple[str, Any, Any]]:
    """Where two record values differ; floats within ``rtol`` count as equal."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            if not path and key in VOLATILE_FIELDS:
                continue
            yield from _differences(old.get(key), new.get(key), rtol, f"{path}.{key}" if path else str(key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from _differences(a, b, rtol, f"{path}[{index}]")
    elif isinstance(old, float) and isinstance(new, float):
        both_nan = math.isnan(old) and math.isnan(new)
        if not both_nan and not math.isclose(old, new, rel_tol=rtol, abs_tol=0.0):
            yield path, old, new
    elif old != new:
        yield path, old, new


def _label(record: Mapping) -> str:
    spec = record.get("spec") or {}
    return f"{str(record.get('key', '?'))[:12]} ({_dataset_name(record)}, {spec.get('epochs', '?')} époques)"


def compare_records(committed: Iterable[Mapping], fresh: Iterable[Mapping], *, rtol: float = 0.0) -> Comparison:
    """Compare two stores record by record (matched on ``key``).

    Everything but ``VOLATILE_FIELDS`` is compared: history, final metrics,
    probes, the diverged flag.  A retrain on the same versions reproduces a
    record bit for bit (GUIDE §2), so the default tolerance is zero.
    """
    old = {str(r["key"]): r for r in committed}
    new = {str(r["key"]): r for r in fresh}
    result = Comparison(labels={k: _label(r) for k, r in {**old, **new}.items()})
    result.missing = sorted(set(old) - set(new))
    result.new = sorted(set(new) - set(old))
    for key in sorted(set(old) & set(new)):
        diffs = list(_differences(old[key], new[key], rtol))
        if diffs:
            result.changed[key] = diffs
        else:
            result.same += 1
    return result


def rebuild(output: Path | str = "build/rebuild", *, rtol: float = 0.0, chapters: Sequence[Path] | None = None) -> Comparison:
    """Retrain every exercise chapter into a fresh full-profile store, then compare.

    The chapters are executed as Quarto would (``labkit.quarto``), so the
    fresh store holds exactly the runs the book uses.  Writes
    ``report.md`` and ``report.json`` into ``output``.
    """
    import fnmatch

    from labkit import profile, quarto

    root = quarto.find_root()
    output = Path(output).resolve()
    fresh_root = output / "runs"
    if fresh_root.exists() and any(fresh_root.iterdir()):
        raise FileExistsError(f"{fresh_root} is not empty: a rebuild starts from an empty store (remove it first)")
    env = {"LABKIT_RUNS_DIR": str(fresh_root), "LABKIT_PROFILE": "full", "LABKIT_REQUIRE_CACHED": None}
    if chapters is None:
        chapters = [c for c in quarto.book_chapters(root) if fnmatch.fnmatch(c.relative_to(root).as_posix(), quarto.EXERCISE_CHAPTERS)]
    for chapter in chapters:
        result = quarto.execute_chapter(chapter, profile="", root=root, env=env)
        print(f"{result.relative_path}: {format_duration(result.seconds)}", flush=True)
    comparison = compare_records(load_records(profile.store_dir("full")), load_records(fresh_root / "full"), rtol=rtol)
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text(comparison.to_markdown(), encoding="utf-8")
    (output / "report.json").write_text(json.dumps(comparison.to_json(), indent=2, default=str), encoding="utf-8")
    return comparison


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.book table`` or ``python -m labkit.book rebuild [--out DIR] [--rtol R]``."""
    parser = argparse.ArgumentParser(prog="python -m labkit.book")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("table", help="print the preface's environment table")
    rebuild_parser = commands.add_parser("rebuild", help="retrain everything into a fresh store and compare")
    rebuild_parser.add_argument("--out", default="build/rebuild", help="fresh store and report folder")
    rebuild_parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance on floats")
    args = parser.parse_args(argv)
    if args.command == "table":
        print(environment_table().to_markdown())
        return 0
    comparison = rebuild(args.out, rtol=args.rtol)
    print(comparison.to_markdown())
    return 0 if comparison.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
