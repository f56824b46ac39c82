"""What a chapter states around its results: expectations and verdicts, parameter tables, limits.

Expectations are declared as data *before* any run (a French sentence plus the
comparison it claims, on a tidy table of final results); after the runs the same
objects give each one a verdict by a rule simple enough for one sentence::

    expect = report.Expectations(chapter="A")
    expect.add("he-beats-glorot", "L'initialisation de He fait mieux que celle de Glorot.",
               report.Greater(a={"init": "he_normal"}, b={"init": "glorot_uniform"},
                              metric="accuracy"))
    expect.callout()                       # the "Ce que l'on attend" callout
    ...                                    # sweeps
    results = report.final_results(frame, metrics=("accuracy",))
    expect.verdicts(results)               # the verdict table
    expect.verdict("he-beats-glorot").word # "confirmée", for the prose

The seed spread and the rule (stated in French in :data:`SPREAD`, :data:`RULE` and
:data:`RULE_DETAILS`, which the verdict table's caption repeats):

- the *spread* of a configuration is the standard deviation of its metric over
  seeds (``ddof=1``); a side with one seed borrows the other side's; two sides
  combine as ``√(s_a² + s_b²)`` (the seed-to-seed spread of a difference); an
  expectation's ``margin`` is a floor on it, and the only yardstick when no
  spread can be measured (one seed each: without a margin, inconclusive);
- a difference is *confirmed* when it goes the announced way by more than the
  spread, *refuted* when it goes the other way by more than the spread, and
  *inconclusive* otherwise — never confirmed inside the noise;
- a threshold is crossed when mean ± spread lies entirely on one side of it;
- "indistinguishable" (:class:`About`) is confirmed when the difference stays
  within the spread and refuted when it exceeds it;
- a configuration that diverged on any seed (NaN in :func:`final_results`)
  counts as the worst possible value of its metric: divergence is a result.

Too late is refused: the sweep calls :func:`mark_results_exist` when it first
returns results, after which :meth:`Expectations.add` raises
:class:`ExpectationTooLate`.  Inside IPython the mark lives in the user namespace,
so Quarto's ``%reset`` at the start of each execution (even in a reused kernel)
starts a new session; elsewhere it lives in this module.
"""

from __future__ import annotations

import abc

import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from IPython.display import Markdown

from labkit import fmt

__all__ = [
    # session
    "mark_results_exist",
    "results_exist",
    "reset_session",
    "ExpectationTooLate",
    # expectations
    "Greater",
    "Less",
    "Above",
    "Below",
    "About",
    "Best",
    "Monotone",
    "Expectation",
    "Expectations",
    "Side",
    "Verdict",
    "VerdictTable",
    "SPREAD",
    "RULE",
    "RULE_DETAILS",
    "STATUS_LABELS",
    # results
    "final_results",
    "limits_facts",
    "LimitsFacts",
    # parameters
    "param_table",
    "ParamTable",
    "ParameterCountMismatch",
]

#: How the book defines the seed spread (French, shown in the verdict table's caption).
SPREAD = (
    "Dispersion : écart type entre graines d'une configuration (n − 1 au dénominateur) ; "
    "pour l'écart entre deux configurations, √(s₁² + s₂²), ou la marge déclarée si elle "
    "est plus grande."
)
#: The verdict rule in one sentence (French, shown in the caption, quotable in the book).
RULE = (
    "Une attente est confirmée quand l'écart mesuré va dans le sens annoncé et dépasse la "
    "dispersion, réfutée quand il la dépasse dans l'autre sens, non concluante sinon."
)
#: How the rule reads for thresholds, "indistinguishable" and divergence (French).
RULE_DETAILS = (
    "Un seuil est franchi quand moyenne ± dispersion est entièrement au-delà ; deux "
    "configurations annoncées indiscernables le sont si leur écart reste dans la dispersion ; "
    "une configuration qui diverge, même pour une seule graine, compte comme la pire."
)

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
#: French labels of the statuses, as in the verdict table.
STATUS_LABELS = {
    CONFIRMED: "✅ confirmée",
    REFUTED: "❌ réfutée",
    INCONCLUSIVE: "➖ non concluante",
}

#: Metric names (substrings) where lower is better; any other metric: higher is better.
LOWER_IS_BETTER = ("loss", "crossentropy", "entropy", "mse", "mae", "rmse", "mape", "msle", "error", "gap")
#: Columns of the sweep's tidy long frame that are not part of a run's identity.
_LONG_COLUMNS = ("epoch", "split", "metric", "value", "diverged")
#: Columns of a final-results table that identify neither a configuration nor a metric.
_RUN_COLUMNS = ("seed", "key", "diverged")


# --------------------------------------------------------------------------- session

_MARK = "_labkit_results_exist"
_process_mark = False


