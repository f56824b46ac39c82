"""French formatting of the numbers a chapter's prose quotes inline (`97,5 %`, `235 146`).

Quarto inserts an inline value's text as it is, so every number the prose cites
goes through one of these functions and reads the same everywhere.

Typography (French, as CLDR's ``fr`` locale — ICU, ``Intl.NumberFormat("fr-FR")``):

- decimal comma: ``0,53``;
- digits grouped by three with a narrow no-break space U+202F: ``235 146``;
- a narrow no-break space U+202F before ``%``: ``97,5 %``;
- a no-break space U+00A0 between a number and a unit or an operator
  (``3 min 20 s``, ``+1,2 pt``, ``53 000 $``, ``0,53 ± 0,01``);
- the minus sign U+2212 (``−0,12``), not a hyphen;
- a value that is missing, NaN or infinite prints as ``—`` (``missing=``
  lets the caller say ``"divergé"`` instead where that is what it means).

Both spaces forbid a line break, so a number never leaves its unit behind.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "NNBSP",
    "NBSP",
    "MINUS",
    "MISSING",
    "DIVERGED",
    "num",
    "pct",
    "signed",
    "pp",
    "seconds",
    "money",
    "pm",
    "auto_digits",
]

#: Narrow no-break space: groups of digits, before ``%``.
NNBSP = "\u202f"
#: No-break space: between a number and its unit or an operator.
NBSP = "\u00a0"
#: The minus sign of French (and all good) typography.
MINUS = "\u2212"
#: What a missing, NaN or infinite value prints as.
MISSING = "—"
#: The word for a run whose value blew up, for callers to pass as ``missing=``.
DIVERGED = "divergé"


def _as_float(x) -> float | None:
    """``x`` as a finite float, or ``None`` when it should print as missing."""
    if x is None:
        return None
    if isinstance(x, bool) or isinstance(x, (str, bytes)):
        raise TypeError(f"expected a number, got {x!r}")
    try:
        value = float(x)
    except (TypeError, ValueError):
        if type(x).__name__ in ("NAType", "NaTType"):  # pandas' missing scalars
            return None
        raise TypeError(f"expected a number, got {x!r}") from None
    return value if math.isfinite(value) else None


def _check_digits(digits) -> int:
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 12:
        raise ValueError(f"digits must be an integer from 0 to 12, got {digits!r}")
    return digits


def _plain(value: float, digits: int, sign: bool = False) -> str:
    """``value`` with a decimal comma, grouped thousands and a true minus sign."""
    text = f"{abs(value):,.{digits}f}".replace(",", NNBSP).replace(".", ",")
    if not any(ch in "123456789" for ch in text):  # rounds to zero: no sign at all
        return text
    if value < 0:
        return MINUS + text
    return "+" + text if sign else text


def num(x, digits: int | None = None, *, missing: str = MISSING) -> str:
    """``0,53``, ``235 146``: a plain number, ``digits`` after the comma.

    ``digits`` defaults to 2 for a float and 0 for an integer (a parameter count
    has no decimals).
    """
    value = _as_float(x)
    if digits is None:
        digits = 0 if isinstance(x, numbers.Integral) else 2
    digits = _check_digits(digits)
    return missing if value is None else _plain(value, digits)


def pct(x, digits: int = 1, *, missing: str = MISSING) -> str:
    """``97,5 %`` from the fraction 0.975 (like Python's ``f"{x:.1%}"``)."""
    value = _as_float(x)
    digits = _check_digits(digits)
    return missing if value is None else _plain(100 * value, digits) + NNBSP + "%"


def signed(x, digits: int = 2, *, missing: str = MISSING) -> str:
    """``+0,53`` / ``−0,53``: a difference, its sign always shown (none for zero)."""
    value = _as_float(x)
    digits = _check_digits(digits)
    return missing if value is None else _plain(value, digits, sign=True)


def pp(x, digits: int = 1, *, sign: bool = True, missing: str = MISSING) -> str:
    """``+1,2 pt``: a difference of two fractions (0.012) in percentage points.

    A gap between two accuracies is not a percentage of either, hence "pt";
    ``sign=False`` prints a size (a spread, a threshold) without ``+``.
    """
    value = _as_float(x)
    digits = _check_digits(digits)
    if value is None:
        return missing
    return _plain(100 * value, digits, sign=sign) + NBSP + "pt"


def seconds(s, *, missing: str = MISSING) -> str:
    """``0,31 s``, ``4,2 s``, ``42 s``, ``3 min 20 s``, ``1 h 05 min``: a duration.

    The precision follows the size: what a reader compares is the order of
    magnitude, and "200 s" reads worse than "3 min 20 s".
    """
    value = _as_float(s)
    if value is None:
        return missing
    if value < 0:
        raise ValueError(f"a duration cannot be negative, got {s!r}")
    if value < 1:
        return _plain(value, 2) + NBSP + "s"
    if value < 10:
        return _plain(value, 1) + NBSP + "s"
    if round(value) < 60:
        return f"{round(value)}{NBSP}s"
    if round(value) < 3600:
        minutes, rest = divmod(round(value), 60)
        return f"{minutes}{NBSP}min {rest}{NBSP}s" if rest else f"{minutes}{NBSP}min"
    hours, minutes = divmod(round(value / 60), 60)
    return f"{hours}{NBSP}h {minutes:02d}{NBSP}min" if minutes else f"{hours}{NBSP}h"


def money(x, digits: int = 0, *, missing: str = MISSING) -> str:
    """``53 000 $``: an amount in dollars (California prices), symbol after, as in French."""
    value = _as_float(x)
    digits = _check_digits(digits)
    return missing if value is None else _plain(value, digits) + NBSP + "$"


def auto_digits(spread, percent: bool = False, default: int | None = None) -> int:
    """Decimals that show the first significant digit of ``spread``.

    ``0.013`` → 2, ``0.003`` → 3 (``percent``: 0.003 = 0,3 % → 1). Without a
    usable spread (missing, zero) it is ``default`` (1 for percents, 2 otherwise).
    """
    value = _as_float(spread)
    if default is None:
        default = 1 if percent else 2
    if value is None or value <= 0:
        return default
    scaled = 100 * value if percent else value
    return min(max(-math.floor(math.log10(scaled)), 0), 4)


def pm(mean, spread, digits: int | None = None, *, percent: bool = False,
       missing: str = MISSING) -> str:
    """``0,53 ± 0,01`` (or ``97,5 ± 0,3 %`` with ``percent``): a mean and its spread.

    ``digits`` defaults to :func:`auto_digits` of the spread, so the spread shows
    one significant digit and the mean no more decimals than that.  Without a
    measurable spread (one seed: NaN) only the mean is printed.
    """
    if digits is None:
        digits = auto_digits(spread, percent)
    digits = _check_digits(digits)
    m, s = _as_float(mean), _as_float(spread)
    if m is None:
        return missing
    scale = 100 if percent else 1
    text = _plain(scale * m, digits)
    if s is not None:
        text += f"{NBSP}±{NBSP}" + _plain(scale * abs(s), digits)
    return text + (NNBSP + "%" if percent else "")


def _inline_strings_as_markdown() -> None:
    """Let Quarto insert inline strings as they are.

    Quarto inserts an inline value's ``text/plain`` form, a Python string's
    repr: its quotes are stripped but its escapes stay, so the narrow no-break
    space of ``97,5 %`` would read ``97,5\\u202f%`` on the page
    (``asEscapedMarkdown`` in quarto-cli's ``jupyter-inline.ts``).  A
    ``text/markdown`` form is inserted verbatim, so in a kernel every string
    also offers itself as markdown.  Done on import: every chapter imports
    ``fmt`` in its set-up cell.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "display_formatter"):
        shell.display_formatter.formatters["text/markdown"].for_type(str, lambda text: text)


_inline_strings_as_markdown()
