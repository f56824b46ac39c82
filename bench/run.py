"""``make bench``: labkit's speed as ratios to references measured in the same run.

Absolute times vary fourfold between days on this shared machine; a ratio of two
figures measured side by side, interleaved, does not.  The guards of issue 19:

sweep    (a) cold sweep, 4 learning rates × 20 epochs on MNIST: ``labkit.sweep`` in a new
             process with an empty run store and compilation cache, against the plain
             sequential ``model.fit`` loop (``plain_keras.py``): ≥ 1.2×.  Both read a
             dataset already on disk (labkit's prepared copy is made once, like the npz).
         (b) the same sweep per epoch-equivalent (its wall time / epochs trained) against the
             steady epoch of a hand-written JAX ``lax.scan`` loop (``jax_loop.py``): ≤ 1.2×.
preview  (c) ``quarto preview`` estimate: chapter A executed in one kept-alive kernel
             (``tools/quarto.py``'s ``ChapterKernel``), full profile, every run stored
             (``LABKIT_REQUIRE_CACHED=1``); a re-execution is what an edit waits for: ≤ 10 s.
cold     (d) each chapter's cold build, full profile, empty store and caches.  Not in the
             default set: it trains the whole book.

    python bench/run.py                        # sweep and preview (several minutes)
    python bench/run.py --only cold --chapters chapters/04-regression.qmd
    python bench/run.py --quick --json out.json    # tiny settings: checks the plumbing only

Nothing is written to the project; the exit status is 1 when a guard fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PARTS = ("sweep", "preview", "cold")
CHAPTER_A = ROOT / "chapters" / "01-hyperparametres.qmd"
#: Variables of the calling shell that would change what a child measures.
_CLEARED = ("XLA_FLAGS", "LABKIT_REQUIRE_CACHED", "LABKIT_TRAIN_LOG", "LABKIT_PROFILE", "QUARTO_PROFILE",
            "LABKIT_WORKERS", "LABKIT_RUNS_DIR", "LABKIT_CACHE_DIR")


@dataclass(frozen=True)
class Settings:
    """What the sweep part trains; :data:`QUICK` only checks that the plumbing works."""

    lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
    epochs: int = 20
    repeats: int = 3
    jax_epochs: int = 6
    train_size: int | None = None


FULL = Settings()
QUICK = Settings(lrs=(0.1,), epochs=1, repeats=1, jax_epochs=2, train_size=300)


@dataclass
class Row:
    """One line of the table; ``status`` is pass, FAIL, info or skip."""

    measurement: str
    labkit: str = ""
    reference: str = ""
    ratio: str = ""
    target: str = ""
    status: str = "info"


def data_dir() -> Path:
    """``LABKIT_DATA_DIR``, else the shared offline copy next to the repository, else ``data/``."""
    if os.environ.get("LABKIT_DATA_DIR"):
        return Path(os.environ["LABKIT_DATA_DIR"])
    shared = ROOT.parent / "shared" / "data"
    return shared if (shared / "mnist.npz").is_file() else ROOT / "data"


def child_env(work: Path, prepared: Path, **extra: str) -> dict[str, str]:
    """A cold child's environment: its own empty store and compilation cache; the prepared
    MNIST (a cache labkit keeps beside the compilation cache) linked in."""
    (work / "cache").mkdir(parents=True)
    (work / "cache" / "data").symlink_to(prepared, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    return {**env, "KERAS_BACKEND": "jax", "LABKIT_DATA_DIR": str(data_dir()), "LABKIT_PROGRESS": "0",
            "LABKIT_RUNS_DIR": str(work / "runs"), "LABKIT_CACHE_DIR": str(work / "cache"),
            "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def run_child(script: str, args: list, env: dict) -> tuple[float, dict]:
    """Wall time of a whole child process, and the JSON line it printed last."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"bench/{script} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


