"""Multiple choice (MedQA, MedMCQA, MMLU-Medical): the option letter a response gives as its final answer.

The letters are those of the question's options: A-E for five options, A-D for four (the data
preparation writes the option texts to ``extra_info.options``; rows without them keep A-D, or up to
the ground truth's letter if that is later). The option texts also let an answer name an option in
words and rule out a letter given with another option's text. See :func:`extract_choice` for the
rules and ``docs/data.md`` for a table of examples.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from tempo_verl.recipes.rewards.text import answer_part, declarations, first_clause

#: Option letters, in order; a question with n options uses the first n.
ALL_LETTERS = "ABCDEFGHIJ"
#: The letters of a row whose options are not known (the four-option sets of the recipes).
DEFAULT_LETTERS = "ABCD"

_MARKUP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|bf|textit)\s*\{([^{}]*)\}")
#: Words after a capital letter that make it an option's letter ("A or C", "C is"), not a word ("A combination").
_CONNECTORS = frozenset(
    ["is", "was", "would", "could", "should", "seems", "and", "or", "nor", "but", "because", "since", "as", "with"]
)
#: A mention these words precede is ruled out, not named ("not A", "rather than gout").
_NEGATED_RE = re.compile(
    r"(?:\bnot|\bisn't|\bnor|\bexcept|\brather\s+than|\binstead\s+of)\s+(?:option\s+|choice\s+)?[(\['\"]?$", re.I
)
#: What may stand between options named together: punctuation, "i.e.", "or", "and", "maybe".
_LISTED_RE = re.compile(r"(?:[\s.,:)\]'\"/&\-–—]|\bi\.e\b|\b(?:or|and|maybe|perhaps|possibly|either)\b)*", re.I)
#: A hedge's resolution: what follows names the answer ("A or C, most likely C").
_RESOLVED_RE = re.compile(
    r"\b(?:most|more)\s+likely\b|\bprobably\b|\bi(?:'d|\s+would)\s+(?:choose|pick|go\s+with|say)\b", re.I
)
#: Words that take an earlier statement back, so that a later one replaces it.
_RETRACTION_RE = re.compile(
    r"\b(?:wait|actually|no|correction|mistake|wrong|incorrect|however|but|instead|reconsider|re-?evaluat\w*|"
    r"re-?check\w*|double-check\w*|on\s+second\s+thought|oops|sorry|hmm)\b",
    re.IGNORECASE,
)


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
def _patterns(letters: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The regexes of one letter set: a letter named in a statement, the last-line forms."""
    upper, lower = f"[{letters}]", f"[{letters.lower()}]"
    # "C", "(C)", "'c'", "(c)", "c) <text>" at the start; a lowercase letter elsewhere is a word ("a", "e.g.")
    named = re.compile(rf"(?<![\w'’])({upper})(?![\w'’])|[(\[\'\"‘“]({lower})[)\]\'\"’”]|^({lower})(?=[.)]\s|[.)]?$)")
    bare = re.compile(rf"(?:option|choice)?\s*\(?({upper})\)?\s*[.):]?", re.IGNORECASE)
    labelled = re.compile(rf"(?:option|choice)?\s*\(?({upper})\s*[.):]\s*(.+)", re.IGNORECASE)
    return named, bare, labelled


@functools.lru_cache(maxsize=256)
def _option_patterns(options: tuple[str, ...]) -> list[tuple[int, re.Pattern[str]]]:
    """(index, regex) of each option's text, longest first: its words in order, case, punctuation and "'s" aside."""
    found = []
    for index, option in enumerate(options):
        words = re.findall(r"\w+", unicodedata.normalize("NFKC", option).casefold())
        if words:
            body = r"(?:'s)?[\W_]+".join(re.escape(word) for word in words)
            found.append((index, re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)))
    return sorted(found, key=lambda pair: -len(pair[1].pattern))


