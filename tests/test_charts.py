"""labkit.charts: charts are data (specs checked through ``to_dict``), drawn to check what a
reader sees: width within the PDF column, fonts of 11 px or more, tick labels that are the
grid values in French, diverged runs in view, the spread in heatmap cells.

Frames come from one tiny real sweep (300 images, 2 epochs, 2 seeds, 3 learning rates, every
probe) and from small synthetic frames for what a tiny sweep cannot show (a divergence, a
plateau, eight levels).
"""

from __future__ import annotations

import base64
import io
import json
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert as vlc
from PIL import Image

from labkit import charts
from labkit.charts._parts import WEBSITE_ONLY, number_labels

LRS = [0.01, 0.1, 1.0]
EIGHT = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


@pytest.fixture(scope="module", autouse=True)
def enabled():
    charts.enable()


@pytest.fixture(scope="module")
def sweep():
    import keras

    import labkit

    def experiment(lr):
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return labkit.Run(model, data="mnist", epochs=2, batch_size=32, train_size=300, evaluate_test=True,
                          probes=("weight_norm", "weight_hist", "signal"))

    # Trained in this process, one at a time: starting worker processes would cost more here.
    with ThreadPoolExecutor(1) as executor:
        return labkit.sweep(experiment, {"lr": LRS}, seeds=2, executor=executor, label="charts test")


@pytest.fixture(scope="module")
def history(sweep):
    """The sweep's history with the run lr = 1, seed 1 made to diverge after its first epoch."""
    frame = sweep.history
    lost = (frame["lr"] == 1.0) & (frame["seed"] == 1)
    frame.loc[lost, "diverged"] = True
    frame.loc[lost & ((frame["epoch"] > 1) | (frame["split"] == "test")), "value"] = np.nan
    return frame


def plateau(levels=EIGHT, seeds=3, epochs=12):
    """Accuracy curves that climb to a plateau near 97 %; lr = 3 diverges for two seeds of three."""
    rng = np.random.default_rng(0)
    rows = []
    for lr in levels:
        for seed in range(seeds):
            lost = lr == 3.0 and seed < 2
            for epoch in range(1, epochs + 1):
                value = 0.97 - 0.5 * np.exp(-min(lr, 0.5) * 6 * epoch) + rng.normal(0, 0.002)
                rows.append((lr, seed, lost, epoch, np.nan if lost and epoch > 3 else value))
    return pd.DataFrame(rows, columns=["lr", "seed", "diverged", "epoch", "value"])


def final_of(frame):
    last = frame[frame["epoch"] == frame["epoch"].max()]
    return last.assign(value=np.where(last["diverged"], np.nan, last["value"]))


def svg_of(chart) -> str:
    return vlc.vegalite_to_svg(chart.to_dict(), format_locale=charts.FRENCH)


def axis_labels(svg: str, axis: str) -> list[list[str]]:
    """Tick labels of every ``axis`` ("X" or "Y") in a drawn chart, one list per axis."""
    found = []
    for group in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}g"):
        if group.get("aria-label", "").startswith(f"{axis}-axis"):
            found.append([text.text for inner in group.iter("{http://www.w3.org/2000/svg}g")
                          if "role-axis-label" in inner.get("class", "") for text in inner])
    return found


def dataset(chart) -> pd.DataFrame:
    spec = chart.to_dict()
    return pd.concat([pd.DataFrame(rows) for rows in spec["datasets"].values()], ignore_index=True)


def printed_texts(spec, key=None):
    """Every string of a spec that can reach the page, tooltips (HTML only) and data left out."""
    if isinstance(spec, dict):
        for name, value in spec.items():
            if name not in ("tooltip", "datasets", "data", "description"):
                yield from printed_texts(value, name)
    elif isinstance(spec, list):
        for value in spec:
            yield from printed_texts(value, key)
    elif isinstance(spec, str):
        yield spec


