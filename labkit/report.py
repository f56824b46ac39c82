"""What a chapter states about its results: verdicts of its expectations, guarded sentences.

Both are written in the chapter's Markdown and marked with an id; Python only checks them.

- An expectation is a span in the "Ce que l'on attend" callout, written before any
  result: ``[Au taux 0,001, l'exactitude reste sous 95 %.]{expect="lr-small"}``.  After
  the runs, ``verdicts["lr-small"] = below(values, 0.95, unit="%")`` judges it and
  ``verdicts.table()`` shows each expectation's text (read back from the ``.qmd``), its
  verdict and the evidence.
- A sentence whose truth depends on the results is a span too,
  ``[toutes les graines divergent]{guard="lr-diverge"}``, followed by a hidden
  ``guard("lr-diverge", condition)``.  When the runs no longer support it, the full
  profile stops the render and quotes the sentence; the quick profile, whose small
  budgets may tell another story, shows a visible draft warning instead.

The rule, for values over seeds (a NaN is a diverged run and counts as the worst):
the *spread* of one configuration is the standard deviation of its seeds (n − 1); a
difference between two is measured against √(s₁² + s₂²), or a declared ``margin`` if
larger.  A difference is *confirmée* when it goes the announced way by more than that,
*réfutée* when it goes the other way by more, *non concluante* otherwise.  A threshold
is crossed when mean ± spread lies wholly beyond it; "about the same" (:func:`about`) is
confirmed within the yardstick and refuted beyond it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from labkit import fr, settings

__all__ = ["Verdict", "Verdicts", "greater", "less", "above", "below", "about", "guard",
           "SentenceNotSupported", "sentence", "table", "source"]
LABELS = {"confirmed": "confirmée", "refuted": "réfutée", "inconclusive": "non concluante"}


# -- sentences in the .qmd --------------------------------------------------------------
def sentence(kind: str, id: str, folder: Path | str | None = None) -> tuple[str, Path] | None:
    """The Markdown of the span ``[...]{kind="id"}`` and the ``.qmd`` holding it, or ``None``.

    Quarto executes a chapter in its folder; a notebook exported from it (``_notebooks/``)
    runs elsewhere, so the book's ``chapters/`` are searched too.  Ids are unique book-wide.
    """
    marker = f']{{{kind}="{id}"}}'
    folders = [Path(folder or Path.cwd()), settings.project_root() / "chapters"]
    for path in (path for folder in folders for path in sorted(folder.glob("*.qmd"))):
        text = path.read_text(encoding="utf-8")
        end = text.find(marker)
        if end < 0:
            continue
        depth, start = 0, end - 1
        while start >= 0 and not (text[start] == "[" and depth == 0):
            depth += {"]": 1, "[": -1}.get(text[start], 0)
            start -= 1
        return re.sub(r"[ \t\r\n]+", " ", text[start + 1:end]).strip(), path
    return None


class SentenceNotSupported(AssertionError):
    """A guarded sentence the runs no longer support (the full build stops on it)."""


def guard(id: str, holds) -> None:
    """Hold the sentence ``[...]{guard="id"}`` to the results: ``holds`` must be true.

    Full profile: a false ``holds`` raises :class:`SentenceNotSupported` quoting the
    sentence.  Quick profile: displays a visible draft warning instead (several guards may
    share a cell: each failing one shows its own).
    """
    if bool(holds):
        return
    found = sentence("guard", id)
    quoted = f"« {found[0]} » ({found[1].name})" if found else f"[…]{{guard=\"{id}\"}} (not found in *.qmd)"
    if not settings.is_quick():
        raise SentenceNotSupported(f"the runs no longer support the sentence {quoted}, guard {id!r}: "
                                   "rewrite the sentence or check the experiment")
    display(Markdown(f"::: {{.callout-warning title=\"Brouillon\"}}\nAvec les budgets réduits du profil "
                     f"*quick*, les runs ne confirment pas la phrase {quoted}.\n:::\n"))


# -- claims -------------------------------------------------------------------------------
def _values(values, lower_is_better: bool | None) -> np.ndarray:
    """Per-seed values with a diverged run (NaN) replaced by the worst possible value, which
    needs the measure's direction: a NaN with none given is refused rather than guessed."""
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise ValueError("a claim needs at least one value per side: check the selection")
    if np.isnan(array).any() and lower_is_better is None:
        raise ValueError("a diverged run (NaN) is among the values, and it counts as the worst: say which "
                         "is worse with lower_is_better=True (a loss, an error) or False (an accuracy)")
    return np.where(np.isnan(array), np.inf if lower_is_better else -np.inf, array)


def _spread(array: np.ndarray) -> float:
    finite = array[np.isfinite(array)]
    return float(finite.std(ddof=1)) if finite.size > 1 else math.nan


