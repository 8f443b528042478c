"""Finding a response's final answer: the text every scoring rule reads, and the places an answer is stated.

A careful grader reads the end of a response (after the last ``</think>``) and takes the *last*
answer it states: ``\\boxed{...}`` (or ``\\fbox{...}``), ``<answer>...</answer>``, a phrase such as
"The final answer is ...", "Answer: ...", "Ans. is ...", or a claim "... is the correct answer". A later
statement corrects an earlier one ("..., wait, the answer is B"). :func:`declarations` lists them in
order; each scoring rule decides which of them name an answer of its kind (:func:`first_clause`,
:func:`stated_value`: a statement's words up to its explanation). A response that states nothing may
still conclude with a value ("So Janet has 12 apples."): :func:`concluded_value`, which reads no
ramble, echoed question or filler as an answer. Everything here works on at most
:data:`MAX_TAIL_CHARS` characters in linear time and never raises on any input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

#: Characters of a response looked at: its end (after the last ``</think>``) holds the answer.
MAX_TAIL_CHARS = 4000
#: Longest ``\\boxed{...}`` / ``<answer>`` content taken as an answer.
MAX_BOXED_CHARS = 1000
#: Longest phrase tail ("the answer is <tail>") read, up to the end of its line.
MAX_PHRASE_CHARS = 300

_COMMANDS_RE = re.compile(r"\\(?:boxed|fbox)")
_TAG_RE = re.compile(rf"<answer>(.{{0,{MAX_BOXED_CHARS}}}?)</answer>", re.IGNORECASE | re.DOTALL)
_PHRASE_RE = re.compile(
    r"(?:\b(?:final|correct|best|right)\s+)?\b(?:answer|option|choice|solution|diagnosis)(?:\s+is)?"
    r"\s*(?:\bis\b|\b(?:would|should|must|will)\s+be\b|:|=)[ \t]*(?:\\\(|\$)?[ \t]*"
    r"|\bans\b(?:\.[ \t]*(?:is\b|:|=)?|\s*(?:is\b|:|=))[ \t]*"
    r"|\bmost\s+likely\s+(?:[a-z]+\s+){0,2}?(?:is|would\s+be)\b[ \t]*",
    re.IGNORECASE,
)
#: "<subject> is the correct answer", "<subject> is correct": the subject states the answer.
_CLAIM_RE = re.compile(
    r"[ \t]+(?:is|would\s+be)\s+(?:the\s+)?(?:(?:final|correct|right|best|most\s+likely)\s+)?(?:answer|option|choice)\b"
    r"|[ \t]+is\s+(?:the\s+)?(?:correct|right)\b",
    re.IGNORECASE,
)
#: A conclusion's start: "So", "Therefore", "Thus", "In total", ... at the start of a line, a sentence or a clause.
_CUE_RE = re.compile(
    r"(?:^|(?<=[.!?:,]))[ \t]*(?:so|thus|therefore|hence|in\s+total|in\s+conclusion|finally|overall|altogether|"
    r"as\s+a\s+result)\b,?",
    re.IGNORECASE | re.MULTILINE,
)
#: The verb before a conclusion's value ("the total is 630").
_COPULA_RE = re.compile(r"\b(?:is|are|was|were|equals|becomes|be)\b", re.IGNORECASE)
#: Where a value starts: a digit, a sign, ``$``, a LaTeX command, a bracket, a one-letter variable before an operator.
_VALUE_START_RE = re.compile(r"[-+\u2212]?\$?\s*[\d.\\(\[]|\b[a-zA-Z](?=\s*[\^_=+\-*/])")
#: One token of a value: a LaTeX command, a brace group, a scale word, a one-letter variable, any non-letter.
_VALUE_TOKEN_RE = re.compile(
    r"\\[A-Za-z]+|\{[^{}\n]*\}|(?:thousand|million|billion|trillion)\b|[A-Za-z](?![A-Za-z])|[^A-Za-z\n]",
    re.IGNORECASE,
)
#: What separates the values of a set stated in words: "x = 2 or x = 3", "2 and 3", "2, 3".
_ALTERNATIVES_RE = re.compile(r"\s*(?:,|;|\bor\b|\band\b)\s*", re.IGNORECASE)
#: A line of mathematics only (no word of two letters outside LaTeX commands and braces).
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
#: A line's label before its mathematics: "Step 2:", "2.", "-", "####".
_LINE_LABEL_RE = re.compile(r"^\s*(?:step\s*\d+\s*[:.)]|\d+\s*[.)](?=\s)|[-*>#]+)\s*", re.IGNORECASE)
_CONNECTIVE_RE = re.compile(
    r"^(?:(?:so|thus|therefore|hence|overall|finally|in\s+conclusion|then)\b\s*,?\s*)+", re.IGNORECASE
)
#: Words after which a stated answer's explanation begins ("12, since ...", "C because ...").
_EXPLANATION_RE = re.compile(
    r",?\s+(?:since|because|as|which|where|given|due\s+to|so\s+that)\b|\s\((?:since|because|as)\b",
    re.IGNORECASE,
)
#: A sentence's end: ``.``/``!``/``?`` before white space, unless the dot ends an option label
#: ("C. Asthma"), an abbreviation ("i.e.", "Ans.") or an initial.
_SENTENCE_END_RE = re.compile(
    r"(?<![\s(][A-Za-z])(?<!^[A-Za-z])(?<!\bi\.e)(?<!\be\.g)(?<!\bAns)(?<!\bans)(?<!\bvs)[.!?](?=\s|$)"
)


@dataclass(frozen=True)
class Declaration:
    """One place a response states an answer.

    Attributes:
        kind: ``"boxed"`` (``\\boxed{}``/``\\fbox{}``), ``"tag"`` (``<answer>``), ``"phrase"`` ("answer is")
            or ``"claim"`` ("C is the correct answer").
        start: its offset in the answer part (declarations are ordered by it).
        content: the boxed/tagged content, the phrase's tail up to the end of its line, or the claim's subject.
    """

    kind: str
    start: int
    content: str


def answer_part(solution_str: Any) -> str:
    """The part of a response that can hold its final answer: after the last ``</think>``, its NFKC tail.

    Anything but a non-empty ``str`` gives ``""``.
    """
    if not isinstance(solution_str, str) or not solution_str:
        return ""
    cut = solution_str.rfind("</think>")
    text = solution_str[cut + len("</think>") :] if cut >= 0 else solution_str
    return unicodedata.normalize("NFKC", text[-MAX_TAIL_CHARS:])


def _closing_braces(text: str) -> dict[int, int]:
    """Offset of each ``{`` -> offset of its matching ``}`` (one linear pass; unclosed ones are absent)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, char in enumerate(text):
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