# -- every builder, drawn ------------------------------------------------------------------------
def gallery(history, sweep):
    """One chart per builder and option that changes the layout, as the chapters draw them."""
    accuracy = history[history["metric"] == "accuracy"]
    signal = sweep.probe("signal")
    hist = sweep.probe("weight_hist")
    final = sweep.final("accuracy", "loss")
    rng = np.random.default_rng(1)
    housing = pd.DataFrame({"actual": rng.uniform(0.2, 5, 6000)})
    housing["predicted"] = housing["actual"] + rng.normal(0, 0.5, len(housing))
    housing["model"] = np.repeat(["linéaire", "MLP", "boosting"], 2000)
    speed = {"glorot": 3, "he": 2, "random": 8}
    families = pd.DataFrame([(f, d, a, s, e, np.exp(-e / (speed[f] + 0.6 * (d == "uniform"))) + 0.01 * s)
                             for f in ("glorot", "he", "random") for d in ("normal", "uniform")
                             for a in ("relu", "tanh", "sigmoid") for s in range(2) for e in range(1, 6)],
                            columns=["family", "distribution", "activation", "seed", "epoch", "value"])
    return {
        "curves split": charts.curves(accuracy, color="lr", dash="split", title="Exactitude au fil des époques",
                                      y_title="Exactitude", color_title="Taux d'apprentissage", rule=1),
        "curves eight": charts.curves(plateau(), color="lr", percent=True, title="Exactitude, huit taux",
                                      y_title="Exactitude", color_title="Taux d'apprentissage"),
        "curves three panels": charts.curves(families, color="family", dash="distribution", facet="activation",
                                             log_y=True, title="Perte, réseau profond", y_title="Perte",
                                             color_title="Famille", dash_title="Loi", facet_title="Activation"),
        "curves layers": charts.curves(signal[(signal["stat"] == "std") & (signal["epoch"] == 0)], x="layer",
                                       color="lr", facet="quantity", log_y=True, x_title="Couche",
                                       title="Écart-type du signal à l'initialisation", y_title="Écart-type"),
        "by points": charts.by(final_of(plateau()), x="lr", y="value", percent=True,
                               title="Exactitude finale selon le taux", x_title="Taux d'apprentissage",
                               y_title="Exactitude (validation)"),
        "by log": charts.by(final, x="lr", y="loss", log_x=True, log_y=True, kind="line", title="Perte finale",
                            x_title="Taux d'apprentissage", y_title="Perte"),
        "by bars": charts.by(final.assign(params=[101_770, 101_770, 12_730, 12_730, 203_530, 203_530]), x="lr",
                             y="params", kind="bar", title="Paramètres", x_title="Taux", y_title="Paramètres"),
        "by categories": charts.by(final.assign(model=np.repeat(["3×128", "2×64", "boosting"], 2)), x="model",
                                   y="loss", connect=False, title="Perte par modèle", y_title="Perte"),
        "curves five panels": charts.curves(pd.concat([plateau(levels=[0.1]).assign(part=p) for p in "abcde"]),
                                            facet="part", percent=True, title="Cinq répartitions",
                                            y_title="Exactitude", facet_title="Répartition"),
        "curves norms": charts.curves(plateau(levels=[0.1]).assign(value=lambda f: 2.3 + 19 * (1 - f["epoch"] / 12)),
                                      log_y=True, title="Norme des poids", y_title="Norme"),
        "heatmap": charts.heatmap(final, x="lr", y="seed", value="accuracy", percent=True,
                                  title="Exactitude par taux et graine", x_title="Taux", y_title="Graine"),
        "heatmap gap": charts.heatmap(final, x="lr", y="seed", value="loss", better="lower",
                                      darker_label="écart plus petit", title="Écart", x_title="Taux"),
        "histograms own axes": charts.histograms(hist[hist["epoch"].isin([0, 2])], color="epoch",
                                                 facet_column="lr", shared_y=False,
                                                 title="Distribution des poids, un axe par panneau"),
        "histograms": charts.histograms(hist[hist["epoch"].isin([0, 2])], color="epoch",
                                        facet_row="layer_name", facet_column="lr",
                                        title="Distribution des poids par couche"),
        "scatter": charts.scatter(housing, x="actual", y="predicted", facet="model", diagonal=True,
                                  title="Prédiction contre valeur réelle", x_title="Réel (100 k$)",
                                  y_title="Prédit (100 k$)"),
        "residuals": charts.scatter(housing.assign(residual=housing["actual"] - housing["predicted"]),
                                    x="predicted", y="residual", trend=True, title="Résidus",
                                    x_title="Prédiction (100 k$)", y_title="Résidu (100 k$)"),
        "distributions": charts.distributions(housing.assign(wide=rng.lognormal(8, 1, len(housing)),
                                                             a=1.0 * rng.integers(0, 52, len(housing))),
                                              ["actual", "predicted", "wide", "a", "actual", "predicted",
                                               "wide", "a", "actual"], title="Neuf variables"),
    }


