"""Finding a response's final answer: the text every scoring rule reads, and the places an answer is stated.

A careful grader reads the end of a response (after the last ``</think>``) and takes the *last*
answer it states: ``\\boxed{...}`` (or ``\\fbox{...}``), ``<answer>...</answer>``, or a phrase such as
"The final answer is ...", "Answer: ...". A later statement corrects an earlier one ("..., wait, the
answer is B"). :func:`declarations` lists them in order; each scoring rule decides which of them name
an answer of its kind. Everything here works on at most :data:`MAX_TAIL_CHARS` characters in linear
time and never raises on any input.
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
    r"(?:final\s+|correct\s+|best\s+|right\s+)?(?:answer|option|choice)(?:\s+is)?\s*(?:is|:|=)\s*(?:\\\(|\$)?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Declaration:
    """One place a response states an answer.

    Attributes:
        kind: ``"boxed"`` (``\\boxed{}``/``\\fbox{}``), ``"tag"`` (``<answer>``) or ``"phrase"`` ("answer is").
        start: its offset in the answer part (declarations are ordered by it).
        content: the boxed/tagged content, or the phrase's tail up to the end of its line.
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


def declarations(text: str) -> list[Declaration]:
    """Every stated answer in ``text`` (an :func:`answer_part`), ordered by where it starts."""
    found = _boxed(text)
    found += [Declaration("tag", m.start(), m.group(1).strip()) for m in _TAG_RE.finditer(text) if m.group(1).strip()]
    for match in _PHRASE_RE.finditer(text):
        tail = text[match.end() : match.end() + MAX_PHRASE_CHARS].split("\n", 1)[0].strip()
        if tail:
            found.append(Declaration("phrase", match.start(), tail))
    return sorted(found, key=lambda declaration: declaration.start)
