"""The ``labkit`` command: runs list/show/rm/stats and doctor."""

import subprocess
import sys

from labkit import Run, train
from labkit.cli import main
from labkit.models import mlp


def tiny(lr=0.1):
    return Run(model=mlp(hidden=(8,)), data="mnist", train_size=200, epochs=1, batch_size=64,
               learning_rate=lr)


def test_runs_list_show_stats_rm(store_dir, capsys):
    key = train(tiny()).key
    assert main(["runs", "list"]) == 0
    assert key[:12] in capsys.readouterr().out
    assert main(["runs", "show", key[:10]]) == 0
    shown = capsys.readouterr().out
    assert "versions" in shown and "val_accuracy=" in shown
    assert main(["runs", "stats"]) == 0
    assert "runs: 1" in capsys.readouterr().out
    assert main(["runs", "rm", key[:10]]) == 0
    main(["runs", "stats"])
    assert "runs: 0" in capsys.readouterr().out


def test_stats_counts_damaged_records(store_dir, capsys):
    from labkit.runs import open_store

    key = train(tiny()).key
    open_store().path(key).write_text("{broken")
    main(["runs", "stats"])
    out = capsys.readouterr().out
    assert "damaged: 1" in out and "runs: 0" in out


def test_doctor_runs_as_a_console_script(store_dir):
    out = subprocess.run([sys.executable, "-m", "labkit.cli", "doctor"], capture_output=True, text=True,
                         check=True).stdout
    assert "keras backend" in out and "jax" in out and "run store" in out and "quarto" in out