def _boxed(text: str) -> list[Declaration]:
    found = []
    pairs: dict[int, int] | None = None
    for match in _COMMANDS_RE.finditer(text):
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos < len(text) and text[pos] == "{":
            if pairs is None:
                pairs = _closing_braces(text)
            end = pairs.get(pos, -1)
            if 0 < end - pos - 1 <= MAX_BOXED_CHARS:
                found.append(Declaration("boxed", match.start(), text[pos + 1 : end].strip()))
        elif match.group(0) == "\\boxed" and pos > match.end():
            token = re.match(r"[^\s$]{1,100}", text[pos:])  # "\boxed 5": one token
            if token:
                found.append(Declaration("boxed", match.start(), token.group(0)))
    return [found_one for found_one in found if found_one.content]


def extract_boxed(text: Any) -> list[str]:
    """Contents of every closed ``\\boxed{...}`` / ``\\fbox{...}`` (and ``\\boxed x``) in ``text``, in order.

    Braces are matched; an unclosed ``\\boxed{`` and contents longer than :data:`MAX_BOXED_CHARS`
    are left out. Never raises.
    """
    return [found.content for found in _boxed(text)] if isinstance(text, str) else []


def first_clause(content: str) -> str:
    """A stated answer without what follows it: ``content`` up to its first sentence end or "since"/"because"/"which".

    ``"12, since 3 x 4 = 12"`` -> ``"12"``; ``"C. Asthma, because ..."`` -> ``"C. Asthma"`` (the dot of an
    option label, of "i.e." or of a decimal ends nothing).
    """
    cut = len(content)
    for pattern in (_SENTENCE_END_RE, _EXPLANATION_RE):
        match = pattern.search(content)
        if match:
            cut = min(cut, match.start())
    return content[:cut].strip()


def _claims(text: str) -> list[Declaration]:
    """ "<subject> is the correct answer" / "<subject> is correct": the subject, from its sentence's start."""
    found = []
    previous = 0  # a subject starts after the claim before it: every character is read once
    for match in _CLAIM_RE.finditer(text):
        start = max(text.rfind("\n", 0, match.start()) + 1, match.start() - MAX_PHRASE_CHARS, previous)
        previous = match.end()
        prefix = text[start : match.start()]
        ends = [end.end() for end in _SENTENCE_END_RE.finditer(prefix)] + [prefix.rfind(":") + 1]
        offset = start + max(ends)
        subject = _CONNECTIVE_RE.sub("", text[offset : match.start()].strip())
        if subject:
            found.append(Declaration("claim", offset, subject))
    return found


