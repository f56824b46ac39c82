"""French numbers for the prose: ``97,5 %``, ``235 146``, ``0,53 ± 0,01``, ``−1,2 pt``.

Grouping, decimal comma and the narrow no-break space before ``%`` come from babel's
``fr_FR`` locale (CLDR); kept by hand: the minus sign U+2212, which CLDR's French
lacks, and the no-break space U+00A0 between a number and its unit or ``±``.

Each function returns a :class:`Text`, a string that displays as Markdown: Quarto
inserts an inline value's Markdown as it is, whereas the plain-text form of a Python
string would show its narrow spaces as ``\\u202f``.
"""

from __future__ import annotations

import math
import re

import numpy as np
from babel.numbers import format_decimal

__all__ = ["Text", "markdown", "num", "pct", "pm", "pt", "rate", "exact", "power_of_ten", "seconds", "NBSP", "NNBSP", "MINUS"]

NBSP, NNBSP, MINUS = "\u00a0", "\u202f", "\u2212"
MISSING = "—"


class Text(str):
    """A string shown as itself by Quarto and Jupyter (its Markdown form), with ``$`` escaped:
    in Markdown two dollars in one paragraph open a formula (``k$), MAE (k$``)."""

    def _repr_markdown_(self) -> str:
        return markdown(self)


def markdown(text: str) -> str:
    """``text`` safe in Markdown prose or a table cell: each ``$`` not yet escaped becomes ``\\$``."""
    return re.sub(r"(?<!\\)\$", r"\\$", str(text))


def _finite(x) -> float | None:
    if x is None or isinstance(x, (str, bytes, bool)):
        if x is None:
            return None
        raise TypeError(f"expected a number, got {x!r}")
    value = float(x)
    return value if math.isfinite(value) else None


def _decimal(value: float, digits: int, sign: bool = False) -> str:
    if not isinstance(digits, int) or not 0 <= digits <= 12:
        raise ValueError(f"digits must be an integer from 0 to 12, got {digits!r}")
    text = format_decimal(abs(value), format="#,##0" + ("." + "0" * digits if digits else ""), locale="fr_FR")
    if text.strip("0,\u202f") == "":  # rounds to zero: no sign
        return text
    return (MINUS if value < 0 else "+" if sign else "") + text


def num(x, digits: int | None = None) -> Text:
    """``0,53``, ``235 146``: ``digits`` after the comma (2 for a float, 0 for an integer)."""
    value = _finite(x)
    if digits is None:
        digits = 0 if isinstance(x, (int, np.integer)) else 2
    return Text(MISSING if value is None else _decimal(value, digits))


def pct(x, digits: int = 1) -> Text:
    """``97,5 %`` from the fraction 0.975."""
    value = _finite(x)
    return Text(MISSING if value is None else _decimal(100 * value, digits) + NNBSP + "%")


def pt(x, digits: int = 1, sign: bool = True) -> Text:
    """``+1,2 pt``: a difference of two fractions in percentage points (not a percentage)."""
    value = _finite(x)
    return Text(MISSING if value is None else _decimal(100 * value, digits, sign) + NBSP + "pt")


def exact(value: float) -> str:
    """A value with the decimals it has (six significant digits at most): ``0,003``, ``1 200``."""
    text = np.format_float_positional(float(f"{value:.6g}"), trim="-")
    return _decimal(value, len(text.split(".")[1]) if "." in text else 0)


_SUPERSCRIPT = str.maketrans(f"-{MINUS}0123456789", "⁻⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(value: float) -> str:
    """``10⁻⁵``, ``2,5·10⁻⁵``, ``−3·10⁻⁵``: a value as a power of ten, its mantissa exact."""
    mantissa, exponent = f"{value:.6e}".split("e")
    mantissa = exact(float(mantissa))
    if not int(exponent):
        return mantissa
    power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
    return power if mantissa == "1" else f"{mantissa}·{power}".replace(f"{MINUS}1·", MINUS)


def rate(x) -> Text:
    """A hyper-parameter as written in the prose: ``0,001``, ``1``, ``2,5·10⁻⁵`` for tiny values."""
    value = _finite(x)
    if value is None:
        return Text(MISSING)
    return Text(power_of_ten(value) if value and abs(value) < 1e-4 else exact(value))


def first_digit(size: float | None, scale: float = 1, default: int = 1) -> int:
    """Decimals (0 to 4) that show the first significant digit of ``scale × |size|``: a spread
    sets the decimals of its mean, a yardstick those of a gap; ``default`` for none or zero."""
    if size is None or not math.isfinite(size) or size == 0:
        return default
    return min(max(-math.floor(math.log10(scale * abs(size))), 0), 4)


def pm_digits(values, percent: bool = False) -> int:
    """The decimals :func:`pm` gives these values by default (a gap between two of them is
    written with at least as many, so that it matches the two numbers it separates)."""
    values = np.asarray(values, dtype=float).ravel()
    spread = float(values.std(ddof=1)) if values.size > 1 and np.isfinite(values).all() else None
    return first_digit(spread, 100 if percent else 1, default=1 if percent else 2)


def pm(values, digits: int | None = None, percent: bool = False) -> Text:
    """``97,8 ± 0,1 %``: the mean of per-seed values ± their standard deviation (n − 1).

    The spread sets the decimals (its first significant digit).  A NaN (a diverged
    run) makes the mean ``divergé``; one value prints alone.
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        raise ValueError("pm() needs at least one value")
    if np.isnan(values).any():
        return Text(f"divergé ({int(np.isnan(values).sum())}/{values.size} graines)")
    scale = 100 if percent else 1
    spread = float(values.std(ddof=1)) if values.size > 1 else None
    digits = pm_digits(values, percent) if digits is None else digits
    text = _decimal(scale * values.mean(), digits)
    if spread is not None:
        text += f"{NBSP}±{NBSP}{_decimal(scale * spread, digits)}"
    return Text(text + (NNBSP + "%" if percent else ""))


def seconds(s) -> Text:
    """``0,31 s``, ``4,2 s``, ``42 s``, ``3 min 20 s``, ``2 h 53 min``: precision follows the size."""
    value = _finite(s)
    if value is None:
        return Text(MISSING)
    if value < 10:
        return Text(_decimal(value, 2 if value < 1 else 1) + NBSP + "s")
    if value >= 3600:
        hours, minutes = divmod(round(value / 60), 60)
        return Text(f"{hours}{NBSP}h {minutes:02d}{NBSP}min")
    minutes, rest = divmod(round(value), 60)
    if not minutes:
        return Text(f"{rest}{NBSP}s")
    return Text(f"{minutes}{NBSP}min" + (f" {rest}{NBSP}s" if rest else ""))
