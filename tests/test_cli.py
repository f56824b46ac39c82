"""The ``labkit`` command and the preface's summary: damaged stores are reported, never fatal."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.cli import main, safe, summary
from labkit.runs import Run, open_store, train
from labkit.store import Store, digest


def tiny_run(lr: float = 0.1, seed: int = 0) -> Run:
    """A run that trains in about a second: 300 images, one epoch, 8 hidden units."""
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return Run(model, data="mnist", epochs=1, batch_size=64, train_size=300, seed=seed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store holding one real run record, trained once for the module."""
    root = tmp_path_factory.mktemp("trained") / "full"
    return root, train(tiny_run(), store=Store(root, open_store().validators)).key


@pytest.fixture
def store(trained, store_dir) -> Store:
    """A copy of the trained store as the active (full) profile's store."""
    shutil.copytree(trained[0], store_dir / "full")
    return open_store()


def write_sealed(store: Store, record: dict, kind: str = "runs") -> None:
    """Write a record with a correct checksum but no schema check: what a tampered file looks like."""
    record = {**record, "format": 1, "kind": kind}
    record.pop("checksum", None)
    store.path(record["key"], kind).write_text(json.dumps({**record, "checksum": digest(record)}))


def damage(store: Store, key: str) -> dict[str, str]:
    """Four damaged items beside the good record: ``{name: key}``."""
    good = store.load(key)
    keys = {name: digest(name) for name in ("byte", "directory", "schema", "memo")}
    text = store.path(key).read_bytes().replace(key.encode(), keys["byte"].encode())
    store.path(keys["byte"]).write_bytes(text[:200] + b"\xff" + text[201:])
    store.path(keys["directory"]).mkdir()
    write_sealed(store, {**good, "key": keys["schema"], "diverged": "no", "history": []})
    (store.root / "memo").mkdir()
    store.path(keys["memo"], "memo").write_bytes(b'{"name": "\xff"}')
    return keys