@pytest.fixture(scope="module")
def drawn(history, sweep):
    """Each chart of the gallery with its spec (validated by Altair), its PNG and its SVG."""
    out = {}
    for name, chart in gallery(history, sweep).items():
        out[name] = (chart, chart.to_dict(), charts.to_png(chart), svg_of(chart))
    return out


def test_every_chart_fits_the_pdf_column(drawn):
    for name, (_, _, png, _) in drawn.items():
        width, _ = Image.open(io.BytesIO(png)).size
        assert width <= charts.MAX_WIDTH * 2, f"{name} is {width / 2:.0f} px wide"


def test_width_of_measures_the_drawn_chart(drawn):
    chart, _, png, _ = drawn["curves three panels"]
    assert abs(charts.width_of(chart) - Image.open(io.BytesIO(png)).size[0] / 2) <= 1


def test_every_text_is_at_least_11_px(drawn):
    for name, (_, spec, _, svg) in drawn.items():
        sizes = [float(size) for size in re.findall(r'font-size="([\d.]+)px"', svg)]
        assert sizes and min(sizes) >= 11, f"{name}: a text of {min(sizes)} px"
        config = spec["config"]
        assert config["title"]["fontSize"] == 14 and config["title"]["subtitleFontSize"] == 12
        assert min(config[part][key] for part in ("axis", "legend", "header")
                   for key in ("labelFontSize", "titleFontSize")) >= 11


def test_every_chart_has_a_title_and_alt_text(drawn):
    for name, (_, spec, _, _) in drawn.items():
        assert spec["title"]["text"] and spec["description"], name


def test_no_website_only_word_reaches_the_print(drawn):
    for name, (_, spec, _, _) in drawn.items():
        for text in printed_texts(spec):
            assert not any(word in text.lower() for word in WEBSITE_ONLY), f"{name}: {text!r}"


def test_a_website_only_word_is_refused(history):
    with pytest.raises(ValueError, match="survol"):
        charts.curves(history[history["metric"] == "loss"], color="lr", dash="split", title="Perte",
                      subtitle="Détail au survol.")
    with pytest.raises(ValueError, match="molette"):
        charts.by(final_of(plateau()), x="lr", y="value", title="t", y_title="Zoom à la molette")


def test_renderer_gives_html_and_png_but_no_svg(drawn):
    chart = drawn["by points"][0]
    bundle, metadata = chart._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png"}
    png = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert metadata["image/png"]["width"] == png.size[0] // 2
    assert "vega-embed" in bundle["text/html"] and '"decimal": ","' in bundle["text/html"]
    charts.enable()  # idempotent
    assert alt.renderers.active == "labkit" and alt.theme.active == "labkit"


def test_numbers_are_french_in_the_drawing(drawn):
    _, _, _, svg = drawn["by points"]
    (y_labels,) = axis_labels(svg, "Y")
    assert all(label.endswith("\u202f%") for label in y_labels)
    _, _, _, svg = drawn["by bars"]
    assert "200\u202f000" in axis_labels(svg, "Y")[0]


