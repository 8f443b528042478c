"""Multiple choice (MedQA, MedMCQA, MMLU-Medical): the option letter a response gives as its final answer.

The letters are those of the question's options: A-E for five options, A-D for four (the data
preparation writes the option texts to ``extra_info.options``; rows without them keep A-D, or up to
the ground truth's letter if that is later). See :func:`extract_choice` for the rules and
``docs/data.md`` for a table of examples.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from tempo_verl.recipes.rewards.text import answer_part, declarations

#: Option letters, in order; a question with n options uses the first n.
ALL_LETTERS = "ABCDEFGHIJ"
#: The letters of a row whose options are not known (the four-option sets of the recipes).
DEFAULT_LETTERS = "ABCD"

_MARKUP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|bf|textit)\s*\{([^{}]*)\}")


def option_texts(options: Any) -> list[str]:
    """Option texts in letter order from a list/array or a ``{"A": ...}`` mapping (else ``[]``); never raises."""
    if options is None or isinstance(options, str | bytes):
        return []
    try:
        if isinstance(options, Mapping):
            keyed = {str(key).strip().upper(): value for key, value in options.items()}
            count = next((i for i, letter in enumerate(ALL_LETTERS) if letter not in keyed), len(ALL_LETTERS))
            return [str(keyed[letter] or "") for letter in ALL_LETTERS[:count]]
        return [str(item) if item is not None else "" for item in list(options)[: len(ALL_LETTERS)]]
    except (TypeError, ValueError):
        return []


def choice_letters(options: Sequence[str], ground_truth: str = "") -> str:
    """The letters a question offers: one per option (2 or more), else A-D extended to ``ground_truth``."""
    if len(options) >= 2:
        return ALL_LETTERS[: len(options)]
    last = max(DEFAULT_LETTERS.index("D"), ALL_LETTERS.find(ground_truth))
    return ALL_LETTERS[: last + 1]


@functools.lru_cache(maxsize=16)
def _patterns(letters: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The regexes of one letter set: a declared letter list, the last-line forms."""
    one = f"[{letters}]"
    item = rf"(?:option|choice)?\s*\(?\[?({one})\]?\)?(?![A-Za-z0-9])"
    listed = re.compile(rf"\**\s*{item}((?:\s*(?:,|/|\bor\b|\band\b|&)\s*{item})*)", re.IGNORECASE)
    single = re.compile(rf"(?<![A-Za-z0-9])\(?\[?({one})\]?\)?(?![A-Za-z0-9])", re.IGNORECASE)
    bare = re.compile(rf"(?:option|choice)?\s*\(?({one})\)?\s*[.):]?", re.IGNORECASE)
    labelled = re.compile(rf"(?:option|choice)?\s*\(?({one})\s*[.):]\s*(.+)", re.IGNORECASE)
    return listed, single, bare, labelled


def _norm_option(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()


def _letter_by_text(text: str, options: Sequence[str], letters: str) -> set[str]:
    wanted = _norm_option(text)
    if not wanted:
        return set()
    return {letters[i] for i, option in enumerate(options[: len(letters)]) if option and _norm_option(option) == wanted}


def _letters_declared(text: str, options: Sequence[str], letters: str) -> set[str]:
    """The letters an answer statement (a boxed/tagged content, the words after "answer is") names."""
    listed, single, _, _ = _patterns(letters)
    text = _MARKUP_RE.sub(r"\1", text)
    text = text.replace("$", "").replace("*", "").strip().strip(".:;,!").strip()
    text = re.sub(r"^(?:option|choice|answer)\s*:?\s*", "", text, flags=re.IGNORECASE).strip()
    if not text:
        return set()
    if len(text) == 1 and text.upper() in letters:
        return {text.upper()}
    by_text = _letter_by_text(text, options, letters)
    if by_text:
        return by_text
    match = listed.match(text)
    # a lowercase letter only counts on its own ("(c)"), not as a word ("a combination")
    if match and (match.group(1).isupper() or len(text) <= 3):
        return {match.group(1).upper()} | {found.upper() for found in single.findall(match.group(2))}
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].strip().rstrip(".")
    return _letter_by_text(sentence, options, letters) if sentence != text else set()


def _last_line_letters(line: str, options: Sequence[str], letters: str) -> set[str]:
    """Letters a response's last line gives: "C", "C.", "(C)", "**C**", "Option C", "C) text" or an option's text."""
    _, _, bare, labelled = _patterns(letters)
    line = _MARKUP_RE.sub(r"\1", line).replace("$", "")
    line = re.sub(r"^[#>*\-\s]+|[*\s]+$", "", line)
    line = re.sub(r"^(?:so|thus|therefore|hence)\s*,?\s*", "", line, flags=re.IGNORECASE)
    found = bare.fullmatch(line)
    if found:
        return {found.group(1).upper()}
    found = labelled.fullmatch(line)
    if found and found.group(1).isupper():
        return {found.group(1)}
    return _letter_by_text(line.rstrip("."), options, letters)


def extract_choice(solution_str: Any, options: Any = None, letters: str | None = None) -> str | None:
    """The single option letter a response gives as its final answer, or None.

    Read after the last ``</think>``. The answer is the *last* statement that names an option
    (a later one corrects an earlier one): a ``\\boxed{...}``, an ``<answer>...</answer>``, or the words
    after "The (final/correct) answer is", "Answer:", "The correct option is". A statement names a
    letter as ``C``, ``(C)``, ``**C**``, ``\\text{C}``, ``C. <option text>``, ``Option C``, or the text
    of an option. Without any statement, the last non-empty line may be such a form on its own.
    A statement that names several letters ("A or C", "A, C", "A/B/C/D") gives None: no single answer.

    Args:
        solution_str: the response.
        options: the option texts (a list in letter order, or ``{"A": ...}``); they set the letters.
        letters: the letters offered (default: from ``options``, see :func:`choice_letters`).
    """
    text = answer_part(solution_str)
    if not text.strip():
        return None
    texts = option_texts(options)
    letters = letters or choice_letters(texts)
    named = [found for found in (_letters_declared(d.content, texts, letters) for d in declarations(text)) if found]
    if not named:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        named = [_last_line_letters(lines[-1], texts, letters)] if lines else []
    return next(iter(named[-1])) if named and len(named[-1]) == 1 else None


def score_multiple_choice(solution_str: Any, ground_truth: str, options: Any = None) -> float:
    """1.0 if :func:`extract_choice` finds exactly ``ground_truth`` (a letter of the question's options)."""
    gold = str(ground_truth).strip().upper()
    letters = choice_letters(option_texts(options), gold)
    return 1.0 if extract_choice(solution_str, options, letters) == gold else 0.0