def _norm_option(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()


def _letter_by_text(text: str, options: Sequence[str], letters: str) -> set[str]:
    wanted = _norm_option(text)
    if not wanted:
        return set()
    return {letters[i] for i, option in enumerate(options[: len(letters)]) if option and _norm_option(option) == wanted}


def _mentions(text: str, options: Sequence[str], letters: str) -> list[tuple[int, int, str]]:
    """(start, end, letter) of each option ``text`` names by its text or its letter and does not negate
    ("not A"), in order."""
    found: list[tuple[int, int, str]] = []
    masked = text
    for index, pattern in _option_patterns(tuple(options[: len(letters)])):
        for match in list(pattern.finditer(masked)):
            found.append((match.start(), match.end(), letters[index]))
            masked = masked[: match.start()] + " " * (match.end() - match.start()) + masked[match.end() :]
    named, _, _ = _patterns(letters)
    for match in named.finditer(masked):
        letter = next(group for group in match.groups() if group)
        after = masked[match.end() :].lstrip(")]'\"’” ")
        word = re.match(r"[a-z]+", after)
        if letter.isupper() and word and word.group(0) not in _CONNECTORS:
            continue  # "A combination", "C vitamin": a word, not an option
        found.append((match.start(), match.end(), letter.upper()))
    return sorted(mention for mention in found if not _NEGATED_RE.search(text[max(0, mention[0] - 40) : mention[0]]))


def _letters_declared(text: str, options: Sequence[str], letters: str) -> set[str]:
    """The letters an answer statement (a boxed/tagged content, a phrase's tail, a claim's subject) names.

    One letter is an answer; several ("A or C", a letter with another option's text) are none.
    """
    text = _MARKUP_RE.sub(r"\1", text).replace("$", "").replace("*", "").replace("`", "")
    text = first_clause(text).strip().strip(".:;,!").strip()
    text = re.sub(r"^(?:option|choice|answer)\s*:?\s*", "", text, flags=re.IGNORECASE).strip()
    if not text:
        return set()
    if len(text) == 1 and text.upper() in letters:
        return {text.upper()}
    by_text = _letter_by_text(text, options, letters)
    if by_text:
        return by_text
    mentions = _mentions(text, options, letters)
    resolved = [match.end() for match in _RESOLVED_RE.finditer(text)]
    if resolved and any(start >= resolved[-1] for start, _, _ in mentions):
        mentions = [mention for mention in mentions if mention[0] >= resolved[-1]]
    elif mentions and not text[: mentions[0][0]].strip(" (['\""):
        # it begins with an option: that one, with its label text and any listed with it ("C. Asthma",
        # "asthma (C)", "A or C"), not the options an explanation goes on to name ("C. Asthma, unlike gout")
        listed = [mentions[0]]
        for mention in mentions[1:]:
            if not _LISTED_RE.fullmatch(text[listed[-1][1] : mention[0]]):
                break
            listed.append(mention)
        mentions = listed
    return {letter for *_, letter in mentions}


def _alone_on_a_line(lines: Sequence[str], options: Sequence[str], letters: str) -> set[str]:
    """The letter the response's last line, else its first, gives on its own (:func:`_line_letters`).

    The last line ("... ⏎ C") or the first ("C. Asthma ⏎ <the reasoning>", the answer put first); not a
    line next to another that names an option the same way: that is a list of the options, not an answer.
    """
    for index in (len(lines) - 1, 0):
        found = _line_letters(lines[index], options, letters) if lines else set()
        neighbours = [lines[i] for i in (index - 1, index + 1) if 0 <= i < len(lines) and i != index]
        if found and not any(_line_letters(line, options, letters) for line in neighbours):
            return found
    return set()


def _line_letters(line: str, options: Sequence[str], letters: str) -> set[str]:
    _, bare, labelled = _patterns(letters)
    line = _MARKUP_RE.sub(r"\1", line).replace("$", "")
    line = re.sub(r"^[#>*\-\s]+|[*\s]+$", "", line)
    line = re.sub(r"^(?:so|thus|therefore|hence)\s*,?\s*", "", line, flags=re.IGNORECASE)
    found = bare.fullmatch(line)
    if found:
        return {found.group(1).upper()}
    found = labelled.fullmatch(line)
    if found and found.group(1).isupper():
        # "C) Asthma": the text must be that option's ("A) Beta blocker is not ..." answers nothing),
        # when the options are known
        named = {letter for *_, letter in _mentions(found.group(2), options, letters)}
        return {found.group(1)} if named == {found.group(1)} or not options else set()
    return _letter_by_text(line.rstrip("."), options, letters)


def extract_choice(solution_str: Any, options: Any = None, letters: str | None = None) -> str | None:
    """The single option letter a response gives as its final answer, or None.

    Read after the last ``</think>``. The answer is the *last* statement that names an option
    (a later one corrects an earlier one): a ``\\boxed{...}``, an ``<answer>...</answer>``, the words
    after "The (final/correct) answer is", "Answer:", "Ans. is", "The most likely diagnosis is", or the
    subject of "<...> is the correct answer" / "Option C is correct". A statement names a letter as
    ``C``, ``(C)``, ``**C**``, ``\\text{C}``, ``'c'``, ``C. <option text>``, ``Option C``, or the text of
    an option, in its first clause (up to its sentence's end or "because", "since", "which"). A letter
    after "not" is not named ("not A; it is C" is C); a hedge resolved ("A or C, most likely C") names
    what follows "most likely". A statement that names several options ("A or C", "A, C", "A/B/C/D",
    "C. Gout" where C is another option) gives None: no single answer. So does a final statement that
    contradicts an earlier one without taking it back ("The answer is C" ... "the solution is: A"; a
    "wait", "actually", "no", "however", ... between them takes it back). Without any statement, the
    last non-empty line, else the first, may be such a form on its own ("C", "(C)", "C. <C's text>"),
    unless a line next to it is one too (a list of the options).

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
    named = [(d.start, found) for d in declarations(text) if (found := _letters_declared(d.content, texts, letters))]
    if not named:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        final = _alone_on_a_line(lines, texts, letters)
        return next(iter(final)) if len(final) == 1 else None
    start, final = named[-1]
    if len(final) != 1:
        return None
    earlier = [(offset, found) for offset, found in named[:-1] if len(found) == 1 and found != final]
    if earlier and not _RETRACTION_RE.search(text, earlier[-1][0], start):
        return None
    return next(iter(final))


def score_multiple_choice(solution_str: Any, ground_truth: str, options: Any = None) -> float:
    """1.0 if :func:`extract_choice` finds exactly ``ground_truth`` (a letter of the question's options)."""
    gold = str(ground_truth).strip().upper()
    letters = choice_letters(option_texts(options), gold)
    return 1.0 if extract_choice(solution_str, options, letters) == gold else 0.0