# -- ticks are the grid values -------------------------------------------------------------------
def test_categorical_ticks_are_the_grid_values(drawn):
    _, _, _, svg = drawn["by points"]
    assert axis_labels(svg, "X") == [["0,001", "0,003", "0,01", "0,03", "0,1", "0,3", "1", "3"]]
    quick = pd.DataFrame({"lr": [1.0, 2.0, 3.0], "seed": 0, "value": [0.5, 0.6, 0.7]})
    svg = svg_of(charts.by(quick, x="lr", y="value", title="Profil rapide"))
    assert axis_labels(svg, "X") == [["1", "2", "3"]]  # never "1, 2, 2, 3, 3"


def test_log_axes_tick_at_the_grid_values_in_one_format(drawn):
    _, _, _, svg = drawn["by log"]
    assert axis_labels(svg, "X") == [["0,01", "0,1", "1"]]
    (y_labels,) = axis_labels(svg, "Y")
    assert len(set(y_labels)) == len(y_labels) >= 2


def test_few_epochs_or_layers_tick_at_each_value(drawn):
    assert axis_labels(drawn["curves split"][3], "X") == [["1", "2"]]
    assert axis_labels(drawn["curves layers"][3], "X") == [["1", "2"]] * 3


@pytest.mark.parametrize("values, labels", [
    ([0.001, 0.003, 0.01, 0.3, 1, 3], ["0,001", "0,003", "0,01", "0,3", "1", "3"]),
    ([0, 1e-5, 1e-4, 3e-4, 1e-2], ["0", "10⁻⁵", "10⁻⁴", "3·10⁻⁴", "10⁻²"]),
    ([1e-7, 1e-6, 0.01], ["10⁻⁷", "10⁻⁶", "10⁻²"]),  # never "0,000001" beside "1e-7"
    ([2.5e-4, -1e-3, 1200], ["2,5·10⁻⁴", "\u221210⁻³", "1,2·10³"]),
])
def test_number_labels_use_one_format_per_axis(values, labels):
    assert number_labels(values) == labels


# -- seeds, divergence, colours ------------------------------------------------------------------
def test_diverged_runs_are_counted_and_marked_in_curves(drawn):
    chart, spec, _, _ = drawn["curves split"]
    rows = dataset(chart)
    assert "1 (divergé : 1/2)" in set(rows["color"])
    crosses = rows[rows["kind"] == "cross"]
    assert len(crosses) == 2 and set(crosses["x"]) == {1}  # train and validation, at the last finite epoch
    assert "croix" in " ".join(spec["title"]["subtitle"])
    one_seed = rows[(rows["kind"] == "curve") & rows["color"].str.startswith("1 ")]
    assert (one_seed["n"] == 1).all()  # the line is the seed that did not diverge


def test_diverged_runs_are_crosses_at_the_bottom_in_by(drawn):
    chart, spec, _, _ = drawn["by points"]
    rows = dataset(chart)
    assert len(rows[rows["kind"] == "diverged"]) == 2
    assert "runs divergés" in " ".join(spec["title"]["subtitle"]) and "3 → 2/3" in " ".join(spec["title"]["subtitle"])


def test_test_scores_are_diamonds_not_a_line(drawn):
    rows = dataset(drawn["curves split"][0])
    assert set(rows.loc[rows["kind"] == "test", "x"]) == {2}
    assert "test" not in set(rows.loc[rows["kind"] == "curve", "dash"])


def test_eight_levels_get_eight_distinct_okabe_ito_colours(drawn):
    spec = drawn["curves eight"][1]
    scales = [layer["encoding"]["color"]["scale"] for layer in spec["layer"] if "color" in layer["encoding"]]
    assert scales[0]["range"] == charts.OKABE_ITO and len(set(scales[0]["range"])) == 8
    with pytest.raises(ValueError, match="cannot be told apart"):
        charts.curves(plateau(levels=[0.1 * i for i in range(1, 10)]), color="lr", title="Neuf taux")