def test_list_show_stats_rm(store, trained, capsys):
    key = trained[1]
    assert main(["runs", "list"]) == 0
    assert key[:12] in capsys.readouterr().out
    assert main(["runs", "show", key[:6]]) == 0
    shown = capsys.readouterr().out
    assert "val_accuracy=" in shown and "cpu: " in shown and "versions" in shown
    assert main(["runs", "show", key[:6], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == key
    assert main(["runs", "stats"]) == 0
    assert "runs: 1" in capsys.readouterr().out
    assert main(["runs", "rm", key[:8]]) == 0
    assert not store.keys()


def test_every_damaged_record_is_reported_by_every_command(store, trained, capsys):
    keys = damage(store, trained[1])
    assert main(["runs", "stats"]) == 0
    out = capsys.readouterr().out
    assert "runs: 1" in out and "damaged: 4" in out
    assert all(f"record {k[:12]}" in out for k in keys.values())
    assert "not valid JSON" in out or "unreadable" in out
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert trained[1][:12] in out and out.count("DAMAGED") == 4
    assert main(["doctor"]) == 0
    assert "MISS run store" in capsys.readouterr().out
    assert summary(store)["Enregistrements illisibles (recalculés)"] == "4"
    assert main(["runs", "show", keys["schema"][:10]]) == 2
    assert "labkit runs rm" in capsys.readouterr().err


def test_unknown_ambiguous_and_invalid_prefixes_say_what_to_type(store, capsys):
    for end in "01":
        store.path("ab" + end * 62).mkdir()
    assert main(["runs", "show", "ab"]) == 2
    assert "2 records start with 'ab'" in capsys.readouterr().err
    assert main(["runs", "rm", "ab", "ab0"]) == 2  # every key is checked before anything is removed
    assert "type more characters" in capsys.readouterr().err
    assert store.path("ab" + "0" * 62).is_dir()
    assert main(["runs", "show", "fedcba"]) == 2
    assert "`labkit runs list` shows the keys" in capsys.readouterr().err
    assert main(["runs", "show", "XYZ"]) == 2
    assert "lowercase hexadecimal" in capsys.readouterr().err
    assert main(["runs", "rm", "ab0"]) == 0
    assert "is a directory" in capsys.readouterr().out and store.path("ab" + "0" * 62).is_dir()


def test_summary_escapes_record_text_and_names_no_path(store, trained):
    import pypandoc

    record = store.load(trained[1])
    hostile = "<script>alert(1)</script> | *x* [a](javascript:b)"
    store.save({**record, "versions": {**record["versions"], "python": hostile},
                "platform": {**record["platform"], "cpu": hostile}, "finished_at": "2026-01-01<b>"})
    values = summary(store)
    assert not set("".join(values.values())) & set("<>|*[]`")
    assert values["Python"].startswith("&#60;script&#62;") and values["Runs enregistrés"] == "1"
    assert not any(str(store.root.parent) in value for value in values.values())
    table = "| élément | valeur |\n|--|--|\n" + "\n".join(f"| {k} | {v} |" for k, v in values.items())
    html = pypandoc.convert_text(table, "html", format="markdown")
    assert "<script" not in html and "<a " not in html and "<em>" not in html
    assert html.count("<td") == 2 * len(values)  # no cell split by a "|"


def test_summary_names_cpus_and_their_vector_extensions(store, trained):
    values = summary(store)
    assert "famille" in values["Processeurs"] and values["Processeurs"].startswith(
        safe(store.load(trained[1])["platform"]["cpu"]))
    record = store.load(trained[1])
    store.save({**record, "platform": {"cpu": "Old CPU"}})
    assert summary(store)["Processeurs"] == "Old CPU (extensions vectorielles non enregistrées)"


def test_summary_gives_the_widest_vector_set_the_cores_and_french_dates(store, trained):
    record = store.load(trained[1])
    store.save({**record, "finished_at": "2026-03-05T10:00:00+00:00",
                "platform": {"cpu": "Some CPU", "cpu_family": "6", "cpu_model": "85", "cores": 4,
                             "vector_extensions": ["sse", "sse2", "avx", "avx2", "fma"]}})
    values = summary(store)
    assert values["Processeurs"] == "Some CPU (famille 6, modèle 85 ; AVX2)"
    assert values["Cœurs par machine"] == "4" and values["Période des entraînements"] == "5 mars 2026"
    store.save({**record, "finished_at": "2026-13-45 not a day"})
    assert summary(store)["Période des entraînements"] == "—"


@given(st.text())
def test_safe_text_is_inert_markup_and_keeps_every_printable_character(text):
    escaped = safe(text, limit=10**6)
    assert all(c.isalnum() or c in " .,:;-+()/%" for c in re.sub(r"&#[0-9]+;", "", escaped))
    printable = "".join(c for c in text if c.isprintable() or c.isspace())
    assert html.unescape(escaped) == " ".join(printable.split())


def run_cli(*args, **env):
    done = subprocess.run([sys.executable, "-c", "import sys; from labkit.cli import main; code = main(sys.argv[1:]); "
                           "print('keras imported:', 'keras' in sys.modules); sys.exit(code)", *args],
                          capture_output=True, text=True, env={**os.environ, **env})
    return done.returncode, done.stdout, done.stderr


def test_doctor_reports_without_importing_keras(store_dir, tmp_path):
    code, out, _ = run_cli("doctor")
    assert code == 0 and "keras imported: False" in out
    assert "ok   backend" in out and "jax" in out and "quarto" in out and "run store" in out
    code, out, _ = run_cli("doctor", LABKIT_DATA_DIR=str(tmp_path), LABKIT_WORKERS="abc")
    assert code == 0
    assert "MISS mnist" in out and "downloaded on first use" in out
    assert "MISS workers" in out and "LABKIT_WORKERS='abc'" in out


def test_doctor_verify_checks_dataset_content(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip")
    code, out, _ = run_cli("doctor", "--verify", LABKIT_DATA_DIR=str(tmp_path), LABKIT_CACHE_DIR=str(tmp_path / "c"))
    assert code == 0 and "MISS mnist" in out and "DatasetError" in out and "mnist.npz" in out


def test_doctor_verify_reads_the_mnist_file_even_with_a_warm_prepared_copy(tmp_path):
    from labkit import data

    data.mnist()  # the session's cache now holds a genuine prepared copy
    genuine = Path(os.environ["LABKIT_DATA_DIR"]) / "mnist.npz"
    (tmp_path / "mnist.npz").write_bytes(genuine.read_bytes()[:300_000])  # truncated
    code, out, _ = run_cli("doctor", "--verify", LABKIT_DATA_DIR=str(tmp_path))
    assert code == 0 and "MISS mnist" in out and "mnist.npz" in out and "genuine content" not in out


def test_a_bad_profile_is_an_error_message_not_a_traceback(store_dir):
    code, _, err = run_cli("runs", "stats", LABKIT_PROFILE="nonsense")
    assert code == 2 and "LABKIT_PROFILE='nonsense'" in err and "Traceback" not in err
