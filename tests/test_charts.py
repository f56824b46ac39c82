"""Chart builders and renderer: valid specs, French formats, diverged runs kept, PNGs not blank."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest

from labkit import charts
from labkit.charts import _renderer

#: Set LABKIT_CHART_DIR to keep the PNGs for a look (e.g. /tmp/charts).
CHART_DIR = os.environ.get("LABKIT_CHART_DIR")


# --------------------------------------------------------------------------- synthetic frames


@functools.lru_cache(maxsize=None)
def _history(*args, **kwargs):
    return _make_history(*args, **kwargs)


def history(*args, **kwargs):
    """Cached: building the rows in Python is the slow part of these tests."""
    return _history(*args, **kwargs).copy()


def _make_history(
    lrs=(0.001, 0.01, 0.1, 1.0),
    seeds=(0, 1, 2),
    epochs=10,
    diverge_lr=1.0,
    metrics=("accuracy", "loss"),
):
    """A sweep history like labkit.sweep's: lr grid, seeds; runs at ``diverge_lr`` diverge."""
    rng = np.random.default_rng(0)
    rows = []
    for lr in lrs:
        for seed in seeds:
            key = f"run-{lr}-{seed}"
            diverged = lr == diverge_lr and seed != 0
            stop = 3 + seed if diverged else epochs
            speed = 1 + 3 * np.log10(lr / max(min(lrs), 1e-6) + 1)
            for epoch in range(1, stop + 1):
                for split, gap in (("train", 0.0), ("validation", 0.01)):
                    acc = 0.98 - 0.6 * np.exp(-speed * epoch / 3) - gap + rng.normal(0, 0.003)
                    loss = 2.3 * np.exp(-speed * epoch / 3) + 0.05 + gap
                    for metric in metrics:
                        value = acc if metric == "accuracy" else loss
                        if diverged and epoch == stop and metric == "loss":
                            value = np.nan
                        rows.append(
                            dict(
                                lr=lr,
                                seed=seed,
                                key=key,
                                diverged=diverged,
                                epoch=epoch,
                                split=split,
                                metric=metric,
                                value=value,
                            )
                        )
            if not diverged:
                for metric in metrics:
                    rows.append(
                        dict(
                            lr=lr,
                            seed=seed,
                            key=key,
                            diverged=False,
                            epoch=epochs,
                            split="test",
                            metric=metric,
                            value=0.97 if metric == "accuracy" else 0.1,
                        )
                    )
    return pd.DataFrame(rows)


def grid_history():
    """A 2-D grid (lr × activation): learning curves need one of them as facet."""
    frame = history()
    return pd.concat(
        [
            frame.assign(activation="relu"),
            frame.assign(
                activation="tanh", value=frame["value"] * 0.98, key=frame["key"] + "-tanh"
            ),
        ],
        ignore_index=True,
    )


def l2_history():
    """A λ grid with a zero (no penalty): the case a log axis cannot hold."""
    lambdas = dict(zip((0.05, 0.06, 0.07, 0.08, 0.09), (0.0, 1e-5, 1e-4, 1e-3, 1e-2), strict=True))
    frame = history(lrs=tuple(lambdas), diverge_lr=None, epochs=4)
    return frame.assign(lr=frame["lr"].map(lambdas)).rename(columns={"lr": "l2"})


def signal_frame():
    rows = []
    for init, scale in (("glorot_uniform", 1.0), ("he_normal", 1.4), ("random_normal", 0.3)):
        for seed in (0, 1):
            for layer in range(1, 7):
                for quantity in ("activation", "gradient"):
                    for stat in ("std", "mean"):
                        growth = scale**layer if quantity == "activation" else scale ** (7 - layer)
                        rows.append(
                            dict(
                                init=init,
                                seed=seed,
                                epoch=0,
                                layer=layer,
                                layer_name=f"hidden_{layer}" if layer < 6 else "output",
                                quantity=quantity,
                                stat=stat,
                                value=0.5 * growth * (1 + 0.05 * seed),
                            )
                        )
    return pd.DataFrame(rows)


