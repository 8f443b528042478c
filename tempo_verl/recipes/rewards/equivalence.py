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

from tempo_verl.recipes.rewards.pool import check_equivalent
from tempo_verl.recipes.rewards.text import answer_part, declarations

#: Without a stated answer, math-verify reads this many characters of the response's end.
MATH_WINDOW_CHARS = 1500

_PERCENT_RE = re.compile(r"\\?%")
_FORMULA_RE = re.compile(r"[\d$\\]")


def _compact(text: str) -> str:
    return re.sub(r"\s+|\$", "", text)


def final_math_answer(solution_str: Any) -> str:
    """What math-verify is asked about: ``\\boxed{<the last stated answer>}``, a phrase's tail, or the window.

    ``""`` when the response is empty (or not a string).
    """
    text = answer_part(solution_str)
    if not text.strip():
        return ""
    stated = [d for d in declarations(text) if d.kind != "phrase" or _FORMULA_RE.search(d.content)]
    if not stated:
        return _PERCENT_RE.sub("", text[-MATH_WINDOW_CHARS:])
    last = stated[-1]
    content = _PERCENT_RE.sub("", last.content)
    return "\\boxed{" + content + "}" if last.kind != "phrase" else content.rstrip(".")


def score_math(solution_str: Any, ground_truth: str) -> float:
    """1.0 if the response's final answer is mathematically equivalent to ``ground_truth``, else 0.0.

    Never raises on model output; returns within ``TEMPO_REWARD_MATH_TIMEOUT`` seconds (see the pool).
    """
    gold = _PERCENT_RE.sub("", str(ground_truth)).strip() if ground_truth is not None else ""
    prediction = final_math_answer(solution_str)
    if not prediction.strip() or not gold:
        return 0.0
    if prediction.startswith("\\boxed{") and _compact(prediction[7:-1]) == _compact(gold):
        return 1.0
    return check_equivalent("\\boxed{" + gold + "}", prediction)