# -- (a) and (b): the cold sweep against the plain loop and the JAX loop -------------------
def prepare_mnist(tmp: Path) -> Path:
    """Make labkit's prepared copy of MNIST once, in a child (this process stays free of JAX)."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(LABKIT_DATA_DIR=str(data_dir()), LABKIT_CACHE_DIR=str(tmp / "prepared"), LABKIT_PROGRESS="0")
    subprocess.run([sys.executable, "-c", "from labkit import data; data.mnist()"], env=env, check=True)
    return tmp / "prepared" / "data"


def sweep_samples(s: Settings, tmp: Path, log=print) -> dict[str, list[dict]]:
    """``repeats`` rounds of the three cold processes; the plain loop and labkit alternate first."""
    prepared = prepare_mnist(tmp)
    sizes = ["--train-size", s.train_size] if s.train_size else []
    npz = data_dir() / "mnist.npz"
    commands = {
        "plain": ("plain_keras.py", ["--data", npz, "--epochs", s.epochs, "--lrs", *s.lrs, *sizes]),
        "labkit": ("labkit_sweep.py", ["--epochs", s.epochs, "--lrs", *s.lrs, *sizes]),
        "jax": ("jax_loop.py", ["--data", npz, "--epochs", s.jax_epochs, *sizes]),
    }
    samples: dict[str, list[dict]] = {name: [] for name in commands}
    for repeat in range(s.repeats):
        order = ["plain", "labkit"] if repeat % 2 == 0 else ["labkit", "plain"]
        for name in [*order, "jax"]:
            script, args = commands[name]
            wall, out = run_child(script, args, child_env(tmp / f"{name}-{repeat}", prepared))
            samples[name].append({"wall": wall, **out})
            log(f"  round {repeat + 1}/{s.repeats} {name:<6} {wall:6.1f} s (load {load()})")
    return samples


def steady(epoch_seconds: list[float]) -> float:
    """The median epoch after the first (which compiles)."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def sweep_rows(s: Settings, samples: dict[str, list[dict]]) -> list[Row]:
    plain = statistics.median(x["wall"] for x in samples["plain"])
    labkit = statistics.median(x["wall"] for x in samples["labkit"])
    jax_epoch = statistics.median(steady(x["epoch_seconds"]) for x in samples["jax"])
    epochs = len(s.lrs) * s.epochs
    speedup, per_epoch = plain / labkit, labkit / epochs
    worker_epoch = statistics.median(steady(run["epoch_seconds"]) for x in samples["labkit"] for run in x["runs"])
    n = len(samples["labkit"])
    return [
        Row(f"(a) cold sweep {len(s.lrs)} lr × {s.epochs} epochs, wall (s), median of {n}: "
            "labkit vs plain fit loop", f"{labkit:.1f}", f"{plain:.1f}", f"{speedup:.2f}×", "≥ 1.2×",
            "pass" if speedup >= 1.2 else "FAIL"),
        Row(f"(b) per epoch-equivalent (s) = labkit wall / {epochs}, vs JAX lax.scan steady epoch",
            f"{per_epoch:.3f}", f"{jax_epoch:.3f}", f"{per_epoch / jax_epoch:.2f}×", "≤ 1.2×",
            "pass" if per_epoch / jax_epoch <= 1.2 else "FAIL"),
        Row("    labkit steady epoch in one worker (s), vs JAX", f"{worker_epoch:.3f}", f"{jax_epoch:.3f}",
            f"{worker_epoch / jax_epoch:.2f}×"),
    ]


# -- (c) and (d): chapters, executed as Quarto does ----------------------------------------
def _quarto():
    sys.path.insert(0, str(ROOT / "tools"))
    import quarto  # tools/quarto.py

    return quarto


def _why(error: BaseException) -> tuple[str, str]:
    """Where a chapter stopped (its error's first line) and why (the last line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return lines[0], lines[-1]


def preview_rows(chapter: Path, log=print) -> list[Row]:
    """Chapter A executed in one kernel, then three times more: the median of those is an edit's wait."""
    quarto = _quarto()
    env = {"LABKIT_PROFILE": "full", "LABKIT_REQUIRE_CACHED": "1", "LABKIT_PROGRESS": "0",
           "LABKIT_DATA_DIR": str(data_dir())}
    name = f"(c) quarto preview: {chapter.name} re-executed in a warm kernel (s), median of 3"
    try:
        start = time.perf_counter()
        with quarto.ChapterKernel(chapter, profile="", env=env) as kernel:
            kernel.execute()
            first = time.perf_counter() - start
            warm = statistics.median(kernel.execute().seconds for _ in range(3))
    except Exception as error:  # noqa: BLE001  (a chapter being rewritten may fail: say so, go on)
        where, why = _why(error)
        log(f"  skipped: {chapter} did not execute from the stored runs: {where} … {why}")
        return [Row(name, target="≤ 10 s", status="skip", reference=f"chapter failed: {why[:100]}")]
    log(f"  first execution (kernel start, imports) {first:.1f} s, warm {warm:.1f} s")
    return [Row(name, f"{warm:.1f}", target="≤ 10 s", status="pass" if warm <= 10 else "FAIL"),
            Row("    first execution, kernel start and imports included (s)", f"{first:.1f}")]


