"""The recipes' data sets, row by row: where each comes from and how a source row becomes a verl row.

Sources (``data_source`` in brackets; hub ids are the defaults, any local json/jsonl/parquet file
with the same columns can replace them):

* training sets: MATH [``math``] (``DigitalLearningGmbH/MATH-lighteval``: ``problem``, ``solution``)
  and MedQA [``medqa``] (``Neelectric/MedQA-USMLE``: ``question``, ``options`` {A..D} or {A..E} for
  the five-option edition, ``answer_idx``), each with a ``train`` and a ``test`` split;
* evaluation sets (written as ``test``): GSM-HARD [``gsm_hard``] (``reasoning-machines/gsm-hard``:
  ``input``, ``target``), AMC23 [``amc23``] (``math-ai/amc23``: ``question``, ``answer``), MedMCQA
  [``medmcqa``] (``openlifescienceai/medmcqa`` validation split, as its test split has no answers:
  ``question``, ``opa``..``opd``, ``cop`` 0-3) and MMLU-Medical [``mmlu_medical``] (``cais/mmlu``,
  test split of the six medical subjects: ``question``, ``choices``, ``answer`` 0-3, ``subject``).

A row that cannot be right (empty question, missing answer, options not lettered as the source has
them, ...) raises :class:`BadRow` with the reason. The prompt templates are :func:`math_prompt` and
:func:`choice_prompt` (quoted in ``docs/data.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tempo_verl.recipes.rewards.choice import ALL_LETTERS
from tempo_verl.recipes.rewards.numeric import to_float
from tempo_verl.recipes.rewards.text import extract_boxed

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def choice_instruction(letters: str) -> str:
    """The instruction of a multiple-choice prompt whose options have ``letters`` (e.g. ``"ABCD"``)."""
    offered = ", ".join(letters[:-1]) + " or " + letters[-1]
    return (
        "Answer the following multiple-choice question. Think step by step, then give the letter of the "
        f"correct option ({offered}) as your final answer within \\boxed{{}}, for example \\boxed{{C}}."
    )


#: The instruction of the four-option sets (quoted in docs/data.md).
CHOICE_INSTRUCTION = choice_instruction("ABCD")

MMLU_MEDICAL_SUBJECTS: tuple[str, ...] = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)


def math_prompt(problem: str) -> str:
    """The user message of a math row: the problem, a blank line, :data:`MATH_INSTRUCTION`."""
    return f"{problem.strip()}\n\n{MATH_INSTRUCTION}"


def choice_prompt(question: str, options: Sequence[str]) -> str:
    """The user message of a multiple-choice row: instruction, question, then ``A. ...``, ``B. ...``, one per option."""
    letters = ALL_LETTERS[: len(options)]
    lines = [f"{letter}. {text.strip()}" for letter, text in zip(letters, options, strict=True)]
    return f"{choice_instruction(letters)}\n\nQuestion: {question.strip()}\n\n" + "\n".join(lines)


class BadRow(ValueError):
    """A source row that cannot become a training/evaluation row; the message is the reason."""


@dataclass(frozen=True)
class Converted:
    """One source row, converted: the user message, the ground truth and the option texts (or ())."""

    content: str
    ground_truth: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """One data set.

    Attributes:
        name: the ``data_source`` written in its rows (and its folder under the output directory).
        hub_id: the Hugging Face hub id it is loaded from by default.
        splits: our split name -> the hub split read for it.
        ability: the ``ability`` column.
        convert: source row -> :class:`Converted`, or :class:`BadRow`.
        hub_configs: hub configurations to load and concatenate (None: the default one).
        keep: optional filter for rows of a local file (e.g. MMLU's medical subjects); rows it drops
            are counted as ``skipped``, not bad.
    """

    name: str
    hub_id: str
    splits: Mapping[str, str]
    ability: str
    convert: Callable[[Mapping[str, Any]], Converted]
    hub_configs: tuple[str | None, ...] = (None,)
    keep: Callable[[Mapping[str, Any]], bool] | None = None


# --------------------------------------------------------------------------------------------
# Field helpers
# --------------------------------------------------------------------------------------------


def _text(record: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = record.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            text = str(value).strip()
            if text:
                return text
    return ""


def _question(record: Mapping[str, Any], *keys: str) -> str:
    question = _text(record, *keys)
    if not question:
        raise BadRow("empty question")
    return question


def _number_text(value: Any) -> str:
    """A numeric answer as text: ``27`` for 27.0, ``3.3333333333333335`` for 10/3; other text stripped.

    Numbers beyond float's range (a 400-digit integer, ``1e999``) are a bad row, never an overflow.
    """
    if isinstance(value, bool) or value is None:
        raise BadRow("missing answer")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise BadRow("answer not a finite number") from None
        if math.isnan(number):
            raise BadRow("missing answer")
        if not math.isfinite(number):
            raise BadRow("answer not a finite number")
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return repr(number)
    text = str(value).strip()
    if not text:
        raise BadRow("missing answer")
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return text
    return _number_text(number)


def _options(options: Any, counts: Sequence[int]) -> tuple[str, ...]:
    """Option texts in letter order from ``{"A": ..}``, ``[{"key": "A", "value": ..}]`` or a list of texts.

    The letters must be A, B, ... without gaps and their number one of ``counts`` (4, or 4 or 5);
    every text non-empty. Otherwise :class:`BadRow`.
    """
    reason = "options not " + " or ".join(f"A-{ALL_LETTERS[n - 1]}" for n in counts)
    if isinstance(options, str) or options is None:
        raise BadRow(reason)
    try:
        if isinstance(options, Mapping):
            keyed = {str(k).strip().upper(): v for k, v in options.items() if v is not None}
        else:
            items = list(options)
            if items and all(isinstance(item, Mapping) for item in items):
                keyed = {str(item.get("key", "")).strip().upper(): item.get("value") for item in items}
            else:
                keyed = dict(zip(ALL_LETTERS, items, strict=False)) if len(items) <= len(ALL_LETTERS) else {}
    except TypeError:
        raise BadRow(reason) from None
    letters = ALL_LETTERS[: len(keyed)]
    if len(keyed) not in counts or set(keyed) != set(letters):
        raise BadRow(reason)
    texts = tuple(str(keyed[letter]).strip() if keyed[letter] is not None else "" for letter in letters)
    if not all(texts):
        raise BadRow(reason)
    return texts


def _letter(value: Any, letters: str, *, zero_based_index: bool) -> str:
    """An answer given as one of ``letters`` or (``zero_based_index``) as its position 0, 1, ..."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise BadRow("missing answer")
    wrong = f"answer not {letters[0]}-{letters[-1]}"
    if zero_based_index and not isinstance(value, str):
        try:
            position = int(value)
        except (TypeError, ValueError, OverflowError):
            raise BadRow(wrong) from None
        if position < 0:
            raise BadRow("missing answer")  # MedMCQA marks unanswered rows with -1
        if position >= len(letters) or position != value:
            raise BadRow(wrong)
        return letters[position]
    letter = str(value).strip().upper()
    if not letter:
        raise BadRow("missing answer")
    if zero_based_index and letter.isdigit() and len(letter) < 4:
        return _letter(int(letter), letters, zero_based_index=True)
    if len(letter) != 1 or letter not in letters:
        raise BadRow(wrong)
    return letter


# --------------------------------------------------------------------------------------------
# Per-source row conversion
# --------------------------------------------------------------------------------------------


def _convert_math(record: Mapping[str, Any]) -> Converted:
    problem = _question(record, "problem")
    answer = _text(record, "answer")  # some MATH copies carry it; the lighteval one has only "solution"
    if not answer:
        boxed = extract_boxed(_text(record, "solution"))
        answer = boxed[-1] if boxed else ""
    if not answer:
        raise BadRow("missing answer")
    return Converted(math_prompt(problem), answer)


def _convert_medqa(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question")
    options = _options(record.get("options"), (4, 5))
    letters = ALL_LETTERS[: len(options)]
    raw = record.get("answer_idx")
    if raw is None or not str(raw).strip():
        # no letter: accept the answer's text when it is exactly one option
        answer_text = _text(record, "answer")
        if not answer_text:
            raise BadRow("missing answer")
        matches = [letter for letter, text in zip(letters, options, strict=True) if text == answer_text]
        if len(matches) != 1:
            raise BadRow("missing answer")
        raw = matches[0]
    return Converted(choice_prompt(question, options), _letter(raw, letters, zero_based_index=False), options)


def _convert_medmcqa(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question")
    options = _options([record.get(key) for key in ("opa", "opb", "opc", "opd")], (4,))
    answer = _letter(record.get("cop"), "ABCD", zero_based_index=True)
    return Converted(choice_prompt(question, options), answer, options)


def _convert_mmlu(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question")
    options = _options(record.get("choices"), (4,))
    answer = _letter(record.get("answer"), "ABCD", zero_based_index=True)
    return Converted(choice_prompt(question, options), answer, options)


def _convert_gsm_hard(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "input")
    target = record.get("target")
    answer = _number_text(target)
    if to_float(answer) is None:
        raise BadRow("answer not a number")
    return Converted(math_prompt(question), answer)


def _convert_amc23(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question", "problem")
    return Converted(math_prompt(question), _number_text(record.get("answer")))


def _is_medical_subject(record: Mapping[str, Any]) -> bool:
    subject = record.get("subject")
    return subject is None or str(subject).strip() in MMLU_MEDICAL_SUBJECTS


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source("math", "DigitalLearningGmbH/MATH-lighteval", {"train": "train", "test": "test"}, "math", _convert_math),
        Source("medqa", "Neelectric/MedQA-USMLE", {"train": "train", "test": "test"}, "medicine", _convert_medqa),
        Source("gsm_hard", "reasoning-machines/gsm-hard", {"test": "train"}, "math", _convert_gsm_hard),
        Source("amc23", "math-ai/amc23", {"test": "test"}, "math", _convert_amc23),
        Source("medmcqa", "openlifescienceai/medmcqa", {"test": "validation"}, "medicine", _convert_medmcqa),
        Source(
            "mmlu_medical",
            "cais/mmlu",
            {"test": "test"},
            "medicine",
            _convert_mmlu,
            hub_configs=MMLU_MEDICAL_SUBJECTS,
            keep=_is_medical_subject,
        ),
    )
}
TRAIN_SETS: tuple[str, ...] = ("math", "medqa")
EVAL_SETS: tuple[str, ...] = ("gsm_hard", "amc23", "medmcqa", "mmlu_medical")