def _user_namespace() -> dict | None:
    """The IPython user namespace when running in a kernel (Quarto, Jupyter), else None."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "user_ns", None)


def mark_results_exist() -> None:
    """Record that results were handed to this session (called by the sweep)."""
    global _process_mark
    namespace = _user_namespace()
    if namespace is not None:
        namespace[_MARK] = True
    else:
        _process_mark = True


def results_exist() -> bool:
    """Whether results were handed out in this session (see the module docstring)."""
    namespace = _user_namespace()
    if namespace is not None:
        return bool(namespace.get(_MARK, False))
    return _process_mark


def reset_session() -> None:
    """Forget that results exist (tests; a chapter never needs it)."""
    global _process_mark
    _process_mark = False
    namespace = _user_namespace()
    if namespace is not None:
        namespace.pop(_MARK, None)


class ExpectationTooLate(RuntimeError):
    """An expectation declared after results were seen could be fitted to them."""


# --------------------------------------------------------------------------- sides


def _lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(word in name for word in LOWER_IS_BETTER)


def _is_fraction(metric: str) -> bool:
    """Metrics shown as percentages (accuracies)."""
    name = metric.lower()
    return "accuracy" in name or name in ("acc", "val_acc")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _same(value, wanted) -> bool:
    """Grid-value equality where a missing value (None, NaN) equals another missing one."""
    if _is_missing(wanted):
        return _is_missing(value)
    try:
        return bool(value == wanted)
    except (TypeError, ValueError):
        return False


def _value_text(value) -> str:
    if isinstance(value, (float, np.floating)) and math.isfinite(value):
        return format(float(value), "g").replace("-", fmt.MINUS).replace(".", ",")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return fmt.num(int(value))
    return str(value)


def _selection_label(selection: Mapping) -> str:
    if not selection:
        return "toutes les exécutions"
    return ", ".join(f"{column} = {_value_text(value)}" for column, value in selection.items())


def _check_selection(name: str, selection) -> dict:
    if not isinstance(selection, Mapping):
        raise TypeError(
            f"{name} must be a dict of column filters like {{'init': 'he_normal'}}, "
            f"got {selection!r}"
        )
    return dict(selection)


def _check_metric(metric) -> str:
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"metric must be a column name (str), got {metric!r}")
    return metric


def _check_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    return float(margin)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: the per-seed values of a metric for one configuration."""

    selection: dict
    metric: str
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return _selection_label(self.selection)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def n_diverged(self) -> int:
        return sum(not math.isfinite(v) for v in self.values)

    @property
    def diverged(self) -> bool:
        return self.n_diverged > 0

    @property
    def mean(self) -> float:
        """Mean over seeds; NaN when a seed diverged."""
        return float(np.mean(self.values)) if not self.diverged else math.nan

    @property
    def spread(self) -> float:
        """Standard deviation over seeds (ddof=1); NaN with fewer than two finite values."""
        finite = [v for v in self.values if math.isfinite(v)]
        return float(np.std(finite, ddof=1)) if len(finite) >= 2 else math.nan

    @property
    def score(self) -> float:
        """The mean, or the worst value of the metric (±inf) when a seed diverged."""
        if not self.diverged:
            return self.mean
        return math.inf if _lower_is_better(self.metric) else -math.inf

    def text(self, digits: int | None = None) -> str:
        """``97,5 ± 0,3 %``, ``0,53 ± 0,01`` or ``divergé (1/2 graines)``."""
        if self.diverged:
            return f"{fmt.DIVERGED} ({self.n_diverged}/{self.n} graines)"
        return fmt.pm(self.mean, self.spread, digits, percent=_is_fraction(self.metric))


def _select(results: pd.DataFrame, selection: dict, metric: str) -> Side:
    """The side a selection designates; it must be exactly one configuration."""
    missing = [c for c in (*selection, metric) if c not in results.columns]
    if missing:
        raise KeyError(
            f"column(s) {missing} not in the results; columns are {list(results.columns)}"
        )
    mask = np.ones(len(results), dtype=bool)
    for column, wanted in selection.items():
        mask &= results[column].map(lambda v, w=wanted: _same(v, w)).to_numpy(dtype=bool)
    rows = results[mask]
    if rows.empty:
        column = next((c for c in selection if not results[c].map(
            lambda v, w=selection[c]: _same(v, w)).any()), None)
        hint = f"; values of {column!r}: {sorted(map(str, results[column].unique()))}" \
            if column else ""
        raise ValueError(f"selection {selection} matches no result{hint}")
    if "seed" in rows.columns and rows["seed"].duplicated().any():
        varying = [
            c for c in rows.columns
            if c not in (*_RUN_COLUMNS, metric) and 1 < rows[c].astype(str).nunique() < len(rows)
        ]
        raise ValueError(
            f"selection {selection} matches several configurations (the same seed appears "
            f"more than once); add a filter on: {varying}"
        )
    values = tuple(float(v) if v is not None else math.nan for v in rows[metric])
    return Side(selection, metric, values)