def book_chapters() -> list[Path]:
    return [path for path in _quarto().chapters(ROOT) if path.parent.name == "chapters"]


def cold_rows(chapters: list[Path], tmp: Path, profile: str = "", log=print) -> list[Row]:
    """Each chapter in a new kernel with an empty store and caches: a cold build's time."""
    quarto = _quarto()
    rows = []
    for chapter in chapters:
        work = tmp / f"cold-{chapter.stem}"
        work.mkdir(parents=True)
        env = {"LABKIT_PROFILE": profile or "full", "LABKIT_REQUIRE_CACHED": "0", "LABKIT_PROGRESS": "0",
               "LABKIT_DATA_DIR": str(data_dir()), "LABKIT_RUNS_DIR": str(work / "runs"),
               "LABKIT_CACHE_DIR": str(work / "cache"), "LABKIT_TRAIN_LOG": str(work / "trained.log")}
        name = f"(d) cold build of {chapter.name}, {profile or 'full'} profile (min)"
        try:
            seconds = quarto.execute(chapter, profile=profile, env=env).seconds
        except Exception as error:  # noqa: BLE001
            where, why = _why(error)
            log(f"  skipped: {chapter} failed: {where} … {why}")
            rows.append(Row(name, status="skip", reference=f"chapter failed: {why[:100]}"))
            continue
        log_file = work / "trained.log"
        trained = len(log_file.read_text().split()) if log_file.is_file() else 0
        log(f"  {chapter.name}: {seconds / 60:.1f} min, {trained} runs trained (load {load()})")
        rows.append(Row(name, f"{seconds / 60:.1f}", f"{trained} runs trained"))
    return rows


# -- the table --------------------------------------------------------------------------
COLUMNS = ("measurement", "labkit", "reference", "ratio", "target", "status")


def format_table(rows: list[Row]) -> str:
    """A Markdown table (aligned, so it reads on a terminal too)."""
    cells = [COLUMNS] + [tuple(str(getattr(row, c)).replace("|", "/") for c in COLUMNS) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--only", default="sweep,preview",
                        help=f"comma-separated parts among {', '.join(PARTS)} (default: sweep,preview)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and raw timings as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the plumbing, measures nothing")
    parser.add_argument("--chapter", type=Path, default=CHAPTER_A, help="the preview part's chapter")
    parser.add_argument("--chapters", type=Path, nargs="+", help="the cold part's chapters (default: all)")
    args = parser.parse_args(argv)
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = [part for part in args.only if part not in PARTS]
    if unknown or not args.only:
        parser.error(f"unknown part {unknown[0] if unknown else ''!r}; choose among {', '.join(PARTS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    rows, raw = [], {"settings": asdict(settings), "load_before": load(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as folder:
        tmp = Path(folder)
        for part in args.only:
            print(f"[bench] {part} (load average {load()})", flush=True)
            if part == "sweep":
                raw["sweep"] = sweep_samples(settings, tmp)
                rows += sweep_rows(settings, raw["sweep"])
            elif part == "preview":
                rows += preview_rows(args.chapter)
            else:
                rows += cold_rows(args.chapters or book_chapters(), tmp, "quick" if args.quick else "")
    raw["load_after"] = load()
    for row in rows if args.quick else []:  # tiny settings prove nothing about speed
        row.status = "info" if row.status in ("pass", "FAIL") else row.status
    print("\n" + format_table(rows))
    print(f"\nload average {raw['load_before']} before, {raw['load_after']} after, {os.cpu_count()} cores"
          + ("; QUICK settings: a plumbing check, not the benchmark" if args.quick else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({**raw, "quick": args.quick, "rows": [asdict(r) for r in rows]},
                                              indent=1), encoding="utf-8")
    return 1 if any(row.status == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