def _yardstick(spreads: list[float], margin: float) -> float:
    known = [s for s in spreads if math.isfinite(s)]
    if not known:
        return margin if margin > 0 else math.nan
    filled = [s if math.isfinite(s) else max(known) for s in spreads]
    return max(math.sqrt(sum(s * s for s in filled)), margin)


def _status(difference: float, yardstick: float) -> str:
    """Status of "difference > 0" against the yardstick."""
    if math.isinf(difference):
        return "confirmed" if difference > 0 else "refuted"
    if math.isnan(difference) or math.isnan(yardstick):
        return "inconclusive"
    return "confirmed" if difference > yardstick else "refuted" if difference < -yardstick else "inconclusive"


def _show(array: np.ndarray, unit: str, digits: int | None = None) -> str:
    """Mean ± spread with its unit: ``%`` for fractions (accuracies), ``pt`` for differences
    of fractions (percentage points), any other unit (``s``, ``k$``) written after the number."""
    if not np.isfinite(array).all():
        return f"divergé ({int((~np.isfinite(array)).sum())}/{array.size} graines)"
    if unit == "%":
        return fr.pm(array, digits, percent=True)
    if unit == "pt":
        return fr.pm(100 * array, digits) + f"{fr.NBSP}pt"
    return fr.pm(array, digits) + (f"{fr.NBSP}{fr.markdown(unit)}" if unit else "")


def _gap(value: float, unit: str, digits: int, sign: bool = True) -> str:
    if unit in ("%", "pt"):
        return fr.pt(value, digits, sign=sign)
    text = fr.num(value, digits) if not sign or value <= 0 else "+" + fr.num(value, digits)
    return text + (f"{fr.NBSP}{fr.markdown(unit)}" if unit else "")


def _threshold_text(threshold: float, unit: str, digits: int | None = None) -> str:
    """A threshold as the expectation wrote it: ``95 %``, ``97,5 %``, ``3 pt``, ``0,6``, ``75 époques``
    (with ``digits`` decimals when the values beside it have a fixed number: ``0,70``)."""
    scaled = 100 * threshold if unit in ("%", "pt") else threshold
    text = fr.rate(scaled) if digits is None else fr.num(scaled, digits)
    if unit in ("%", "pt"):
        return text + (f"{fr.NNBSP}%" if unit == "%" else f"{fr.NBSP}pt")
    return text + (f"{fr.NBSP}{fr.markdown(unit)}" if unit else "")


@dataclass(frozen=True)
class Verdict:
    """A judged expectation: ``status`` (confirmed, refuted, inconclusive) and its evidence."""

    status: str
    evidence: str

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"


def _measure(a, b, unit: str, margin: float, lower_is_better: bool, digits: int | None):
    """(a − b, yardstick, evidence) for two sides' per-seed values; ``digits``: the decimals
    of the values shown and of the gap, when the chapter writes them so (default: the spread's)."""
    a, b = _values(a, lower_is_better), _values(b, lower_is_better)
    difference = a.mean() - b.mean() if np.isfinite(a).all() or np.isfinite(b).all() else math.nan
    yardstick = _yardstick([_spread(a), _spread(b)], margin)
    # Both sides with the same decimals, and the gap with at least as many: the reader can
    # subtract the two numbers shown and find the gap written.
    side = digits if digits is not None else max(
        (fr.pm_digits(v, percent=unit in ("%", "pt")) for v in (a, b) if np.isfinite(v).all()), default=None)
    digits = digits if digits is not None else max(
        *(fr.first_digit(size, 100 if unit in ("%", "pt") else 1) for size in (yardstick, difference)), side or 0)
    gap = "" if not math.isfinite(difference) else (
        f" ; écart {_gap(difference, unit, digits)} (seuil {_gap(yardstick, unit, digits, sign=False)})"
        if math.isfinite(yardstick) else " ; dispersion non mesurable")
    return difference, yardstick, f"{_show(a, unit, side)} contre {_show(b, unit, side)}{gap}"


def greater(a, b, *, unit: str = "", margin: float = 0.0, lower_is_better: bool | None = None,
            digits: int | None = None) -> Verdict:
    """``a`` larger than ``b`` by more than the yardstick (per-seed values on each side)."""
    difference, yardstick, evidence = _measure(a, b, unit, margin, lower_is_better, digits)
    return Verdict(_status(difference, yardstick), evidence)


def less(a, b, *, unit: str = "", margin: float = 0.0, lower_is_better: bool | None = None,
         digits: int | None = None) -> Verdict:
    """``a`` smaller than ``b`` by more than the yardstick."""
    difference, yardstick, evidence = _measure(a, b, unit, margin, lower_is_better, digits)
    return Verdict(_status(-difference, yardstick), evidence)


