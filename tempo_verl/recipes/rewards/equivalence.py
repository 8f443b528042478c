"""Math answers (MATH, AMC23): the final answer is checked for mathematical equivalence by math-verify.

The final answer is the last one the response states (:func:`tempo_verl.recipes.rewards.text.declarations`):
a ``\\boxed{}`` or ``<answer>`` content, or the words after "the (final) answer is" / "Answer:" when they
hold a number or a formula. Without any, math-verify reads the last :data:`MATH_WINDOW_CHARS` characters.
Percent signs are dropped on both sides (``50\\%`` is ``50``, as MATH's own normaliser does); units in
``\\text{}`` are math-verify's to ignore. Equivalence (``1/2``, ``0.5``, ``\\frac{1}{2}``, ``\\dfrac12``,
sets, intervals, ...) is math-verify's, run by :mod:`tempo_verl.recipes.rewards.pool` within its bound;
an answer identical to the reference (spaces and ``$`` aside) is accepted without asking it.
"""

from __future__ import annotations

import re
from typing import Any

from tempo_verl.recipes.rewards.numeric import expand_scale_words
from tempo_verl.recipes.rewards.pool import check_equivalent
from tempo_verl.recipes.rewards.text import Declaration, answer_part, concluded_value, declarations, stated_value

_PERCENT_RE = re.compile(r"\\?%")
_FORMULA_RE = re.compile(r"[\d$\\]")
#: An AMC choice label before the value: ``\textbf{(C)}\ 27``, ``(C) 27``.
_CHOICE_LABEL_RE = re.compile(
    r"^\s*(?:\\text(?:bf)?\s*\{\s*\(?[A-E]\)\s*\}|\\textbf\s*\{\s*[A-E]\s*\}|\(?[A-E]\))"
    r"(?:\s|\\[ ,;:!]|\\q?quad|~)*(?=\S)"
)
#: A ground truth written as a thousands numeral (``1,000``): one number, not a set.
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\\?!?\d{3})+")


def _compact(text: str) -> str:
    return re.sub(r"\s+|\$", "", text)


def _clean(value: str) -> str:
    """A stated value as math-verify reads it in a box: scale words as numerals, no ``%``, no outer ``$``/``\\(``."""
    value = _PERCENT_RE.sub("", expand_scale_words(value)).strip()
    return re.sub(r"^(?:\$|\\\()+|(?:\$|\\\)|\.)+$", "", value).strip()


def _top_level_parts(text: str) -> int:
    """How many comma-separated parts ``text`` has outside brackets (``"2, 3"``: 2; ``"(1, 2)"``: 1)."""
    depth, parts = 0, 1
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        parts += char == "," and depth == 0
    return parts


def _stated(text: str, parts: int) -> list[tuple[Declaration, str]]:
    """(declaration, value) of each stated answer that can be a math answer (of ``parts`` values), in order."""
    found = []
    for declared in declarations(text):
        value = declared.content if declared.kind in ("boxed", "tag") else stated_value(declared.content, parts)
        if declared.kind in ("boxed", "tag") or _FORMULA_RE.search(value):
            found.append((declared, value))
    return found


def final_math_answer(solution_str: Any, ground_truth: str = "") -> str:
    """What math-verify is asked about: ``\\boxed{<the final answer>}``, or ``""`` when the response states none.

    The last stated answer (:func:`_stated`), without an AMC choice label (``\\textbf{(C)}\\ 27`` is
    27) and with scale words as numerals ("3.5 million"). When ``ground_truth`` is a set of k values
    ("2, 3") and the response ends with k or more boxes of one value each, the last k, joined: one box
    per solution; a statement of k values in words ("x = 2 or x = 3") is read as the set. Without any
    statement, the value the response concludes with
    (:func:`~tempo_verl.recipes.rewards.text.concluded_value`); ``""`` when it states none.
    """
    text = answer_part(solution_str)
    if not text.strip():
        return ""
    parts = 1 if _THOUSANDS_RE.fullmatch(ground_truth.strip()) else _top_level_parts(ground_truth)
    stated = _stated(text, parts)
    if not stated:
        value = concluded_value(text, parts)
        return "\\boxed{" + _clean(value) + "}" if value else ""
    content = stated[-1][1]
    if parts > 1 and _top_level_parts(content) == 1:
        run = []
        for declared, value in reversed(stated):
            if declared.kind != "boxed" or _top_level_parts(value) != 1:
                break
            run.insert(0, value)
        if len(run) >= parts:
            content = ", ".join(run[-parts:])
    return "\\boxed{" + _clean(_CHOICE_LABEL_RE.sub("", content)) + "}"


def score_math(solution_str: Any, ground_truth: str) -> float:
    """1.0 if the response's final answer is mathematically equivalent to ``ground_truth``, else 0.0.

    Never raises on model output; returns within ``TEMPO_REWARD_MATH_TIMEOUT`` seconds (see the pool).
    """
    gold = _PERCENT_RE.sub("", str(ground_truth)).strip() if ground_truth is not None else ""
    prediction = final_math_answer(solution_str, gold)
    if not prediction.strip() or not gold:
        return 0.0
    if prediction.startswith("\\boxed{") and _compact(prediction[7:-1]) == _compact(gold):
        return 1.0
    return check_equivalent("\\boxed{" + gold + "}", prediction)