# --------------------------------------------------------------------------- the rule


def _threshold(spreads: list[float], margin: float, combine: bool = True) -> float:
    """The yardstick: combined seed spread (or the margin, if larger); NaN if neither exists."""
    known = [s for s in spreads if math.isfinite(s)]
    if not known:
        return margin if margin > 0 else math.nan
    filled = [s if math.isfinite(s) else max(known) for s in spreads]
    spread = math.sqrt(sum(s * s for s in filled)) if combine else filled[0]
    return max(spread, margin)


def _directional(difference: float, threshold: float) -> str:
    """Status of "difference > 0" (the announced way) measured against ``threshold``."""
    if math.isnan(difference):
        return INCONCLUSIVE
    if math.isinf(difference):  # one side diverged: decisive whatever the spread
        return CONFIRMED if difference > 0 else REFUTED
    if math.isnan(threshold):
        return INCONCLUSIVE
    if difference > threshold:
        return CONFIRMED
    if difference < -threshold:
        return REFUTED
    return INCONCLUSIVE


def _all_of(statuses: list[str]) -> str:
    """A claim made of several comparisons: any refuted → refuted; all confirmed → confirmed."""
    if REFUTED in statuses:
        return REFUTED
    return CONFIRMED if statuses and all(s == CONFIRMED for s in statuses) else INCONCLUSIVE


def _gap_text(value: float, metric: str, digits: int, sign: bool = True) -> str:
    if _is_fraction(metric):
        return fmt.pp(value, max(digits, 1), sign=sign)
    return fmt.signed(value, digits) if sign else fmt.num(value, digits)


def _digits(sides: list[Side]) -> int:
    spreads = [s.spread for s in sides if math.isfinite(s.spread) and s.spread > 0]
    percent = _is_fraction(sides[0].metric)
    return fmt.auto_digits(min(spreads) if spreads else math.nan, percent)


@dataclass(frozen=True)
class _Outcome:
    status: str
    sides: tuple[Side, ...]
    difference: float
    threshold: float
    evidence: str


def _yardstick_text(threshold: float, margin: float, metric: str, digits: int) -> str:
    """What the difference was measured against: the seed spread or the declared margin."""
    if not math.isfinite(threshold):
        return "dispersion non mesurable"
    size = _gap_text(threshold, metric, digits, sign=False)
    return f"marge déclarée {size}" if margin > 0 and threshold == margin else f"dispersion {size}"


def _pair_outcome(a: Side, b: Side, difference: float, threshold: float, status: str,
                  margin: float, b_prefix: str = "") -> _Outcome:
    digits = _digits([a, b])
    parts = [f"{a.label} : {a.text(digits)}", f"{b_prefix}{b.label} : {b.text(digits)}"]
    if math.isfinite(difference):
        parts.append(f"écart {_gap_text(difference, a.metric, digits)} "
                     f"({_yardstick_text(threshold, margin, a.metric, digits)})")
    return _Outcome(status, (a, b), difference, threshold, " ; ".join(parts))


# --------------------------------------------------------------------------- claims


class _Claim(abc.ABC):
    """A measurable comparison on a table of final results (one row per config × seed)."""

    @abc.abstractmethod
    def evaluate(self, results: pd.DataFrame) -> _Outcome:
        """Compare the selected sides and say confirmed / refuted / inconclusive."""


@dataclass(frozen=True)
class Greater(_Claim):
    """``a`` has a larger ``metric`` than ``b`` (by more than the spread, or ``margin``)."""

    a: dict
    b: dict
    metric: str
    margin: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "a", _check_selection("a", self.a))
        object.__setattr__(self, "b", _check_selection("b", self.b))
        _check_metric(self.metric)
        object.__setattr__(self, "margin", _check_margin(self.margin))

    _sign = 1

    def evaluate(self, results):
        a, b = _select(results, self.a, self.metric), _select(results, self.b, self.metric)
        difference = a.score - b.score
        threshold = _threshold([a.spread, b.spread], self.margin)
        status = _directional(self._sign * difference, threshold)
        return _pair_outcome(a, b, difference, threshold, status, self.margin)


@dataclass(frozen=True)
class Less(Greater):
    """``a`` has a smaller ``metric`` than ``b`` (by more than the spread, or ``margin``)."""

    _sign = -1


