"""labkit.fr (French numbers) and labkit.report (verdicts, guarded sentences, tables)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from labkit import fr, report

NB, NN, MINUS = fr.NBSP, fr.NNBSP, fr.MINUS


# -- French numbers ------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (fr.num(235146), f"235{NN}146"),
    (fr.num(0.5312), "0,53"),
    (fr.num(-1.25, 1), f"{MINUS}1,2"),
    (fr.pct(0.975), f"97,5{NN}%"),
    (fr.pt(-0.012), f"{MINUS}1,2{NB}pt"),
    (fr.pt(0.012), f"+1,2{NB}pt"),
    (fr.pt(0.0001), f"0,0{NB}pt"),  # rounds to zero: no sign
    (fr.rate(0.001), "0,001"),
    (fr.seconds(200), f"3{NB}min 20{NB}s"),
    (fr.seconds(10_380), f"2{NB}h 53{NB}min"),
    (fr.rate(2.5e-5), f"2,5·10⁻⁵"),  # not rounded to one digit
    (fr.rate(-3e-5), f"{MINUS}3·10⁻⁵"),
    (fr.num(float("nan")), "—"),
])
def test_numbers_are_written_the_french_way(text, expected):
    assert text == expected


def test_pm_takes_its_decimals_from_the_spread():
    assert fr.pm([0.977, 0.978, 0.979], percent=True) == f"97,8{NB}±{NB}0,1{NN}%"
    assert fr.pm([52.1, 52.9, 51.8]) == f"52,3{NB}±{NB}0,6"
    assert fr.pm([1.0, float("nan")]) == "divergé (1/2 graines)"
    assert fr.pm_digits([0.977, 0.978, 0.979], percent=True) == 1


def test_text_displays_as_markdown_with_dollars_escaped():
    assert fr.Text(f"52{NB}k$")._repr_markdown_() == f"52{NB}k\\$"


# -- verdicts -------------------------------------------------------------------------------
HIGH, LOW = [0.980, 0.981, 0.979], [0.950, 0.951, 0.949]


@pytest.mark.parametrize("verdict, status", [
    (report.greater(HIGH, LOW, unit="%"), "confirmed"),
    (report.greater(LOW, HIGH, unit="%"), "refuted"),
    (report.greater(HIGH, [0.9795, 0.9805, 0.980], unit="%"), "inconclusive"),
    (report.less(LOW, HIGH, unit="%"), "confirmed"),
    (report.about(HIGH, [0.9795, 0.9805, 0.980], unit="%"), "confirmed"),
    (report.about(HIGH, LOW, unit="%"), "refuted"),
    (report.greater(HIGH, LOW, unit="%", margin=0.05), "inconclusive"),  # a declared margin is larger
    (report.above(HIGH, 0.975, unit="%"), "confirmed"),
    (report.below(HIGH, 0.975, unit="%"), "refuted"),
    (report.below([0.974, 0.976, 0.975], 0.975, unit="%"), "inconclusive"),
    (report.greater([math.nan, 0.99, 0.99], LOW, unit="%", lower_is_better=False), "refuted"),  # the worst
    (report.less([math.nan, 0.1, 0.1], [0.5, 0.51, 0.49], lower_is_better=True), "refuted"),  # a loss too
    (report.below([math.nan, 0.1, 0.1], 0.3, lower_is_better=True), "refuted"),
])
def test_each_claim_follows_the_rule(verdict, status):
    assert verdict.status == status


def test_a_diverged_run_needs_the_direction_of_the_measure():
    with pytest.raises(ValueError, match="lower_is_better=True"):
        report.less([math.nan, 0.1, 0.1], [0.5, 0.51, 0.49])


def test_a_gap_is_written_as_finely_as_the_two_values_it_separates():
    evidence = report.less([0.79, 0.80, 0.81], [0.884, 0.888, 0.892], unit="%").evidence
    assert evidence.startswith(f"80,0{NB}±{NB}1,0{NN}% contre 88,8{NB}±{NB}0,4{NN}%")
    assert f"écart {MINUS}8,8{NB}pt" in evidence  # not "−9 pt" beside 80 and 88,8
    evidence = report.less([0.9681, 0.9683, 0.9696], [0.9769, 0.9762, 0.9776], unit="%").evidence
    assert evidence.startswith(f"96,87{NB}±{NB}0,08{NN}% contre 97,69{NB}±{NB}0,07{NN}%")


def test_a_chapter_can_fix_the_decimals_of_a_verdict_as_its_tables_write_them():
    evidence = report.less([73.27], [52.1, 52.9, 51.8], unit="k$", digits=1).evidence
    assert evidence == f"73,3{NB}k\\$ contre 52,3{NB}±{NB}0,6{NB}k\\$ ; écart +21,0{NB}k\\$ (seuil 0,8{NB}k\\$)"
    assert report.below([0.59], 0.7, digits=2).evidence == "0,59 ; seuil 0,70"


# -- guarded sentences, tables --------------------------------------------------------------
@pytest.fixture
def chapter(tmp_path, monkeypatch):
    (tmp_path / "chapter.qmd").write_text(
        '[Toutes les graines\n[convergent]]{guard="t-all"} et\n\n'
        '1. [La perte baisse.]{expect="t-loss"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_guard_quotes_its_sentence_when_the_runs_no_longer_support_it(chapter, monkeypatch):
    monkeypatch.delenv("QUARTO_PROFILE", raising=False)
    report.guard("t-all", True)
    with pytest.raises(report.SentenceNotSupported, match=r"« Toutes les graines \[convergent\] » \(chapter.qmd\)"):
        report.guard("t-all", np.bool_(False))


def test_the_quick_profile_shows_a_draft_warning_instead(chapter, monkeypatch):
    shown = []
    monkeypatch.setattr(report, "display", shown.append)
    monkeypatch.setenv("QUARTO_PROFILE", "quick")
    report.guard("t-all", False)  # no exception
    assert "Brouillon" in shown[0].data and "Toutes les graines" in shown[0].data


def test_a_notebook_run_outside_the_book_finds_its_sentences_in_the_books_chapters(chapter, tmp_path,
                                                                                    monkeypatch):
    (tmp_path / "chapters").mkdir()
    (chapter / "chapter.qmd").rename(tmp_path / "chapters" / "chapter.qmd")
    (tmp_path / "_notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "_notebooks")
    monkeypatch.setenv("LABKIT_PROJECT_ROOT", str(tmp_path))
    assert report.sentence("expect", "t-loss") == ("La perte baisse.", tmp_path / "chapters" / "chapter.qmd")


def test_the_verdict_table_reads_each_expectation_from_the_chapter(chapter):
    verdicts = report.Verdicts({"t-loss": report.below([0.1, 0.2], 1.0)})
    text = verdicts.table().data
    assert "La perte baisse." in text and "confirmée" in text
    with pytest.raises(KeyError, match="no expectation"):
        report.Verdicts({"t-missing": report.below([0.1], 1.0)}).table()


def test_a_table_escapes_dollars_and_bars_and_right_aligns_numbers():
    text = report.table(pd.DataFrame({"Modèle": ["boosting | réglé"], "RMSE": [f"45,0{NB}k$"]})).data
    assert "k\\$" in text and "boosting \\| réglé" in text
    separator = text.splitlines()[1]
    assert separator.startswith("|:") and separator.endswith(":|")