def weight_norm_frame():
    rows = []
    for l2 in (0.0, 1e-4, 1e-3):
        for seed in (0, 1):
            for epoch in range(0, 11):
                for layer, name, base in (
                    (1, "hidden_1", 16.0),
                    (2, "hidden_2", 11.0),
                    (3, "output", 3.5),
                ):
                    value = base * (1 + 0.04 * epoch * (1 - 300 * l2)) + 0.1 * seed
                    rows.append(
                        dict(
                            l2=l2, seed=seed, epoch=epoch, layer=layer, layer_name=name, value=value
                        )
                    )
    return pd.DataFrame(rows)


def weight_hist_frame():
    rng = np.random.default_rng(1)
    rows = []
    for init in ("glorot_uniform", "he_normal"):
        for seed in (0, 1):
            for epoch in (0, 10):
                for layer, name, fan_in in (
                    (1, "hidden_1", 784),
                    (2, "hidden_2", 256),
                    (3, "output", 128),
                ):
                    w = rng.normal(0, np.sqrt(2 / fan_in) * (1.3 if epoch else 1), 2000)
                    counts, edges = np.histogram(w, bins=30)
                    for c, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
                        rows.append(
                            dict(
                                init=init,
                                seed=seed,
                                epoch=epoch,
                                layer=layer,
                                layer_name=name,
                                bin_left=lo,
                                bin_right=hi,
                                count=int(c),
                            )
                        )
    return pd.DataFrame(rows)


def predictions(n=4000, models=("MLP",)):
    rng = np.random.default_rng(2)
    frames = []
    for i, model in enumerate(models):
        actual = np.minimum(rng.gamma(4, 0.5, n), 5.00001)
        predicted = actual * 0.85 + 0.3 + rng.normal(0, 0.5 + 0.1 * i, n)
        frames.append(pd.DataFrame(dict(actual=actual, predicted=predicted, model=model)))
    return pd.concat(frames, ignore_index=True)


def heat_frame():
    rows = []
    for init in ("glorot_uniform", "he_normal", "random_normal"):
        for act in ("relu", "tanh", "sigmoid"):
            for seed in (0, 1, 2):
                bad = init == "random_normal" and act == "sigmoid"
                value = (
                    np.nan
                    if bad
                    else 0.90
                    + 0.02 * len(act) / 7
                    + 0.01 * seed
                    + (0.03 if init == "he_normal" else 0)
                )
                rows.append(dict(init=init, activation=act, seed=seed, value=value, diverged=bad))
    return pd.DataFrame(rows)


def depth_frame():
    rows = []
    for depth in (1, 2, 4, 8):
        params = 784 * 128 + 128 + (depth - 1) * (128 * 128 + 128) + 1290
        for seed in (0, 1, 2):
            rows.append(
                dict(
                    depth=depth,
                    seed=seed,
                    params=params,
                    seconds_per_epoch=0.2 + 0.05 * depth + 0.01 * seed,
                )
            )
    return pd.DataFrame(rows)


def all_charts():
    """One chart of every kind, named for the PNG files."""
    return {name: build() for name, build in BUILDS.items()}


