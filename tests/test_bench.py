"""bench/run.py's plumbing with tiny settings: ratios, table, options, chapters that fail.

The benchmark itself is ``make bench`` (several minutes of full-MNIST training).
"""

from __future__ import annotations

import importlib.util
import json
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


def sample(wall, epochs=(2.0, 0.3, 0.3)):
    return {"wall": wall, "epoch_seconds": list(epochs), "runs": [{"epoch_seconds": [1.5, 0.5, 0.5]}]}


def test_ratios_and_guards(bench):
    settings = bench.Settings(lrs=(0.1, 0.3), epochs=10)
    samples = {"plain": [sample(30.0), sample(36.0), sample(60.0)],
               "labkit": [sample(25.0), sample(24.0), sample(90.0)], "jax": [sample(5.0, (3.0, 1.0, 1.2, 1.1))]}
    a, b, worker = bench.sweep_rows(settings, samples)
    assert (a.labkit, a.reference, a.ratio, a.status) == ("25.0", "36.0", "1.44×", "pass")  # medians
    assert (b.labkit, b.reference, b.ratio, b.status) == ("1.250", "1.100", "1.14×", "pass")  # 25 s / 20 epochs
    assert worker.ratio == "0.45×" and worker.status == "info"
    samples["labkit"] = [sample(33.0)]
    a, b, _ = bench.sweep_rows(settings, samples)
    assert a.status == "FAIL" and b.status == "FAIL"


def test_table_is_aligned_markdown(bench):
    rows = [bench.Row("(a) sweep", "10.0", "20.0", "2.00×", "≥ 1.2×", "pass"), bench.Row("a | b", status="skip")]
    lines = bench.format_table(rows).splitlines()
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == list(bench.COLUMNS)
    assert len({len(line) for line in lines}) == 1 and lines[1].startswith("|--")
    assert lines[3].count("|") == len(bench.COLUMNS) + 1  # a "|" inside a cell does not split it


def test_options(bench):
    assert bench.parse_args([]).only == ["sweep", "preview"]
    args = bench.parse_args(["--only", "cold", "--chapters", "chapters/04-regression.qmd"])
    assert args.only == ["cold"] and args.chapters == [Path("chapters/04-regression.qmd")]
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "nonsense"])


def test_chapters_are_timed_and_a_failing_one_is_skipped_with_its_reason(bench, tmp_path):
    good, bad = tmp_path / "good.qmd", tmp_path / "bad.qmd"
    good.write_text("# Good\n\n```{python}\nx = 41 + 1\n```\n\nValue `{python} x`.\n")
    bad.write_text("# Bad\n\n```{python}\nraise RuntimeError('chapter being rewritten')\n```\n")
    messages = []
    warm, first = bench.preview_rows(good, log=messages.append)
    assert warm.status == "pass" and float(warm.labkit) <= float(first.labkit)
    (skipped,) = bench.preview_rows(bad, log=messages.append)
    assert skipped.status == "skip" and "chapter being rewritten" in skipped.reference
    assert any("did not execute" in m and "chapter being rewritten" in m for m in messages)
    rows = bench.cold_rows([good, bad], tmp_path / "cold", profile="quick", log=messages.append)
    assert [row.status for row in rows] == ["info", "skip"] and rows[0].reference == "0 runs trained"


@pytest.mark.slow
def test_quick_sweep_runs_the_three_processes(bench, tmp_path, capsys):
    """The sweep part end to end on 300 images, one epoch: the children run and report."""
    assert bench.main(["--quick", "--only", "sweep", "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["quick"] and {"plain", "labkit", "jax"} <= set(result["sweep"])
    labkit = result["sweep"]["labkit"][0]
    assert labkit["runs"][0]["trained"] and len(labkit["runs"][0]["epoch_seconds"]) == 1
    assert len(result["rows"]) == 3 and all(row["status"] == "info" for row in result["rows"])
    assert "(a) cold sweep" in capsys.readouterr().out