def test_a_plateau_is_zoomed_on_not_flattened(drawn):
    plateau_only = final_of(plateau(levels=[0.3, 1.0]))
    svg = svg_of(charts.by(plateau_only, x="lr", y="value", percent=True, title="Plateau"))
    (labels,) = axis_labels(svg, "Y")
    assert "0\u202f%" not in labels and "100\u202f%" not in labels


def test_dash_tells_the_distribution_while_colour_tells_the_family(drawn):
    spec = drawn["curves three panels"][1]
    line = next(layer for layer in spec["spec"]["layer"] if layer["mark"]["type"] == "line")
    assert line["encoding"]["strokeDash"]["scale"]["domain"] == ["normal", "uniform"]
    assert len({json.dumps(d) for d in line["encoding"]["strokeDash"]["scale"]["range"]}) == 2
    assert line["encoding"]["color"]["scale"]["domain"] == ["glorot", "he", "random"]


def test_heatmap_cells_show_the_spread_over_seeds():
    frame = pd.DataFrame({"init": "random_uniform", "activation": "sigmoid", "seed": [0, 1, 2],
                          "accuracy": [0.697, 0.911, 0.893]})
    frame = pd.concat([frame.assign(diverged=False),
                       frame.assign(init="he_normal", accuracy=[0.97, 0.971, 0.972], diverged=False),
                       frame.assign(init="glorot", accuracy=[0.95, 0.96, np.nan], diverged=[False, False, True]),
                       frame.assign(init="zeros", accuracy=np.nan, diverged=True)])
    chart = charts.heatmap(frame, x="activation", y="init", value="accuracy", percent=True, title="Exactitude")
    texts = dict(zip(dataset(chart)["y"], dataset(chart)["text"]))
    assert texts["random_uniform"] == "83,4\u202f%\n±\u00a011,9"
    assert texts["he_normal"] == "97,1\u202f%\n±\u00a00,1"
    assert texts["glorot"] == "95,5\u202f%\n±\u00a00,7\ndiv. 1/3" and texts["zeros"] == "divergé"
    assert charts.width_of(chart) <= charts.MAX_WIDTH


def test_heatmaps_share_one_colour_meaning():
    frame = pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"], "seed": 0, "v": [0.1, 0.2, 0.3, 0.4]})
    higher = charts.heatmap(frame, x="a", y="b", value="v", title="Exactitude").to_dict()
    lower = charts.heatmap(frame, x="a", y="b", value="v", better="lower", title="Perte").to_dict()
    scale = [layer["encoding"]["color"]["scale"] for spec in (higher, lower) for layer in spec["layer"]
             if "color" in layer["encoding"] and layer["mark"]["type"] == "rect"]
    assert scale[0]["scheme"] == scale[1]["scheme"] and scale[0]["reverse"] != scale[1]["reverse"]


def test_histograms_are_densities_averaged_over_seeds(drawn):
    rows = dataset(drawn["histograms"][0])
    for _, one in rows.groupby(["color", "row", "column"]):
        one = one.sort_values("step")
        area = (np.diff(one["x"].to_numpy()) * one["density"].to_numpy()[:-1]).sum()
        assert area == pytest.approx(1, rel=1e-6)


def test_scatter_samples_with_a_fixed_seed_and_says_so(drawn):
    spec = drawn["residuals"][1]
    rows = dataset(drawn["residuals"][0])
    assert (rows["kind"] == "point").sum() == 4000 and (rows["kind"] == "trend").sum() == 20
    assert "Échantillon de 4\u202f000 points sur 6\u202f000" in " ".join(spec["title"]["subtitle"])


def test_unordered_categories_are_not_joined_by_a_line(drawn):
    marks = [layer["mark"]["type"] for layer in drawn["by categories"][1]["layer"]]
    assert "line" not in marks and "tick" in marks
    assert "tiret : moyenne des graines" in " ".join(drawn["by categories"][1]["title"]["subtitle"])
    assert "line" in [layer["mark"]["type"] for layer in drawn["by points"][1]["layer"]]