BUILDS = {
    "learning_curves": lambda: charts.learning_curves(history(), color="lr"),
    "learning_curves_loss_log": lambda: charts.learning_curves(
        history(), color="lr", metric="loss", log_y=True, splits=("validation",)
    ),
    "learning_curves_facet_test": lambda: charts.learning_curves(
        grid_history(), color="lr", facet="activation", splits=("validation", "test")
    ),
    "learning_curves_many": lambda: charts.learning_curves(
        history(
            lrs=tuple(np.round(10.0 ** np.linspace(-4, 0, 12), 5)),
            seeds=(0,),
            epochs=6,
            diverge_lr=None,
        ),
        color="lr",
        splits=("validation",),
    ),
    "final_metric_lr": lambda: charts.final_metric(history(), "lr", log_x=True),
    "final_metric_l2": lambda: charts.final_metric(l2_history(), "l2", log_x=True),
    "heatmap": lambda: charts.heatmap(
        heat_frame(), x="activation", y="init", value_title="Exactitude (validation)"
    ),
    "metric_by_bar": lambda: charts.metric_by(depth_frame(), "depth", "params", kind="bar"),
    "metric_by_dot": lambda: charts.metric_by(depth_frame(), "depth", "seconds_per_epoch"),
    "layer_stats": lambda: charts.layer_stats(signal_frame(), color="init"),
    "weight_norms": lambda: charts.weight_norms(weight_norm_frame(), facet="l2"),
    "weight_histograms": lambda: charts.weight_histograms(weight_hist_frame(), facet="init"),
    "predicted_vs_actual": lambda: charts.predicted_vs_actual(predictions()),
    "predicted_vs_actual_models": lambda: charts.predicted_vs_actual(
        predictions(2000, ("Linéaire", "MLP"))
    ),
    "residuals": lambda: charts.residuals(predictions()),
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module", autouse=True)
def labkit_theme():
    with alt.theme.enable("labkit"):
        yield


@pytest.fixture(scope="module")
def built():
    return all_charts()


def embedded_rows(spec: dict) -> int:
    datasets = spec.get("datasets", {})
    inline = []

    def walk(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "values" in data:
                inline.append(len(data["values"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in spec.items() if k != "datasets"})
    return sum(len(v) for v in datasets.values()) + sum(inline)


def mark_types(spec: dict) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            mark = node.get("mark")
            if mark is not None:
                found.add(mark if isinstance(mark, str) else mark["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return found


def pixels(png: bytes) -> np.ndarray:
    """RGB pixels of a PNG (Pillow is in the ``test`` extra)."""
    image = pytest.importorskip("PIL.Image", reason="Pillow decodes the rendered PNGs")
    return np.asarray(image.open(io.BytesIO(png)).convert("RGB"), dtype=float)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(BUILDS))
def test_every_chart_is_valid_titled_and_drawn(built, name):
    chart = built[name]
    spec = chart.to_dict(validate=True)
    assert spec.get("title") and spec.get("description")
    assert embedded_rows(spec) > 0
    assert mark_types(spec) & {"line", "point", "rect", "bar", "circle", "area", "tick"}
    png = charts.to_png(chart, scale=2 if CHART_DIR else 1)
    if CHART_DIR:
        Path(CHART_DIR).mkdir(parents=True, exist_ok=True)
        Path(CHART_DIR, f"{name}.png").write_bytes(png)
    image = pixels(png)
    height, width, _ = image.shape
    assert width >= 400
    # Inside the plot region (below the title, clear of axes and legends) the data
    # marks are the only coloured pixels: text, axes and grid are grey.
    plot = image[int(height * 0.25) : int(height * 0.9), int(width * 0.1) : int(width * 0.75)]
    colourful = (plot.max(axis=2) - plot.min(axis=2)) > 40
    assert colourful.mean() > 0.005, f"{name}: plot area looks blank"


def test_mimebundle_has_html_and_png_but_no_svg(built):
    bundle, metadata = _renderer.render(built["learning_curves"].to_dict())
    assert set(bundle) == {"text/html", "image/png"}
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    assert metadata["image/png"]["width"] * _renderer.PNG_SCALE == pixels(png).shape[1]
    html = bundle["text/html"]
    assert "vega-embed@" in html and "cdn.jsdelivr.net" in html
    assert '"decimal": ","' in html  # the fr-FR locale handed to vega-embed
    assert "<html" not in html  # a fragment: several charts per page


def test_enable_sets_renderer_and_theme():
    before_renderer, before_theme = alt.renderers.active, alt.theme.active
    try:
        charts.enable()
        assert alt.renderers.active == "labkit" and alt.theme.active == "labkit"
        chart = charts.metric_by(depth_frame(), "depth", "params", kind="bar")
        bundle = chart._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert "text/html" in bundle and "image/png" in bundle and "image/svg+xml" not in bundle
    finally:
        alt.renderers.enable(before_renderer)
        alt.theme.enable(before_theme)


def svg_texts(chart) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", _renderer.to_svg(chart))


def test_french_number_format_in_rendered_text():
    cell = pd.DataFrame(dict(init=["he_normal"], activation=["relu"], value=[0.975]))
    texts = svg_texts(charts.heatmap(cell, "activation", "init"))
    assert "97,5\u202f%" in texts  # decimal comma, narrow no-break space before %
    axis = [t for t in svg_texts(charts.learning_curves(history(), color="lr")) if t.endswith("%")]
    assert axis and not any("." in t for t in axis)
    assert "0,001" in svg_texts(charts.final_metric(history(), "lr", log_x=True))


def test_locale_travels_in_the_spec():
    """vega-embed and vl-convert read the same fr-FR locale from the spec's config."""
    spec = charts.metric_by(depth_frame(), "depth", "params").to_dict()
    assert spec["config"]["locale"]["number"]["decimal"] == ","
    plain = dict(spec, config={k: v for k, v in spec["config"].items() if k != "locale"})
    import vl_convert

    with_locale = re.findall(r">([^<]*)</text>", vl_convert.vegalite_to_svg(spec))
    assert any("\u00a0" in t for t in with_locale)  # 101 770: no-break space grouping
    without = re.findall(r">([^<]*)</text>", vl_convert.vegalite_to_svg(plain))
    assert any("," in t and t[0].isdigit() for t in without)  # en-US: 101,770


def test_diverged_runs_are_in_the_chart_data(built):
    spec = built["learning_curves"].to_dict()
    rows = [row for values in spec["datasets"].values() for row in values]
    crosses = [r for r in rows if r.get("kind") == "diverged"]
    assert len(crosses) == 2 * 2  # two diverged seeds × two splits
    assert any("divergé : 2/3" in str(r.get("config")) for r in rows)
    assert "divergés" in " ".join(spec["title"]["subtitle"])

    final = charts.final_metric(history(), "lr", log_x=True).to_dict()
    rows = [row for values in final["datasets"].values() for row in values]
    assert sum(r.get("status", "").startswith("divergé") for r in rows) == 2


def test_diverged_run_without_test_row_is_still_listed():
    spec = charts.final_metric(history(), "lr", split="test", log_x=True).to_dict()
    rows = [row for values in spec["datasets"].values() for row in values]
    assert sum(r.get("status", "").startswith("divergé") for r in rows) == 2
    assert "divergés" in " ".join(spec["title"]["subtitle"])


def test_big_sweep_embeds_at_most_max_rows():
    lrs = tuple(10.0 ** np.linspace(-4, 0, 12))
    big = history(lrs=lrs, seeds=tuple(range(5)), epochs=120, diverge_lr=lrs[-1])
    assert len(big) > 20_000
    spec = charts.learning_curves(big, color="lr").to_dict(validate=True)
    assert 0 < embedded_rows(spec) <= charts.MAX_ROWS
    many = pd.concat([predictions(4000, (f"m{i}",)) for i in range(3)])
    for builder in (charts.predicted_vs_actual, charts.residuals):
        spec = builder(many).to_dict(validate=True)
        assert 0 < embedded_rows(spec) <= charts.MAX_ROWS


def test_many_configurations_get_a_dropdown():
    lrs = tuple(10.0 ** np.linspace(-4, 0, 12))
    spec = charts.learning_curves(
        history(lrs=lrs, seeds=(0,), epochs=3, diverge_lr=None), color="lr"
    ).to_dict()
    text = json.dumps(spec)
    assert '"bind": "legend"' in text and '"input": "select"' in text
    small = json.dumps(charts.learning_curves(history(), color="lr").to_dict())
    assert '"input": "select"' not in small


def test_zero_lambda_is_a_reference_line_on_a_log_axis(built):
    spec = built["final_metric_l2"].to_dict()
    marks = mark_types(spec)
    assert "rule" in marks
    assert any("λ = 0" in line for line in spec["title"]["subtitle"])


def test_default_titles_and_labels_are_french(built):
    spec = built["final_metric_lr"].to_dict()
    assert spec["title"]["text"] == "Exactitude (validation) selon le taux d'apprentissage"
    text = json.dumps(spec, ensure_ascii=False)
    assert "Taux d'apprentissage" in text and "Exactitude (validation)" in text
    assert "Époque" in json.dumps(built["learning_curves"].to_dict(), ensure_ascii=False)


def test_custom_title_and_description():
    chart = charts.learning_curves(
        history(), color="lr", title="Mon titre", description="Texte alternatif"
    )
    spec = chart.to_dict()
    assert spec["title"]["text"] == "Mon titre" and spec["description"] == "Texte alternatif"


def test_input_errors_name_the_problem():
    frame = history()
    with pytest.raises(ValueError, match="missing column.*'depth'"):
        charts.learning_curves(frame, color="depth")
    with pytest.raises(ValueError, match=r"metric=\['rmse'\] not in the frame"):
        charts.learning_curves(frame, color="lr", metric="rmse")
    with pytest.raises(ValueError, match="column 'init' takes 2 values"):
        charts.learning_curves(frame.assign(init=np.where(frame.seed == 0, "a", "b")), color="lr")
    with pytest.raises(ValueError, match="kind must be"):
        charts.metric_by(depth_frame(), "depth", "params", kind="pie")
    with pytest.raises(TypeError, match="DataFrame"):
        charts.heatmap([1, 2], "a", "b")


def test_value_labels_are_french():
    assert charts._value_label(0.001) == "0,001"
    assert charts._value_label(1e-5) == "10⁻⁵"
    assert charts._value_label(2.5e-5) == "2,5·10⁻⁵"
    assert charts._value_label(3) == "3"
    assert charts._value_label("relu") == "relu"


# --------------------------------------------------------------------------- PNG cache


@pytest.fixture
def chart_cache(tmp_path, monkeypatch):
    """An empty chart cache for one test."""
    folder = tmp_path / "chart-cache"
    monkeypatch.setenv("LABKIT_CHART_CACHE", str(folder))
    return folder


@pytest.fixture
def draws(monkeypatch):
    """A call counter on vl-convert's PNG drawing: one title per drawing."""
    calls = []
    draw = _renderer.vlc.vegalite_to_png

    def counted(spec, **options):
        calls.append(spec["title"]["text"])
        return draw(spec, **options)

    monkeypatch.setattr(_renderer.vlc, "vegalite_to_png", counted)
    return calls


def small_chart(frame=None, **kwargs) -> dict:
    frame = heat_frame() if frame is None else frame
    return charts.heatmap(frame, x="activation", y="init", **kwargs).to_dict()


def cached_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def test_second_render_draws_nothing_and_returns_the_same_bytes(chart_cache, draws):
    first, first_meta = _renderer.render(small_chart())
    assert len(draws) == 1
    second, second_meta = _renderer.render(small_chart())  # built again: same spec, same key
    assert len(draws) == 1
    assert second["image/png"] == first["image/png"] and second_meta == first_meta
    (stored,) = cached_files(chart_cache)
    assert stored.read_bytes() == base64.b64decode(first["image/png"])
    assert not list(chart_cache.glob(".*"))  # no temporary file left behind


def test_changed_chart_or_options_miss(chart_cache, draws):
    spec = small_chart()
    _renderer.render(spec)
    frame = heat_frame()
    frame.loc[0, "value"] = 0.5
    _renderer.render(small_chart(frame))
    _renderer.render(small_chart(title="Autre titre"))
    _renderer.to_png(spec, scale=1)
    title = spec["title"]["text"]
    assert draws == [title, title, "Autre titre", title]  # other data, other title, other scale
    assert len(cached_files(chart_cache)) == 4


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty", "not a png"])
def test_damaged_cache_file_is_redrawn_and_replaced(chart_cache, draws, damage):
    png = _renderer.to_png(small_chart())
    (stored,) = cached_files(chart_cache)
    data = bytearray(png)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "empty":
        data = b""
    else:
        data = b"<html>not a png</html>"
    stored.write_bytes(bytes(data))
    assert _renderer.to_png(small_chart()) == png
    assert len(draws) == 2
    assert stored.read_bytes() == png


def test_unwritable_cache_folder_still_renders(tmp_path, monkeypatch, draws):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LABKIT_CHART_CACHE", str(blocker / "charts"))  # mkdir fails, even as root
    first, _ = _renderer.render(small_chart())
    second, _ = _renderer.render(small_chart())
    assert second["image/png"] == first["image/png"]
    assert len(draws) == 2  # nothing could be stored: drawn each time


# --------------------------------------------------------------------------- display in a kernel


@pytest.fixture
def kernel_display(tmp_path, monkeypatch):
    """An IPython shell with labkit's chart display, a fresh validation memo and a counter
    of Altair's validations of whole specs (not of the small objects Altair checks as it
    builds them)."""
    from IPython.core.interactiveshell import InteractiveShell

    from labkit.charts import _display
    from altair.utils import schemapi

    monkeypatch.setenv("LABKIT_CHART_CACHE", str(tmp_path / "charts"))
    monkeypatch.setattr(_display, "_KNOWN_VALID", set())
    validations = []
    real = schemapi.validate_jsonschema
    monkeypatch.setattr(schemapi, "validate_jsonschema",
                        lambda spec, *a, **k: (validations.append(1) if "mark" in spec else None)
                        or real(spec, *a, **k))
    shell = InteractiveShell.instance()
    charts.enable()
    yield shell, validations
    shell.display_formatter.mimebundle_formatter.pop(alt.TopLevelMixin, None)


def _small_chart(y_title="y"):
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, np.nan, 0.75]})
    return alt.Chart(frame).mark_line().encode(x="x:Q", y=alt.Y("y:Q", title=y_title))


def test_a_spec_is_validated_at_its_first_display_only(kernel_display):
    """Same spec again (a re-executed chapter, a new kernel): no validation; another spec: one."""
    from labkit.charts import _display

    shell, validations = kernel_display
    first, same, same_later, other = (_small_chart(), _small_chart(), _small_chart(),
                                      _small_chart(y_title="autre"))
    data, _ = shell.display_formatter.format(first)
    assert validations and {"text/html", "image/png"} <= set(data)
    validations.clear()
    shell.display_formatter.format(same)
    assert validations == []
    _display._KNOWN_VALID.clear()  # a new kernel: the marker on disk is enough
    again, _ = shell.display_formatter.format(same_later)
    assert validations == [] and again["image/png"] == data["image/png"]
    shell.display_formatter.format(other)
    assert validations


def test_an_invalid_chart_shows_altairs_error_and_is_not_remembered(kernel_display):
    from labkit.charts import _display

    shell, _ = kernel_display
    bad = _small_chart()
    bad.width = "wide"  # must be a number or "container"; set after building, as Altair allows
    data, _ = shell.display_formatter.format(bad)
    assert data.keys() <= {"text/plain"}  # no chart: Altair printed its error instead
    key = _display.validation_key(bad.to_dict(validate=False, context={"pre_transform": False}))
    assert key not in _display._KNOWN_VALID
    with pytest.raises(Exception, match="width"):
        _display.displayed_spec(bad)
