"""Rule-based rewards for the TEMPO recipes, usable as verl's ``reward.custom_reward_function``.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)`` once per
response, in a worker thread of its reward loop, without catching exceptions. :func:`compute_score`
dispatches on ``data_source`` to one scoring rule, one module each:

* ``math``, ``amc23``: :mod:`.equivalence` (math-verify, run by the helper process of :mod:`.pool`);
* ``gsm_hard``: :mod:`.numeric` (a number against a float target, with a tolerance);
* ``medqa``, ``medmcqa``, ``mmlu_medical``: :mod:`.choice` (the option letter, A-E for five options).

All read the response's last stated answer (:mod:`.text`). Every call returns 0.0 or 1.0 and never
raises on model output (any text, any size, not even a string). Data errors raise ``ValueError``: an
unknown ``data_source``, a ground truth that cannot be right (a letter the options do not have, a
GSM-HARD target that is not a finite number, an empty math answer), a bad ``TEMPO_REWARD_MATH_*``
setting. Those should stop a run, not score 0.

The bound: a call returns within ``TEMPO_REWARD_MATH_TIMEOUT`` seconds (default 10; valid (0, 3600])
end to end, including the wait for the helper; a math check not answered by then scores 0.0.
``TEMPO_REWARD_MATH_WORKERS`` (default ``min(4, cpu count)``, valid 1..256) sets how many checks run
at once. Numeric and multiple-choice scoring take milliseconds. See ``docs/data.md``.

Use it from verl with::

    reward.custom_reward_function.path=pkg://tempo_verl.recipes.rewards reward.custom_reward_function.name=compute_score
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tempo_verl.recipes.rewards.choice import ALL_LETTERS, choice_letters, option_texts, score_multiple_choice
from tempo_verl.recipes.rewards.equivalence import score_math
from tempo_verl.recipes.rewards.numeric import score_numeric, to_float

__all__ = ["SOURCE_KINDS", "compute_score", "reward_kind"]

#: The reward each ``data_source`` written by :mod:`tempo_verl.recipes.data` gets (and a few hub-id aliases).
SOURCE_KINDS: dict[str, str] = {
    "math": "math",
    "amc23": "math",
    "gsm_hard": "numeric",
    "medqa": "choice",
    "medmcqa": "choice",
    "mmlu_medical": "choice",
    # the hub ids, for parquet files written by other tools with ``data_source`` = hub id
    "DigitalLearningGmbH/MATH-lighteval": "math",
    "lighteval/MATH": "math",
    "math-ai/amc23": "math",
    "reasoning-machines/gsm-hard": "numeric",
    "Neelectric/MedQA-USMLE": "choice",
    "openlifescienceai/medmcqa": "choice",
    "cais/mmlu": "choice",
}


def reward_kind(data_source: Any) -> str:
    """``"math"``, ``"numeric"`` or ``"choice"`` for a ``data_source``.

    Raises:
        ValueError: an unknown data source (names the known ones).
    """
    kind = SOURCE_KINDS.get(str(data_source))
    if kind is None:
        known = ", ".join(sorted(k for k in SOURCE_KINDS if "/" not in k))
        raise ValueError(
            f"tempo_verl.recipes.rewards: unknown data_source {data_source!r}; known: {known} (or their hub ids). "
            "Write the data with `tempo-verl data ...` or set the parquet's data_source column to one of these."
        )
    return kind


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> float:
    """verl's reward entry point: 1.0 when the response's final answer is right, else 0.0.

    Args:
        data_source: the row's ``data_source`` (see :data:`SOURCE_KINDS`).
        solution_str: the decoded response (anything else scores 0.0).
        ground_truth: ``reward_model.ground_truth`` of the row.
        extra_info: the row's ``extra_info``; multiple choice reads ``options`` (the option texts in
            letter order): they set the letters offered, let an answer name an option by its text and
            check a letter's text ("C. Gout" where C is another option scores 0). Without them, A-D
            (or up to the ground truth's letter) and letters only.
        **kwargs: whatever else verl passes (ignored).

    Raises:
        ValueError: unknown ``data_source``, an impossible ground truth, a bad ``TEMPO_REWARD_MATH_*``
            setting (never for model output).
    """
    kind = reward_kind(data_source)
    if kind == "math":
        if isinstance(ground_truth, float) and ground_truth.is_integer():
            ground_truth = int(ground_truth)
        gold = "" if ground_truth is None else str(ground_truth).strip()
        if not gold:
            raise ValueError(f"reward_model.ground_truth of a {data_source!r} row is empty.")
        return score_math(solution_str, gold)
    if kind == "numeric":
        target = to_float(ground_truth)
        if target is None:
            raise ValueError(
                f"reward_model.ground_truth of a {data_source!r} row must be a finite number, got {ground_truth!r}."
            )
        return score_numeric(solution_str, target)
    texts = option_texts(extra_info.get("options") if isinstance(extra_info, Mapping) else None)
    gold = str(ground_truth).strip().upper()
    letters = choice_letters(texts, gold)
    if len(gold) != 1 or gold not in letters:
        offered = f"{', '.join(letters)} (its {len(texts)} options)" if len(texts) >= 2 else ", ".join(ALL_LETTERS)
        raise ValueError(
            f"reward_model.ground_truth of a {data_source!r} row must be one of {offered}, got {ground_truth!r}."
        )
    return score_multiple_choice(solution_str, gold, texts)
