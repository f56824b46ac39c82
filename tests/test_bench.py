"""bench/run.py works: its store-at-scale part on a small store, its table, its options.

Fast on purpose (one tiny training): the benchmark itself is ``make bench``.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_store_at_scale_small(bench, tmp_path, train_log):
    rows, details = bench.store_at_scale(300, tmp_path, points=100, log=lambda *_: None)
    assert len(train_log()) == 1  # the one real record; the 100-point sweep trained nothing
    assert details["records"] == 300 and details["cached_sweep_points"] == 100
    assert len(list((tmp_path / "scale-runs" / "full" / "runs").glob("*.json"))) == 300
    names = [row.measurement for row in rows]
    assert any("runs stats" in name for name in names) and any("cached sweep" in name for name in names)
    assert all(row.status in ("pass", "FAIL", "info") for row in rows)


def test_table_aligns_every_column(bench):
    rows = [bench.Row("sweep", "10.0", "20.0", "2.00x", ">= 1.5x", "pass"),
            bench.Row("  a longer measurement name", "1.23", status="FAIL")]
    lines = bench.format_table(rows).splitlines()
    assert lines[0].split() == list(bench.COLUMNS)
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert lines[2].startswith("sweep") and lines[2].endswith("pass")
    assert lines[3].startswith("  a longer") and lines[3].endswith("FAIL")


def test_ratio_helpers(bench):
    assert bench.steady([3.0, 1.0, 2.0, 1.5]) == 1.5
    assert bench.steady([3.0]) is None
    samples = [{"wall": 3.0}, {"wall": 1.0}, {"wall": 2.0}]
    assert bench.median_sample(samples, lambda s: s["wall"]) == {"wall": 2.0}
    flops = bench.epoch_flops(54_000, 6_000)
    assert flops == 54_000 * 3 * 2 * 234_752 + 6_000 * 2 * 234_752


def test_options(bench):
    assert bench.parse_args(["--quick", "--only", "store,book"]).only == ["store", "book"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "nonsense"])


def test_cold_part_is_opt_in(bench):
    """The cold part trains the whole book: never part of the default run, selectable by chapter."""
    assert "cold" not in bench.parse_args([]).only
    args = bench.parse_args(["--only", "cold", "--chapters", "04,03"])
    assert args.only == ["cold"] and args.chapters == ["04", "03"]
    assert set(bench.CHAPTER_BUDGETS) == {p.stem for p in (ROOT / "chapters").glob("*.qmd")}