@dataclass(frozen=True)
class Above(_Claim):
    """The ``metric`` of ``a`` is above ``threshold``: mean − spread > threshold."""

    a: dict
    threshold: float
    metric: str
    margin: float = 0.0

    _sign = 1

    def __post_init__(self):
        object.__setattr__(self, "a", _check_selection("a", self.a))
        _check_metric(self.metric)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        object.__setattr__(self, "margin", _check_margin(self.margin))

    def evaluate(self, results):
        a = _select(results, self.a, self.metric)
        difference = a.score - self.threshold
        threshold = _threshold([a.spread], self.margin, combine=False)
        status = _directional(self._sign * difference, threshold)
        digits = _digits([a])
        line = fmt.pct(self.threshold, max(digits, 1)) if _is_fraction(self.metric) \
            else fmt.num(self.threshold, max(digits, 2))
        evidence = f"{a.label} : {a.text(digits)} ; seuil {line}"
        if (self.margin > 0 and threshold == self.margin) or not math.isfinite(threshold):
            evidence += f" ({_yardstick_text(threshold, self.margin, self.metric, digits)})"
        return _Outcome(status, (a,), difference, threshold, evidence)


@dataclass(frozen=True)
class Below(Above):
    """The ``metric`` of ``a`` is below ``threshold``: mean + spread < threshold."""

    _sign = -1


@dataclass(frozen=True)
class About(_Claim):
    """``a`` and ``b`` are indistinguishable: their difference stays within the spread."""

    a: dict
    b: dict
    metric: str
    margin: float = 0.0

    def __post_init__(self):
        Greater.__post_init__(self)

    def evaluate(self, results):
        a, b = _select(results, self.a, self.metric), _select(results, self.b, self.metric)
        difference = a.score - b.score
        threshold = _threshold([a.spread, b.spread], self.margin)
        if math.isnan(difference) or (math.isnan(threshold) and not math.isinf(difference)):
            status = INCONCLUSIVE
        else:
            status = CONFIRMED if abs(difference) <= threshold else REFUTED
        return _pair_outcome(a, b, difference, threshold, status, self.margin)


def _check_goal(goal, metric: str) -> str:
    if goal is None:
        return "min" if _lower_is_better(metric) else "max"
    if goal not in ("min", "max"):
        raise ValueError(f"goal must be 'min', 'max' or None (from the metric), got {goal!r}")
    return goal


def _groups(results: pd.DataFrame, along: str, where: dict, metric: str) -> list[Side]:
    """One side per value of ``along`` among the results matching ``where``."""
    if along not in results.columns:
        raise KeyError(f"column {along!r} not in the results; columns are {list(results.columns)}")
    mask = np.ones(len(results), dtype=bool)
    for column, wanted in where.items():
        if column not in results.columns:
            raise KeyError(f"column {column!r} not in the results")
        mask &= results[column].map(lambda v, w=wanted: _same(v, w)).to_numpy(dtype=bool)
    values = pd.unique(results.loc[mask, along])
    try:
        values = sorted(values)
    except TypeError:
        values = list(values)
    return [_select(results, {**where, along: value}, metric) for value in values]


@dataclass(frozen=True)
class Best(_Claim):
    """``candidate`` (a value of column ``among``) is the best of its group.

    The group is every value of ``among`` in the rows matching ``where``; "best"
    is the largest ``metric``, or the smallest for losses and errors (``goal``).
    Confirmed when the candidate beats each other member by more than the spread,
    refuted when some member beats it by more than the spread.
    """

    candidate: Any
    among: str
    metric: str
    where: dict = field(default_factory=dict)
    goal: str | None = None
    margin: float = 0.0

    def __post_init__(self):
        _check_metric(self.metric)
        object.__setattr__(self, "where", _check_selection("where", self.where))
        object.__setattr__(self, "goal", _check_goal(self.goal, self.metric))
        object.__setattr__(self, "margin", _check_margin(self.margin))

    def evaluate(self, results):
        sides = _groups(results, self.among, self.where, self.metric)
        mine = [s for s in sides if _same(s.selection[self.among], self.candidate)]
        if not mine:
            raise ValueError(
                f"candidate {self.among}={self.candidate!r} is not among the results' values "
                f"{[s.selection[self.among] for s in sides]}"
            )
        me, others = mine[0], [s for s in sides if s is not mine[0]]
        if not others:
            raise ValueError(f"Best needs at least two values of {self.among!r}, got one")
        sign = 1 if self.goal == "max" else -1
        statuses = [
            _directional(sign * (me.score - other.score),
                         _threshold([me.spread, other.spread], self.margin))
            for other in others
        ]
        rival = max(others, key=lambda s: sign * s.score if not math.isnan(s.score) else -math.inf)
        difference = me.score - rival.score
        threshold = _threshold([me.spread, rival.spread], self.margin)
        prefix = "l'autre, " if len(others) == 1 else f"la meilleure des {len(others)} autres, "
        outcome = _pair_outcome(me, rival, difference, threshold, _all_of(statuses),
                                self.margin, prefix)
        return _Outcome(outcome.status, (me, *others), difference, threshold, outcome.evidence)