def about(a, b, *, unit: str = "", margin: float = 0.0, lower_is_better: bool | None = None,
          digits: int | None = None) -> Verdict:
    """``a`` and ``b`` indistinguishable: their difference stays within the yardstick."""
    difference, yardstick, evidence = _measure(a, b, unit, margin, lower_is_better, digits)
    if math.isinf(difference) or (math.isfinite(yardstick) and abs(difference) > yardstick):
        return Verdict("refuted", evidence)
    return Verdict("confirmed" if math.isfinite(yardstick) and math.isfinite(difference) else "inconclusive",
                   evidence)


def _threshold(values, threshold: float, sign: int, unit: str, lower_is_better: bool, digits) -> Verdict:
    array = _values(values, lower_is_better)
    mean = array.mean()  # ±inf when a run diverged: the worst side of the threshold
    status = _status(sign * (mean - threshold), _spread(array) if array.size > 1 else 0.0)
    return Verdict(status, f"{_show(array, unit, digits)} ; seuil {_threshold_text(threshold, unit, digits)}")


def above(values, threshold: float, *, unit: str = "", lower_is_better: bool | None = None,
          digits: int | None = None) -> Verdict:
    """Mean − spread above ``threshold`` (confirmed), mean + spread below it (refuted)."""
    return _threshold(values, threshold, +1, unit, lower_is_better, digits)


def below(values, threshold: float, *, unit: str = "", lower_is_better: bool | None = None,
          digits: int | None = None) -> Verdict:
    """Mean + spread below ``threshold`` (confirmed), mean − spread above it (refuted)."""
    return _threshold(values, threshold, -1, unit, lower_is_better, digits)


class Verdicts(dict):
    """The chapter's verdicts by expectation id, shown as a table in the expectations' order."""

    def table(self, folder: Path | str | None = None) -> Markdown:
        rows = []
        for id, verdict in self.items():
            found = sentence("expect", id, folder)
            if found is None:
                raise KeyError(f'no expectation [...]{{expect="{id}"}} in the chapter: write it in the '
                               "\"Ce que l'on attend\" callout, before any result")
            rows.append((found[1], found[0], id, verdict))
        order = {id: n for n, id in enumerate(_expectation_ids(rows[0][0]) if rows else [])}
        rows.sort(key=lambda row: order.get(row[2], len(order)))
        return table(pd.DataFrame({"N°": [str(n) for n in range(1, len(rows) + 1)],
                                   "Attente": [text for _, text, _, _ in rows],
                                   "Verdict": [LABELS[v.status] for *_, v in rows],
                                   "Mesure": [v.evidence for *_, v in rows]}))


def _expectation_ids(path: Path) -> list[str]:
    return re.findall(r'\]\{expect="([^"]+)"\}', path.read_text(encoding="utf-8"))


# -- tables -------------------------------------------------------------------------------
#: Characters per line of the PDF's text column (A4, 10 pt): sizes the columns of wide tables.
LINE = 90


def table(frame: pd.DataFrame) -> Markdown:
    """A data frame as a Markdown table (Pandoc's own tables: the same on the site and in the
    PDF, captioned by the cell's ``tbl-cap``).  Format numbers before, with :mod:`labkit.fr`.

    Cells are Markdown (``$`` escaped).  Pandoc sizes the columns of a wide table by the
    dashes of its separator line: each column gets room for its longest word, and the rest
    of the line in proportion to its mean length, so that a short column ("confirmée")
    is never squeezed into hyphenated pieces by a long one.
    """
    cells = frame.astype(str).map(fr.markdown).map(lambda cell: re.sub(r"(?<!\\)\|", r"\\|", cell))
    text = cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)
    lengths = [[len(name), *cells[name].str.len()] for name in cells.columns]
    words = [max(len(word) for value in [name, *cells[name]] for word in re.split(r"[ \t\n]+", value))
             for name in cells.columns]  # no-break spaces hold "97,5 ± 0,3 %" together: one word
    need = [(word + 2) / LINE for word in words]
    mean = [sum(column) / len(column) for column in lengths]
    share = [n + max(0.0, 1 - sum(need)) * m / sum(mean) for n, m in zip(need, mean)]
    lines = text.splitlines()
    numeric = [bool(cells[name].str.fullmatch(r"\**[−+\-]?[\d\u202f\u00a0 ,.]+(\u00a0?\S{0,3})\**").all())
               for name in cells.columns]  # numbers (a unit of up to three characters), right-aligned
    lines[1] = "|" + "|".join(f":{'-' * max(3, round(100 * s))}" if not right else f"{'-' * max(3, round(100 * s))}:"
                              for right, s in zip(numeric, share)) + "|"
    return Markdown("\n".join(lines))


def source(function) -> Markdown:
    """A function's source, verbatim, as a Python code block: a chapter shows labkit's own
    training code instead of paraphrasing it."""
    import inspect

    return Markdown(f"```python\n{inspect.getsource(function).rstrip()}\n```")