def declarations(text: str) -> list[Declaration]:
    """Every stated answer in ``text`` (an :func:`answer_part`), ordered by where it starts.

    Phrases ("the answer is <tail>", "Ans. is <tail>", "the most likely diagnosis is <tail>") give the
    tail to the end of its line or the next phrase; claims ("<subject> is the correct answer", "Option C is
    correct") give the subject from its sentence's start.
    """
    found = _boxed(text)
    found += [Declaration("tag", m.start(), m.group(1).strip()) for m in _TAG_RE.finditer(text) if m.group(1).strip()]
    phrases = list(_PHRASE_RE.finditer(text))
    for i, match in enumerate(phrases):
        end = min(match.end() + MAX_PHRASE_CHARS, phrases[i + 1].start() if i + 1 < len(phrases) else len(text))
        tail = text[match.end() : end].split("\n", 1)[0].strip()
        if tail:
            found.append(Declaration("phrase", match.start(), tail))
    found += _claims(text)
    return sorted(found, key=lambda declaration: declaration.start)


def _value_prefix(text: str) -> str:
    """The value at the start of ``text``, up to its first word: ``"$630 in 5 days"`` -> ``"$630"``."""
    pos = 0
    while pos < len(text):
        token = _VALUE_TOKEN_RE.match(text, pos)
        if token is None:
            break
        pos = token.end()
    return text[:pos].strip().rstrip(".,;:([").strip()


def _result(sentence: str, parts: int = 1) -> str:
    """The value a sentence states as its result: after its last ``=`` ("2 x 3 = 6"), else after its last
    "is"/"equals" ("15% of 80 is 12"), else its first value ("Tom earns $630 in 5 days"); ``""`` if none
    or if the equation says nothing (``2/4 = 2/4``). With ``parts`` > 1 (a set is asked for), the results
    of that many pieces joined by "or", "and" or commas, when there are that many ("x = 2 or x = 3")."""
    if parts > 1:
        pieces = [_result(piece) for piece in _ALTERNATIVES_RE.split(sentence)]
        values = [piece for piece in pieces if piece]
        if len(values) == parts:
            return ", ".join(values)
    rest = sentence
    if "=" in sentence:
        sides = sentence.split("=")
        rest = sides[-1]
        if re.sub(r"[\s$]", "", rest) == re.sub(r"[\s$]", "", sides[-2]):
            return ""
    else:
        copulas = list(_COPULA_RE.finditer(sentence))
        rest = sentence[copulas[-1].end() :] if copulas else sentence
    start = _VALUE_START_RE.search(rest)
    return _value_prefix(rest[start.start() :]) if start else ""


def stated_value(content: str, parts: int = 1) -> str:
    """The value a phrase's tail or a claim's subject states (``""`` if none): its first clause's result.

    ``"3 x 1245678 = 3737034, since ..."`` -> ``"3737034"``; ``"$630 dollars per week"`` -> ``"$630"``.
    """
    return _result(first_clause(content), parts)


def concluded_value(text: str, parts: int = 1) -> str:
    """The value a response without a stated answer concludes with, or ``""``: what a careful grader reads.

    The latest of: a sentence (or clause) that starts with "So", "Therefore", "Thus", "In total", ...
    and states a value, and a line of mathematics only ("x = 6", "Step 2: 126 x 5 = 630"); or the value of a
    response that is one whole sentence ("He ends with 12 cookies."). Not a filler
    sentence after it, not a number in a sentence that concludes nothing (a ramble, an echoed
    question), and nothing when the text ends with a conclusion that was cut off ("Therefore,").
    """
    found: list[tuple[int, str]] = []
    cues = list(_CUE_RE.finditer(text))
    for i, cue in enumerate(cues):
        end = min(cue.end() + MAX_PHRASE_CHARS, cues[i + 1].start() if i + 1 < len(cues) else len(text))
        rest = text[cue.end() : end].split("\n", 1)[0]
        if not rest.strip(" \t,:") and cue.end() + len(rest) >= len(text.rstrip()):
            return ""  # the response stops where its conclusion would begin
        end = _SENTENCE_END_RE.search(rest)
        found.append((cue.start(), _result(rest[: end.start()] if end else rest, parts)))
    offset = 0
    for line in text.split("\n"):
        line = _LINE_LABEL_RE.sub("", line)
        bare = re.sub(r"\\text\s*\{[^{}]*\}|\\[A-Za-z]+", " ", line)
        if re.search(r"\d", bare) and not _WORD_RE.search(bare) and not line.rstrip().endswith("?"):
            found.append((offset, _result(line.strip().strip("$").strip(), parts)))
        offset += len(line) + 1
    stripped = text.strip()
    if (
        not found
        and "\n" not in stripped
        and [end.end() for end in _SENTENCE_END_RE.finditer(stripped)] == [len(stripped)]
    ):
        found.append((0, _result(stripped[:-1], parts)))
    values = [value for _, value in sorted(found) if re.search(r"\d", value)]
    return values[-1] if values else ""