@dataclass(frozen=True)
class Monotone(_Claim):
    """``metric`` increases (or decreases) with column ``along``, step by step.

    Each consecutive step is judged by the rule: confirmed when every step goes
    the announced way by more than the spread, refuted when one goes clearly the
    other way.
    """

    along: str
    metric: str
    where: dict = field(default_factory=dict)
    increasing: bool = True
    margin: float = 0.0

    def __post_init__(self):
        _check_metric(self.metric)
        object.__setattr__(self, "where", _check_selection("where", self.where))
        object.__setattr__(self, "margin", _check_margin(self.margin))

    def evaluate(self, results):
        sides = _groups(results, self.along, self.where, self.metric)
        if len(sides) < 2:
            raise ValueError(f"Monotone needs at least two values of {self.along!r}")
        sign = 1 if self.increasing else -1
        statuses = [
            _directional(sign * (b.score - a.score), _threshold([a.spread, b.spread], self.margin))
            for a, b in zip(sides, sides[1:])
        ]
        digits = _digits(sides)
        evidence = " → ".join(
            f"{self.along} = {_value_text(s.selection[self.along])} : {s.text(digits)}"
            for s in sides
        )
        difference = sides[-1].score - sides[0].score
        return _Outcome(_all_of(statuses), tuple(sides), difference, math.nan, evidence)


_CLAIMS = (Greater, Above, About, Best, Monotone)


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expectation:
    """A sentence the chapter commits to, and the comparison that checks it."""

    id: str
    text: str
    claim: _Claim


@dataclass(frozen=True)
class Verdict:
    """The outcome of one expectation, with the numbers the prose may quote."""

    id: str
    number: int
    text: str
    status: str
    sides: tuple[Side, ...]
    difference: float
    threshold: float
    evidence: str

    @property
    def label(self) -> str:
        """``✅ confirmée``, as in the table."""
        return STATUS_LABELS[self.status]

    @property
    def word(self) -> str:
        """``confirmée`` / ``réfutée`` / ``non concluante``, for a sentence."""
        return self.label.split(" ", 1)[1]

    @property
    def confirmed(self) -> bool:
        return self.status == CONFIRMED

    def says(self, *, confirmed: str, refuted: str, inconclusive: str) -> str:
        """The phrase the prose needs for this verdict's status: a sentence that follows the
        results, whichever way they came out (all three are required, so none is forgotten)."""
        return {CONFIRMED: confirmed, REFUTED: refuted, INCONCLUSIVE: inconclusive}[self.status]

    def __str__(self) -> str:
        return self.word


class VerdictTable(Markdown):
    """The verdict table (Markdown) that also holds the :class:`Verdict` objects."""

    def __init__(self, text: str, verdicts: dict[str, Verdict]):
        super().__init__(text)
        self.verdicts = verdicts


_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


_ASCII_SPACES = re.compile(r"[ \t\r\n]+")


def _one_line(text: str) -> str:
    """Collapse ASCII whitespace only: str.split() would also eat the no-break spaces."""
    return _ASCII_SPACES.sub(" ", str(text)).strip()


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


