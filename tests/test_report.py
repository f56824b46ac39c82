"""Tests of labkit.fmt (French numbers) and labkit.report (verdicts, parameter tables, limits)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit import fmt, report
from labkit.report import About, Above, Below, Best, Greater, Less, Monotone

NNBSP, NBSP, MINUS = "\u202f", "\u00a0", "\u2212"


@pytest.fixture(autouse=True)
def fresh_session():
    report.reset_session()
    yield
    report.reset_session()


# --------------------------------------------------------------------------- fmt


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: fmt.pct(0.975), "97,5\u202f%"),
        (lambda: fmt.pct(1), "100,0\u202f%"),
        (lambda: fmt.pct(0.98412, 2), "98,41\u202f%"),
        (lambda: fmt.num(0.53), "0,53"),
        (lambda: fmt.num(235146), "235\u202f146"),
        (lambda: fmt.num(np.int64(1290)), "1\u202f290"),
        (lambda: fmt.num(1234567.891, 1), "1\u202f234\u202f567,9"),
        (lambda: fmt.num(-0.5), "\u22120,50"),
        (lambda: fmt.num(-0.001), "0,00"),
        (lambda: fmt.signed(0.53), "+0,53"),
        (lambda: fmt.signed(-0.53), "\u22120,53"),
        (lambda: fmt.signed(0.0), "0,00"),
        (lambda: fmt.pp(0.012), "+1,2\u00a0pt"),
        (lambda: fmt.pp(-0.004), "\u22120,4\u00a0pt"),
        (lambda: fmt.pp(0.003, sign=False), "0,3\u00a0pt"),
        (lambda: fmt.seconds(0.31), "0,31\u00a0s"),
        (lambda: fmt.seconds(4.24), "4,2\u00a0s"),
        (lambda: fmt.seconds(42.4), "42\u00a0s"),
        (lambda: fmt.seconds(59.6), "1\u00a0min"),
        (lambda: fmt.seconds(200), "3\u00a0min 20\u00a0s"),
        (lambda: fmt.seconds(3725), "1\u00a0h 02\u00a0min"),
        (lambda: fmt.seconds(7200), "2\u00a0h"),
        (lambda: fmt.money(53000), "53\u202f000\u00a0$"),
        (lambda: fmt.money(53012.4), "53\u202f012\u00a0$"),
        (lambda: fmt.pm(0.53, 0.01), "0,53\u00a0±\u00a00,01"),
        (lambda: fmt.pm(0.5312, 0.0031), "0,531\u00a0±\u00a00,003"),
        (lambda: fmt.pm(0.975, 0.003, percent=True), "97,5\u00a0±\u00a00,3\u202f%"),
        (lambda: fmt.pm(0.53, math.nan), "0,53"),
        (lambda: fmt.pm(math.nan, 0.1), "—"),
        (lambda: fmt.pct(math.nan), "—"),
        (lambda: fmt.num(math.inf), "—"),
        (lambda: fmt.num(None), "—"),
        (lambda: fmt.num(pd.NA), "—"),
        (lambda: fmt.seconds(math.nan), "—"),
        (lambda: fmt.num(math.nan, missing=fmt.DIVERGED), "divergé"),
    ],
)
def test_french_formats(call, expected):
    assert call() == expected


@pytest.mark.parametrize("bad", ["0.5", True, [1]])
def test_fmt_refuses_what_is_not_a_number(bad):
    with pytest.raises(TypeError, match=re.escape(repr(bad))):
        fmt.num(bad)


def test_fmt_refuses_bad_digits_and_negative_durations():
    with pytest.raises(ValueError, match="-1"):
        fmt.num(1.0, -1)
    with pytest.raises(ValueError, match="-3"):
        fmt.seconds(-3)


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), st.integers(0, 4))
def test_num_reads_back_as_the_rounded_number(x, digits):
    text = fmt.num(x, digits)
    assert " " not in text  # only no-break spaces: a number never breaks across lines
    back = float(text.replace(NNBSP, "").replace(MINUS, "-").replace(",", "."))
    assert back == pytest.approx(round(x, digits), abs=10 ** -digits)


# --------------------------------------------------------------------------- results


def results(**configs) -> pd.DataFrame:
    """Final results, one row per config × seed: ``results(he=[.97, .971], glorot=[...])``."""
    rows = [
        {"init": name, "seed": seed, "accuracy": value, "loss": 1 - value}
        for name, values in configs.items()
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def verdict_of(claim, table) -> report.Verdict:
    expect = report.Expectations(chapter="T")
    expect.add("x", "Une attente.", claim)
    expect.verdicts(table)
    return expect.verdict("x")


CLEAR = results(a=[0.970, 0.972, 0.971], b=[0.950, 0.951, 0.949])
NOISY = results(a=[0.970, 0.950, 0.960], b=[0.962, 0.955, 0.958])
A, B = {"init": "a"}, {"init": "b"}


@pytest.mark.parametrize("claim, table, phrase", [
    (Greater(a=A, b=B, metric="accuracy"), CLEAR, "yes"),
    (Greater(a=B, b=A, metric="accuracy"), CLEAR, "no"),
    (Greater(a=A, b=B, metric="accuracy"), NOISY, "maybe"),
])
def test_verdict_says_the_phrase_of_its_status(claim, table, phrase):
    verdict = verdict_of(claim, table)
    assert verdict.says(confirmed="yes", refuted="no", inconclusive="maybe") == phrase
    with pytest.raises(TypeError):
        verdict.says(confirmed="yes", refuted="no")  # every outcome needs its phrase


@pytest.mark.parametrize(
    "claim, table, status",
    [
        (Greater(a=A, b=B, metric="accuracy"), CLEAR, "confirmed"),
        (Greater(a=B, b=A, metric="accuracy"), CLEAR, "refuted"),
        (Greater(a=A, b=B, metric="accuracy"), NOISY, "inconclusive"),
        (Less(a=A, b=B, metric="loss"), CLEAR, "confirmed"),
        (Less(a=B, b=A, metric="loss"), CLEAR, "refuted"),
        (Less(a=A, b=B, metric="loss"), NOISY, "inconclusive"),
        (Above(a=A, threshold=0.965, metric="accuracy"), CLEAR, "confirmed"),
        (Above(a=B, threshold=0.965, metric="accuracy"), CLEAR, "refuted"),
        (Above(a=A, threshold=0.965, metric="accuracy"), NOISY, "inconclusive"),
        (Below(a=B, threshold=0.965, metric="accuracy"), CLEAR, "confirmed"),
        (Below(a=A, threshold=0.965, metric="accuracy"), CLEAR, "refuted"),
        (Below(a=A, threshold=0.955, metric="accuracy"), NOISY, "inconclusive"),
        (About(a=A, b=B, metric="accuracy"), NOISY, "confirmed"),
        (About(a=A, b=B, metric="accuracy"), CLEAR, "refuted"),
        (Best("a", among="init", metric="accuracy"), CLEAR, "confirmed"),
        (Best("b", among="init", metric="accuracy"), CLEAR, "refuted"),
        (Best("a", among="init", metric="accuracy"), NOISY, "inconclusive"),
        (Best("a", among="init", metric="loss"), CLEAR, "confirmed"),  # lower loss is better
        (Monotone(along="init", metric="accuracy", increasing=False), CLEAR, "confirmed"),
        (Monotone(along="init", metric="accuracy"), CLEAR, "refuted"),
        (Monotone(along="init", metric="accuracy"), NOISY, "inconclusive"),
    ],
)
def test_each_claim_is_confirmed_refuted_or_inconclusive(claim, table, status):
    assert verdict_of(claim, table).status == status


def test_about_with_no_measurable_spread_is_inconclusive():
    one_seed = results(a=[0.97], b=[0.9701])
    assert verdict_of(About(a=A, b=B, metric="accuracy"), one_seed).status == "inconclusive"
    assert verdict_of(About(a=A, b=B, metric="accuracy", margin=0.01), one_seed).confirmed


def test_one_seed_each_needs_a_declared_margin():
    one_seed = results(a=[0.97], b=[0.90])
    assert verdict_of(Greater(a=A, b=B, metric="accuracy"), one_seed).status == "inconclusive"
    verdict = verdict_of(Greater(a=A, b=B, metric="accuracy", margin=0.01), one_seed)
    assert verdict.status == "confirmed"
    assert verdict.threshold == 0.01
    assert "(marge déclarée 1,0\u00a0pt)" in verdict.evidence


def test_a_single_seed_side_borrows_the_other_spread():
    table = results(a=[0.970], b=[0.950, 0.952])
    verdict = verdict_of(Greater(a=A, b=B, metric="accuracy"), table)
    s = np.std([0.950, 0.952], ddof=1)
    assert verdict.threshold == pytest.approx(math.sqrt(2) * s)
    assert verdict.confirmed


def test_the_margin_is_a_floor_on_the_spread():
    verdict = verdict_of(Greater(a=A, b=B, metric="accuracy", margin=0.05), CLEAR)
    assert verdict.status == "inconclusive"  # 2 pt apart, but 5 pt were declared the noise floor


def test_a_diverged_configuration_counts_as_the_worst():
    table = results(a=[0.97, 0.971], b=[0.96, math.nan])
    assert verdict_of(Greater(a=A, b=B, metric="accuracy"), table).confirmed
    assert verdict_of(Less(a=A, b=B, metric="loss"), table).confirmed
    assert verdict_of(Above(a=B, threshold=0.5, metric="accuracy"), table).status == "refuted"
    assert verdict_of(Best("a", among="init", metric="accuracy"), table).confirmed
    assert "divergé (1/2 graines)" in verdict_of(Greater(a=A, b=B, metric="accuracy"), table).evidence
    both = results(a=[math.nan, 0.9], b=[math.nan, math.nan])
    assert verdict_of(Greater(a=A, b=B, metric="accuracy"), both).status == "inconclusive"


def test_a_selection_must_name_exactly_one_configuration():
    table = results(a=[0.97, 0.971], b=[0.95, 0.951]).assign(lr=[0.1, 0.1, 0.1, 0.1])
    table = pd.concat([table, table.assign(lr=0.01)], ignore_index=True)
    with pytest.raises(ValueError, match=r"several configurations.*'lr'"):
        verdict_of(Greater(a=A, b=B, metric="accuracy"), table)
    with pytest.raises(ValueError, match=r"matches no result.*'init'"):
        verdict_of(Greater(a={"init": "c", "lr": 0.1}, b=B, metric="accuracy"), table)
    with pytest.raises(KeyError, match="'act'"):
        verdict_of(Greater(a={"act": "relu"}, b=B, metric="accuracy"), table)
    assert verdict_of(
        Greater(a={**A, "lr": 0.1}, b={**B, "lr": 0.1}, metric="accuracy"), table
    ).confirmed


def test_claims_check_their_arguments():
    with pytest.raises(TypeError, match="'he_normal'"):
        Greater(a="he_normal", b=B, metric="accuracy")
    with pytest.raises(ValueError, match="-0.1"):
        Greater(a=A, b=B, metric="accuracy", margin=-0.1)
    with pytest.raises(ValueError, match="nan"):
        Above(a=A, threshold=math.nan, metric="accuracy")
    with pytest.raises(ValueError, match="'best'"):
        Best("a", among="init", metric="accuracy", goal="best")


# --------------------------------------------------------------------------- expectations


def declared() -> report.Expectations:
    expect = report.Expectations(chapter="B")
    expect.add("a-beats-b", "L'initialisation a fait mieux que b.",
               Greater(a=A, b=B, metric="accuracy"))
    expect.add("b-above", "b dépasse 96\u202f% | sur la validation.",
               Above(a=B, threshold=0.96, metric="accuracy"))
    expect.add("same-loss", "Les deux pertes se valent.", About(a=A, b=B, metric="loss"))
    return expect


def test_callout_lists_the_sentences_in_a_quarto_callout():
    text = declared().callout().data
    assert text.startswith('::: {.callout-note title="Ce que l\'on attend"}\n')
    assert text.rstrip().endswith(":::")
    assert "1. L'initialisation a fait mieux que b.\n2. b dépasse 96\u202f%" in text
    assert "3. Les deux pertes se valent." in text


def test_verdict_table_renders_statuses_evidence_and_the_rule():
    expect = declared()
    table = expect.verdicts(CLEAR)
    text = table.data
    lines = text.splitlines()
    assert lines[0] == "| Attente | Verdict | Mesure |"
    assert "✅ confirmée" in lines[2] and "❌ réfutée" in lines[3] and "❌ réfutée" in lines[4]
    # a pipe cannot break the table; no-break spaces survive
    assert "b dépasse 96\u202f% \\| sur la validation." in lines[3]
    assert "init = a : 97,1\u00a0±\u00a00,1\u202f%" in lines[2]
    assert "écart +2,1\u00a0pt (dispersion 0,1\u00a0pt)" in lines[2]
    assert report.RULE in text and report.SPREAD in text
    assert re.search(r"^: Verdicts des attentes du chapitre B\.", text, re.M)
    # the object the prose quotes agrees with the table
    verdict = expect.verdict("a-beats-b")
    assert verdict.status == "confirmed" and str(verdict) == "confirmée"
    assert verdict.label in lines[2] and verdict.evidence in lines[2]
    assert verdict.sides[0].mean == pytest.approx(0.971)
    assert table.verdicts["b-above"].status == "refuted"


def test_inconclusive_is_labelled_in_the_table():
    expect = report.Expectations(chapter="C")
    expect.add("noise", "a fait mieux.", Greater(a=A, b=B, metric="accuracy"))
    assert "➖ non concluante" in expect.verdicts(NOISY, caption=False).data
    assert "\n: " not in expect.verdicts(NOISY, caption=False).data


def test_results_can_be_given_per_expectation():
    expect = declared()
    expect.verdicts({"a-beats-b": NOISY, "b-above": CLEAR, "same-loss": NOISY})
    assert expect.verdict("a-beats-b").status == "inconclusive"
    with pytest.raises(KeyError, match="'same-loss'"):
        expect.verdicts({"a-beats-b": NOISY, "b-above": CLEAR})


def test_verdict_before_verdicts_and_unknown_ids_are_errors():
    expect = declared()
    with pytest.raises(RuntimeError, match=r"expect\.verdicts\(results\)"):
        expect.verdict("a-beats-b")
    expect.verdicts(CLEAR)
    with pytest.raises(KeyError, match="'nope'"):
        expect.verdict("nope")


def test_declaration_is_checked():
    expect = declared()
    with pytest.raises(ValueError, match="already declared"):
        expect.add("a-beats-b", "Encore.", Greater(a=A, b=B, metric="accuracy"))
    with pytest.raises(ValueError, match="'Bad Id'"):
        expect.add("Bad Id", "Texte.", Greater(a=A, b=B, metric="accuracy"))
    with pytest.raises(TypeError, match="claim"):
        expect.add("not-a-claim", "Texte.", ("a", ">", "b"))
    with pytest.raises(ValueError, match="no expectation"):
        report.Expectations(chapter="D").callout()


def test_an_expectation_after_results_is_refused():
    expect = report.Expectations(chapter="A")
    expect.add("early", "Déclarée avant.", Greater(a=A, b=B, metric="accuracy"))
    report.mark_results_exist()
    assert report.results_exist()
    with pytest.raises(report.ExpectationTooLate,
                       match="expectation 'late' declared after results were computed; "
                             "declare expectations before the first sweep"):
        expect.add("late", "Déclarée après.", Greater(a=A, b=B, metric="accuracy"))
    # judging the early ones is of course still allowed
    assert expect.verdicts(CLEAR).verdicts["early"].confirmed
    report.reset_session()
    expect.add("late", "Nouvelle session.", Greater(a=A, b=B, metric="accuracy"))


def test_in_a_kernel_the_mark_lives_in_the_user_namespace(monkeypatch):
    namespace: dict = {}
    monkeypatch.setattr(report, "_user_namespace", lambda: namespace)
    report.mark_results_exist()
    assert report.results_exist() and namespace
    namespace.clear()  # what Quarto's %reset does at the start of each execution
    assert not report.results_exist()


# --------------------------------------------------------------------------- final results


def history(diverge_last=True, with_diverged_column=True) -> pd.DataFrame:
    """A sweep-like tidy frame: lr × 2 seeds × 3 epochs; lr=1.0, seed 1 diverges at epoch 3."""
    rows = []
    for lr in (0.1, 1.0):
        for seed in (0, 1):
            diverged = lr == 1.0 and seed == 1 and diverge_last
            for epoch in (1, 2, 3):
                blown = diverged and epoch == 3
                acc = 0.90 + 0.02 * epoch + 0.001 * seed - (0.05 if lr == 1.0 else 0)
                for split, shift in (("train", 0.01), ("validation", 0.0)):
                    rows.append((lr, seed, f"k{lr}-{seed}", diverged, epoch, split,
                                 "accuracy", math.nan if blown else acc + shift))
                    rows.append((lr, seed, f"k{lr}-{seed}", diverged, epoch, split,
                                 "loss", math.nan if blown else 1 - acc))
    columns = ["lr", "seed", "key", "diverged", "epoch", "split", "metric", "value"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame if with_diverged_column else frame.drop(columns="diverged")


def test_final_results_has_one_row_per_configuration_and_seed():
    final = report.final_results(history(), metrics=("accuracy", "loss"))
    assert list(final.columns) == ["lr", "seed", "key", "diverged", "accuracy", "loss"]
    assert len(final) == 4
    good = final[(final.lr == 0.1) & (final.seed == 1)].iloc[0]
    assert good.accuracy == pytest.approx(0.961) and not good.diverged
    blown = final[(final.lr == 1.0) & (final.seed == 1)].iloc[0]
    assert blown.diverged and math.isnan(blown.accuracy)  # kept, not dropped


def test_final_results_spots_divergence_without_the_flag():
    final = report.final_results(history(with_diverged_column=False))
    assert final["diverged"].tolist() == [False, False, False, True]


def test_final_results_for_several_splits():
    final = report.final_results(history(diverge_last=False), split=("train", "validation"))
    assert {"accuracy_train", "accuracy_validation"} <= set(final.columns)
    gap = final.accuracy_train - final.accuracy_validation
    assert gap.to_numpy() == pytest.approx(0.01)


def test_final_results_checks_its_inputs():
    with pytest.raises(ValueError, match=r"\['rmse'\].*accuracy"):
        report.final_results(history(), metrics="rmse")
    with pytest.raises(KeyError, match="'value'"):
        report.final_results(history().drop(columns="value"))


def test_a_rate_that_diverges_on_one_seed_is_not_the_best():
    final = report.final_results(history())
    # lr=1.0 seed 0 alone would look fine; its diverged seed makes it the worst
    assert verdict_of(Best(0.1, among="lr", metric="accuracy"), final).confirmed


# --------------------------------------------------------------------------- limits facts


def test_limits_facts_state_seeds_profile_budget_spread_and_divergence():
    facts = report.limits_facts(history(), metric="accuracy", train_size=1000)
    text = facts.data
    assert "- Profil : complet" in text
    assert "- Graines par configuration : 2 (2 configurations, 4 entraînements)." in text
    assert "- Exemples d'entraînement : 1\u202f000." in text
    assert "- Époques : 3." in text
    assert "Dispersion entre graines (exactitude de validation, écart type) : médiane 0,1\u00a0pt" \
        in text
    assert "- Entraînements divergés : 1 sur 4 (lr = 1)." in text
    assert facts.facts["spread_max"] == pytest.approx(np.std([0.961, 0.960], ddof=1))
    assert facts.facts["diverged"] == 1


def test_limits_facts_in_the_quick_profile_with_one_seed(monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "quick")
    frame = history(diverge_last=False)
    text = report.limits_facts(frame[frame.seed == 0], metric="loss", epochs=20).data
    assert "Profil : rapide" in text and "pas les résultats du livre" in text
    assert "Graines par configuration : 1" in text
    single = frame[(frame.seed == 0) & (frame.lr == frame.lr.iloc[0])]
    assert "(1 configuration, 1 entraînement)" in report.limits_facts(single, metric="loss").data
    assert "non mesurable (une seule graine)" in text
    assert "- Époques : 20." in text
    assert "Exemples d'entraînement : non indiqué." in text
    assert "Entraînements divergés : aucun sur 2." in text


# --------------------------------------------------------------------------- parameter tables


# Random initialisers compile one XLA program per weight shape (seconds each on a busy
# machine); parameter counts do not depend on the values, so most models here start at zero.
ZEROS = {"kernel_initializer": "zeros"}


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def default_mlp(keras):
    """The book's 784-256-128-10 network, as labkit builds it (zero start: see ZEROS)."""
    from labkit.models import mlp

    return mlp(**ZEROS)


