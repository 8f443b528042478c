"""Numeric answers (GSM-HARD): the response's final number against a float target, with a tolerance.

Numbers are read from model text with bounded work and no arithmetic that can overflow or raise:
``5 x 10^{400}``, ``1e999``, ``inf``, ``nan`` or a 5000-digit numeral are "no number" (scores 0.0).
"""

from __future__ import annotations

import math
import re
from typing import Any

from tempo_verl.recipes.rewards.text import answer_part, concluded_value, declarations, stated_value

#: Relative tolerance for GSM-HARD answers (their targets are float results of Python programs).
NUMERIC_REL_TOL = 1e-4
NUMERIC_ABS_TOL = 1e-6
#: Longest numeral (characters) read as a number; longer ones are no number.
MAX_NUMERAL_CHARS = 400

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_SCIENTIFIC_RE = re.compile(rf"({_NUMBER})\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{{?\s*([-+]?\d{{1,5}})\s*\}}?\s*$")
#: "3.5 million", "2 \\text{ billion}": a numeral and its scale word.
_SCALE_RE = re.compile(r"(\\(?:text|mathrm)\s*\{\s*)?\b(thousand|million|billion|trillion)\b(?(1)\s*\})", re.IGNORECASE)
#: The numeral right before a scale word (read in a short window, so a long run of digits costs no backtracking).
_NUMBER_BEFORE_RE = re.compile(rf"(?<![\d.,])({_NUMBER})\s*$")
_SCALES = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_FRACTIONS = (
    re.compile(r"([-+]?)\\[dt]?frac\s*\{?\s*([-+]?\d+(?:\.\d+)?)\s*\}?\s*\{?\s*(\d+(?:\.\d+)?)\s*\}?\s*$"),
    re.compile(r"([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}"),
    re.compile(r"()(?<![\d.])([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*\.?\s*$"),
)


def to_float(value: Any) -> float | None:
    """A finite float from a number or a numeral (``"1,234.5"``); None for anything else. Never raises."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            return None
    else:
        text = value.strip().replace(",", "") if isinstance(value, str) else ""
        if not text or len(text) > MAX_NUMERAL_CHARS or not _NUMBER_RE.fullmatch(text):
            return None  # float() would also take "inf", "nan", "1_000", " infinity"
        number = float(text)
    return number if math.isfinite(number) else None


def _clean_number_text(text: str) -> str:
    text = text.replace("\u2212", "-").replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    text = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{[^{}]*\}", " ", text)
    text = re.sub(r"\\(?:left|right)", "", text)
    return text.replace("\\%", "").replace("%", "").strip()


def expand_scale_words(text: str) -> str:
    """``text`` with each "<numeral> million" (thousand, billion, trillion) written as one numeral: ``3500000``."""

    pieces, done = [], 0
    for scale in _SCALE_RE.finditer(text):
        number = _NUMBER_BEFORE_RE.search(text, max(done, scale.start() - 40), scale.start())
        base = to_float(number.group(1)) if number else None
        value = None if base is None else _scaled(base, _SCALES[scale.group(2).lower()])
        if number and value is not None:
            pieces += [text[done : number.start()], format(value, ".15g")]
            done = scale.end()
    return "".join(pieces) + text[done:]


def _scaled(base: float, exponent: int) -> float | None:
    """``base * 10**exponent`` when finite (None when it overflows)."""
    if base == 0:
        return 0.0
    if abs(exponent) > 400:
        return None if exponent > 0 else 0.0
    try:
        value = base * 10.0**exponent
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def extract_number(candidate: Any) -> float | None:
    """The number an answer string states: ``1,234.5``, ``-3``, ``\\frac{7}{2}``, ``7/2``, ``1.2\\times10^{5}``.

    ``3.5 million`` is 3500000.

    A string holding several numbers gives its last one. None when there is none or it is not finite.
    Never raises.
    """
    if not isinstance(candidate, str) or not candidate.strip():
        return None
    text = _clean_number_text(expand_scale_words(candidate[-500:]))
    scientific = _SCIENTIFIC_RE.search(text)
    if scientific:
        base = to_float(scientific.group(1))
        return None if base is None else _scaled(base, int(scientific.group(2)))
    for pattern in _FRACTIONS:
        fraction = pattern.search(text)
        if fraction:
            numerator, denominator = to_float(fraction.group(2)), to_float(fraction.group(3))
            if numerator is None or not denominator:
                return None
            value = numerator / denominator
            value = -value if fraction.group(1) == "-" else value
            return value if math.isfinite(value) else None
    numbers = _NUMBER_RE.findall(text)
    return to_float(numbers[-1]) if numbers else None


def _decimals(text: str) -> int:
    match = re.search(r"\.(\d+)\s*$", text.strip())
    return len(match.group(1)) if match else 0


def final_number_text(solution_str: Any) -> str:
    """The text holding the response's final number (``""`` if it states none).

    The last stated answer that holds a digit: a ``\\boxed{}``/``<answer>`` content, or the value a phrase
    or claim states (its first clause's result: "The answer is 630, since ... 35 hours" is 630). Without
    one, the value the response concludes with (:func:`~tempo_verl.recipes.rewards.text.concluded_value`).
    """
    text = answer_part(solution_str)
    for found in reversed(declarations(text)):
        value = found.content if found.kind in ("boxed", "tag") else stated_value(found.content)
        if re.search(r"\d", value):
            return value
    return concluded_value(text)


def score_numeric(solution_str: Any, target: float, rel_tol: float = NUMERIC_REL_TOL) -> float:
    """1.0 if the response's final number matches ``target``, else 0.0.

    The final number is the last one of :func:`final_number_text`. It matches when it is within
    ``rel_tol`` (relative) or :data:`NUMERIC_ABS_TOL` of the target, or when it is the target correctly
    rounded to the two or more decimals it is written with (``12.33`` for ``12.3333...``).
    """
    candidate = final_number_text(solution_str)
    value = extract_number(candidate)
    if value is None:
        return 0.0
    if math.isclose(value, target, rel_tol=rel_tol, abs_tol=NUMERIC_ABS_TOL):
        return 1.0
    numbers = _NUMBER_RE.findall(_clean_number_text(expand_scale_words(candidate)))
    decimals = _decimals(numbers[-1]) if numbers else 0
    if decimals >= 2 and abs(value - target) <= 0.5 * 10.0 ** -min(decimals, 400) * (1 + 1e-9):
        return 1.0
    return 0.0