class Expectations:
    """A chapter's expectations, declared before its first sweep and judged after."""

    def __init__(self, chapter: str):
        if not isinstance(chapter, str) or not chapter.strip():
            raise ValueError(f"chapter must be a non-empty name like 'A', got {chapter!r}")
        self.chapter = chapter
        self._items: dict[str, Expectation] = {}
        self._verdicts: dict[str, Verdict] | None = None

    def add(self, id: str, text: str, claim: _Claim) -> Expectation:
        """Declare one expectation; refused once results exist in this session."""
        if not isinstance(id, str) or not _ID.match(id):
            raise ValueError(f"id must be a short slug like 'lr-too-small', got {id!r}")
        if results_exist():
            raise ExpectationTooLate(
                f"expectation {id!r} declared after results were computed; declare "
                "expectations before the first sweep (restart the kernel to start over)"
            )
        if id in self._items:
            raise ValueError(f"expectation {id!r} is already declared in chapter {self.chapter}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text of {id!r} must be a French sentence, got {text!r}")
        if not isinstance(claim, _CLAIMS):
            raise TypeError(
                f"claim of {id!r} must be one of Greater, Less, Above, Below, About, Best, "
                f"Monotone; got {claim!r}"
            )
        expectation = Expectation(id, _one_line(text), claim)
        self._items[id] = expectation
        self._verdicts = None
        return expectation

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items.values())

    def __getitem__(self, id: str) -> Expectation:
        return self._items[self._known(id)]

    def _known(self, id: str) -> str:
        if id not in self._items:
            raise KeyError(f"no expectation {id!r} in chapter {self.chapter}; "
                           f"declared: {list(self._items)}")
        return id

    def callout(self) -> Markdown:
        """The "Ce que l'on attend" callout: the sentences, numbered, before any result."""
        if not self._items:
            raise ValueError(f"chapter {self.chapter} declares no expectation yet")
        lines = [f"{n}. {e.text}" for n, e in enumerate(self, start=1)]
        return Markdown(
            "::: {.callout-note title=\"Ce que l'on attend\"}\n\n"
            + "\n".join(lines)
            + "\n\n:::\n"
        )

    def verdicts(self, results, caption: bool | str = True) -> VerdictTable:
        """Judge every expectation on ``results`` and return the verdict table.

        ``results`` is one table of final results (:func:`final_results`: one
        row per configuration × seed) or a dict ``{id: table}`` when expectations
        rest on different sweeps.  ``caption=True`` states the rule under the
        table; a string replaces the first sentence of that caption.
        """
        if not self._items:
            raise ValueError(f"chapter {self.chapter} declares no expectation")
        judged = {}
        for number, expectation in enumerate(self, start=1):
            table = self._results_for(results, expectation.id)
            outcome = expectation.claim.evaluate(table)
            judged[expectation.id] = Verdict(
                expectation.id, number, expectation.text, outcome.status, outcome.sides,
                outcome.difference, outcome.threshold, outcome.evidence,
            )
        self._verdicts = judged
        return VerdictTable(self._table(judged.values(), caption), judged)

    def _results_for(self, results, id: str) -> pd.DataFrame:
        if isinstance(results, Mapping):
            if id not in results:
                raise KeyError(f"no results given for expectation {id!r}; got {list(results)}")
            results = results[id]
        if not isinstance(results, pd.DataFrame):
            raise TypeError(
                f"results must be a DataFrame of final results (or a dict of them), "
                f"got {type(results).__name__}"
            )
        return results

    def _table(self, verdicts, caption) -> str:
        rows = ["| Attente | Verdict | Mesure |", "|:---|:---|:---|"]
        rows += [f"| {v.number}. {_cell(v.text)} | {v.label} | {_cell(v.evidence)} |"
                 for v in verdicts]
        text = "\n".join(rows) + "\n"
        if caption:
            first = caption if isinstance(caption, str) else \
                f"Verdicts des attentes du chapitre {self.chapter}."
            text += f"\n: {_cell(first)} {SPREAD} {RULE} {RULE_DETAILS}\n"
        return text

    def verdict(self, id: str) -> Verdict:
        """The verdict of one expectation, for the prose (after :meth:`verdicts`)."""
        self._known(id)
        if self._verdicts is None:
            raise RuntimeError(
                f"no verdicts yet for chapter {self.chapter}: call expect.verdicts(results) first"
            )
        return self._verdicts[id]


# --------------------------------------------------------------------------- results


def _as_names(value, name: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(v, str) and v for v in names):
        raise ValueError(f"{name} must be a name or a sequence of names, got {value!r}")
    return names