def test_param_table_of_the_default_mlp(default_mlp):
    table = report.param_table(default_mlp)
    text = table.data
    assert table.total == 235_146
    assert "| Couche | Formule | Paramètres (à la main) | Paramètres (Keras) |" in text
    assert "| `hidden_1` | 784 × 256 + 256 | 200\u202f960 | 200\u202f960 |" in text
    assert "| **Total** | | **235\u202f146** | **235\u202f146** |" in text
    assert "Total à la main = total Keras = 235\u202f146." in text
    assert "```text\nModel: \"mlp\"" in text and "Total params: 235,146" in table.summary
    assert "\x1b" not in text and "[bold]" not in text


@pytest.mark.parametrize(
    "kwargs, total",
    [
        ({"hidden": ()}, 784 * 10 + 10),
        ({"hidden": (16,) * 8}, 784 * 16 + 16 + 7 * (16 * 16 + 16) + 16 * 10 + 10),
        ({"input_dim": 8, "hidden": (4,), "output": 1,
          "normalization": ([0.0] * 8, [1.0] * 8)}, 8 * 4 + 4 + 4 + 1),
    ],
)
def test_param_table_of_mlp_variants(keras, kwargs, total):
    from labkit.models import mlp

    table = report.param_table(mlp(**kwargs, **ZEROS))
    assert table.total == total
    assert f"Total à la main = total Keras = {fmt.num(total)}." in table.data
    assert "Total params" in table.summary and "\x1b" not in table.summary
    assert all(row["by_hand"] == row["keras"] for row in table.rows)