def test_a_wrapped_facet_draws_no_axis_under_the_empty_place(drawn):
    assert len(axis_labels(drawn["curves five panels"][3], "X")) == 5  # one per panel, none for the 6th place
    assert len(axis_labels(drawn["curves three panels"][3], "X")) == 3


def test_a_log_axis_labels_the_low_end_of_the_data(drawn):
    (labels,) = axis_labels(drawn["curves norms"][3], "Y")
    assert labels[0] == "2"  # the data start at 2,3: "2" is labelled, not left below the first tick


def test_a_heatmap_says_what_darker_means_where_lower_is_not_better(drawn):
    assert "plus foncé = écart plus petit" in " ".join(drawn["heatmap gap"][1]["title"]["subtitle"])
    assert "plus foncé = meilleur (plus haut)" in " ".join(drawn["heatmap"][1]["title"]["subtitle"])


def test_histogram_panels_can_have_their_own_density_axis(drawn):
    assert drawn["histograms own axes"][1]["resolve"]["scale"]["y"] == "independent"
    assert len(axis_labels(drawn["histograms own axes"][3], "Y")) == 3
    assert len(axis_labels(drawn["histograms"][3], "Y")) == 2  # one per row: shared along it


def test_distributions_wrap_into_rows_that_fit(drawn):
    assert drawn["distributions"][1]["columns"] == 4


# -- what a chapter writer can get wrong ---------------------------------------------------------
def test_a_hidden_varying_column_is_refused(history):
    with pytest.raises(ValueError, match="'split' takes several values"):
        charts.curves(history[history["metric"] == "accuracy"], color="lr", title="Exactitude")


@pytest.mark.parametrize("call, message", [
    (lambda f: charts.curves(f, color="lr", y="nope", title="t"), "no column 'nope'"),
    (lambda f: charts.curves(f.iloc[:0], title="t"), "empty"),
    (lambda f: charts.by(f, x="lr", y="value", kind="pie", title="t"), "kind must be one of"),
    (lambda f: charts.by(final_of(f).replace({"lr": {0.001: 0.0}}), x="lr", y="value", log_x=True, title="t"),
     "log_x=True needs positive"),
    (lambda f: charts.by(f, x="lr", y="value", title="t"), "'epoch' takes several values"),
    (lambda f: charts.curves(f.assign(value=-1.0), log_y=True, color="lr", title="t"), "some values are ≤ 0"),
    (lambda f: charts.heatmap(f, x="lr", y="epoch", value="value", better="more", title="t"), "better must be"),
    (lambda f: charts.curves(pd.concat([f] * 2), color="lr", title="t"), "repeats rows"),
    (lambda f: charts.curves(f, color="lr", title=""), "title= is required"),
])
def test_mistakes_get_a_message_that_names_them(call, message):
    with pytest.raises(ValueError, match=message):
        call(plateau())


def test_too_many_rows_are_refused():
    many = pd.DataFrame({"seed": 0, "epoch": range(6000), "value": 1.0})
    with pytest.raises(ValueError, match="more than 5000"):
        charts.curves(many, title="t")


# -- the PNG cache -------------------------------------------------------------------------------
def test_each_spec_is_drawn_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path))
    drawn = []
    draw = vlc.vegalite_to_png
    monkeypatch.setattr(vlc, "vegalite_to_png", lambda spec, **options: drawn.append(1) or draw(spec, **options))
    chart = charts.by(final_of(plateau()), x="lr", y="value", percent=True, title="Exactitude finale")
    first, second = charts.to_png(chart), charts.to_png(chart)
    assert first == second and len(drawn) == 1
    (cached,) = (tmp_path / "charts").iterdir()  # one file, no temporary left behind
    cached.write_bytes(first[:100])  # cut short (a full disk, a killed writer): drawn again
    assert charts.to_png(chart) == first and len(drawn) == 2
    charts.to_png(chart.properties(title="Autre titre"))
    assert len(drawn) == 3