def _check_long(frame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected the sweep's tidy DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("epoch", "split", "metric", "value") if c not in frame.columns]
    if missing:
        raise KeyError(
            f"the frame lacks column(s) {missing}: expected the sweep's tidy frame "
            f"(grid columns, seed, epoch, split, metric, value); got {list(frame.columns)}"
        )


def _run_ids(frame: pd.DataFrame) -> np.ndarray:
    """One id per run: the store key when the frame has it, else grid columns + seed."""
    if "key" in frame.columns:
        return frame["key"].to_numpy()
    ids = [c for c in frame.columns if c not in _LONG_COLUMNS]
    if not ids:
        raise ValueError("the frame has no column identifying runs (grid columns, seed, key)")
    return frame.groupby(ids, dropna=False, sort=False).ngroup().to_numpy()


def final_results(frame: pd.DataFrame, metrics=("accuracy",), split="validation") -> pd.DataFrame:
    """One row per configuration × seed with the final-epoch value of each metric.

    Columns: the grid columns, ``seed`` (and ``key``), ``diverged``, then one
    column per metric — named by the metric for one split, ``<metric>_<split>``
    when several splits are asked for (e.g. to compute a train–validation gap).

    A diverged run is kept, not dropped: dropping it would make a rate that
    blows up on one seed look as good as its surviving seeds.  Its metrics are
    NaN — not its last finite values, which predate the blow-up and would
    flatter it — and the verdicts count NaN as the worst value of the metric.
    A run whose final value is not finite is marked diverged too.
    """
    _check_long(frame)
    metrics, splits = _as_names(metrics, "metrics"), _as_names(split, "split")
    for column, wanted in (("metric", metrics), ("split", splits)):
        absent = [w for w in wanted if w not in set(frame[column])]
        if absent:
            raise ValueError(f"{column} {absent} not in the frame; it has "
                             f"{sorted(map(str, frame[column].unique()))}")
    ids = [c for c in frame.columns if c not in _LONG_COLUMNS]
    frame = frame.assign(_run=_run_ids(frame))
    runs = frame.drop_duplicates("_run")[["_run", *ids]]
    wanted = frame[frame["split"].isin(splits) & frame["metric"].isin(metrics)]
    last = (wanted.sort_values("epoch", kind="stable", na_position="last")
            .drop_duplicates(["_run", "split", "metric"], keep="last"))
    single = len(splits) == 1
    last = last.assign(_column=[m if single else f"{m}_{s}"
                                for m, s in zip(last["metric"], last["split"])])
    columns = [m if single else f"{m}_{s}" for m in metrics for s in splits]
    wide = last.pivot(index="_run", columns="_column", values="value").reindex(columns=columns)
    out = runs.merge(wide, left_on="_run", right_index=True, how="left")
    flagged = frame.groupby("_run")["diverged"].any() if "diverged" in frame.columns \
        else pd.Series(False, index=runs["_run"])
    values = out[columns].to_numpy(dtype=float)
    diverged = out["_run"].map(flagged).to_numpy(dtype=bool) \
        | ~np.isfinite(values).all(axis=1)
    out[columns] = np.where(diverged[:, None], np.nan, values)
    out.insert(len(ids) + 1, "diverged", diverged)
    return out.drop(columns="_run").reset_index(drop=True)


_METRIC_NAMES = {"accuracy": "exactitude", "loss": "perte", "mse": "MSE", "rmse": "RMSE",
                 "mae": "MAE"}
_SPLIT_NAMES = {"train": "d'entraînement", "validation": "de validation", "test": "de test"}


_PROFILE_NAMES = {
    "full": "complet (les résultats du livre)",
    "quick": "rapide (brouillon : sous-ensemble et budget réduits, pas les résultats du livre)",
}


def _epochs_recorded(frame: pd.DataFrame, split: str) -> int:
    """The largest number of epochs a run recorded (diverged runs stop early)."""
    rows = frame[frame["split"] == split]
    return int(rows.groupby(_run_ids(rows))["epoch"].nunique().max())


class LimitsFacts(Markdown):
    """The factual bullets of a chapter's limits (Markdown), with the numbers in ``facts``."""

    def __init__(self, text: str, facts: dict):
        super().__init__(text)
        self.facts = facts


def _range_text(values) -> str:
    values = sorted(set(values))
    if len(values) == 1:
        return _value_text(values[0])
    return f"de {_value_text(values[0])} à {_value_text(values[-1])}"


def _column_values(frame: pd.DataFrame, names: tuple[str, ...]):
    for name in names:
        if name in frame.columns:
            return [v for v in frame[name].dropna().unique()]
    return None


def _count(n: int, noun: str) -> str:
    """``1 configuration``, ``3 configurations``, ``1 200 entraînements`` (French plural)."""
    return f"{fmt.num(n)} {noun}{'s' if n > 1 else ''}"


def limits_facts(frame: pd.DataFrame, metric: str = "accuracy", split: str = "validation", *,
                 train_size: int | None = None, epochs: int | None = None) -> LimitsFacts:
    """The facts a chapter's limits rest on, read from its own runs (French bullets).

    Seeds per configuration, profile, training-set size, epochs, the seed spread
    of the key metric (median and largest standard deviation over configurations)
    and the diverged runs: what the written analysis must not contradict.
    ``train_size``/``epochs`` override what the frame's columns say.
    """
    from labkit import profile

    _check_long(frame)
    _check_metric(metric)
    results = final_results(frame, metrics=(metric,), split=split)
    grid = [c for c in results.columns if c not in (*_RUN_COLUMNS, metric)]
    groups = results.groupby(grid, dropna=False, sort=False) if grid else [((), results)]
    seeds = [len(g) for _, g in groups]
    spreads = [float(np.std(g[metric].dropna(), ddof=1)) for _, g in groups
               if g[metric].notna().sum() >= 2]

    active = profile.active()
    sizes = [train_size] if train_size is not None else \
        _column_values(frame, ("train_size", "n_train", "subset"))
    epoch_counts = [epochs] if epochs is not None else \
        _column_values(frame, ("epochs", "num_epochs")) or [_epochs_recorded(frame, split)]
    diverged = results[results["diverged"]]
    name = f"{_METRIC_NAMES.get(metric, metric)} {_SPLIT_NAMES.get(split, split)}"

    bullets = [
        f"Profil : {_PROFILE_NAMES.get(active, active)}.",
        f"Graines par configuration : {_range_text(seeds)} ({_count(len(seeds), 'configuration')}, "
        f"{_count(len(results), 'entraînement')}).",
        f"Exemples d'entraînement : {_range_text(sizes) if sizes else 'non indiqué'}.",
        f"Époques : {_range_text(epoch_counts)}.",
    ]
    if spreads:
        show = (lambda v: fmt.pp(v, 1, sign=False)) if _is_fraction(metric) \
            else (lambda v: fmt.num(v, fmt.auto_digits(v)))
        bullets.append(
            f"Dispersion entre graines ({name}, écart type) : médiane "
            f"{show(float(np.median(spreads)))}, au plus {show(max(spreads))}."
        )
    else:
        bullets.append(f"Dispersion entre graines ({name}) : non mesurable (une seule graine).")
    if len(diverged):
        configs = sorted({_selection_label({c: row[c] for c in grid})
                          for _, row in diverged.iterrows()})
        bullets.append(f"Entraînements divergés : {len(diverged)} sur {len(results)} "
                       f"({' ; '.join(configs[:5])}{' ; …' if len(configs) > 5 else ''}).")
    else:
        bullets.append(f"Entraînements divergés : aucun sur {len(results)}.")
    facts = {
        "profile": active,
        "seeds": sorted(set(seeds)),
        "configurations": len(seeds),
        "runs": len(results),
        "train_size": sizes,
        "epochs": epoch_counts,
        "spread_median": float(np.median(spreads)) if spreads else math.nan,
        "spread_max": max(spreads) if spreads else math.nan,
        "diverged": len(diverged),
    }
    return LimitsFacts("\n".join(f"- {b}" for b in bullets) + "\n", facts)


# --------------------------------------------------------------------------- parameters


class ParameterCountMismatch(AssertionError):
    """Keras and the course formula disagree: the formula or the model is wrong."""


class ParamTable(Markdown):
    """The parameter table (Markdown) with ``rows``, ``total`` and Keras' ``summary`` text."""

    def __init__(self, text: str, rows: list[dict], total: int, summary: str):
        super().__init__(text)
        self.rows, self.total, self.summary = rows, total, summary


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _summary_text(model) -> str:
    """Keras' ``summary()`` as plain text (no colour codes), captured, not printed."""
    from IPython.utils.capture import capture_output

    parts: list[str] = []
    # Keras 3 calls print_fn once with the whole text, rendered by rich without a colour
    # system; in a Jupyter kernel rich also displays an empty <pre>, which we swallow.
    with capture_output(stdout=False, stderr=False, display=True):
        model.summary(print_fn=lambda text, *args, **kwargs: parts.append(str(text)))
    text = _ANSI.sub("", "\n".join(parts)).rstrip()
    if "Total params" not in text:
        raise RuntimeError(f"unexpected summary() output from Keras:\n{text}")
    return text


def _counted_layers(model) -> list:
    """Layers the by-hand count has a row for, in order (what ``architecture`` reads)."""
    import keras

    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Normalization, keras.layers.Dense))]