def test_param_table_of_a_hand_written_sequential(keras):
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(300, activation="relu", **ZEROS),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(100, activation="relu", **ZEROS),
        keras.layers.Dense(10, activation="softmax", **ZEROS),
    ])
    table = report.param_table(model)
    assert table.total == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert [row["layer"] for row in table.rows] == [layer.name for layer in model.layers
                                                    if layer.weights]
    assert [row["formula"] for row in table.rows] == [
        "784 × 300 + 300", "300 × 100 + 100", "100 × 10 + 10"]


def test_param_table_with_an_adapted_normalization(keras):
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).normal(size=(64, 8)).astype("float32"))
    model = keras.Sequential([keras.Input(shape=(8,)), norm,
                              keras.layers.Dense(4, **ZEROS), keras.layers.Dense(1, **ZEROS)])
    table = report.param_table(model)
    assert table.rows[0]["by_hand"] == table.rows[0]["keras"] == 2 * 8 + 1
    assert "non entraînables" in table.rows[0]["formula"]
    assert table.total == 17 + 36 + 5
    assert "Non-trainable params: 17" in table.summary


def test_a_count_mismatch_is_an_error(default_mlp, monkeypatch):
    from labkit import models

    real = models.layer_counts_by_hand

    def off_by_one(*args, **kwargs):
        rows = real(*args, **kwargs)
        rows[0] = models.LayerCount(rows[0].layer, rows[0].formula, rows[0].trainable + 1)
        return rows

    monkeypatch.setattr(models, "layer_counts_by_hand", off_by_one)
    with pytest.raises(report.ParameterCountMismatch,
                       match=r"layer 'hidden_1': 200961 parameters by hand .* 200960 for Keras"):
        report.param_table(default_mlp)


def test_an_unbuilt_model_is_refused(keras):
    model = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="not built"):
        report.param_table(model)