def param_table(model) -> ParamTable:
    """Per layer: the formula, the count by hand, Keras' count; raise if they differ.

    The count by hand comes from the architecture alone
    (:func:`labkit.models.layer_counts_by_hand`), so an inequality means the
    course formula or the model is not what the chapter says — an error, not a
    footnote.  Keras' own ``summary()`` follows in a code block.
    """
    from labkit import models

    try:
        built = bool(model.built and model.inputs)
    except (AttributeError, ValueError):
        built = False
    if not built:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} is not built: start it with "
            "keras.Input(shape=(784,)) (or call model.build) so its parameters exist"
        )
    by_hand = models.layer_counts_by_hand(**models.architecture(model))
    layers = _counted_layers(model)
    if len(layers) != len(by_hand):
        raise ParameterCountMismatch(
            f"{len(layers)} counted layers in the model but {len(by_hand)} rows by hand"
        )
    rows = []
    for layer, count in zip(layers, by_hand):
        keras_count = int(layer.count_params())
        if keras_count != count.total:
            raise ParameterCountMismatch(
                f"layer {layer.name!r}: {count.total} parameters by hand ({count.formula}) "
                f"but {keras_count} for Keras"
            )
        formula = count.formula
        if count.non_trainable:
            formula += f" (dont {fmt.num(count.non_trainable)} non entraînables)"
        rows.append({"layer": layer.name, "formula": formula,
                     "by_hand": count.total, "keras": keras_count})
    total_hand = sum(r["by_hand"] for r in rows)
    total_keras = int(model.count_params())
    if total_hand != total_keras:
        raise ParameterCountMismatch(
            f"total: {total_hand} parameters by hand but {total_keras} for Keras "
            "(a layer with weights is missing from the count)"
        )
    summary = _summary_text(model)
    lines = ["| Couche | Formule | Paramètres (à la main) | Paramètres (Keras) |",
             "|:---|:---|---:|---:|"]
    lines += [f"| `{r['layer']}` | {r['formula']} | {fmt.num(r['by_hand'])} | "
              f"{fmt.num(r['keras'])} |" for r in rows]
    lines.append(f"| **Total** | | **{fmt.num(total_hand)}** | **{fmt.num(total_keras)}** |")
    text = ("\n".join(lines)
            + f"\n\nTotal à la main = total Keras = {fmt.num(total_hand)}.\n\n"
            + "```text\n" + summary + "\n```\n")
    return ParamTable(text, rows, total_hand, summary)
