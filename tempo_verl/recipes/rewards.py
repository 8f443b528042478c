"""Rule-based rewards for the TEMPO recipes, usable as verl's ``reward.custom_reward_function``.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)`` once per
response (in a worker thread of its reward loop). The function dispatches on ``data_source``:

* ``math``, ``amc23``: the last ``\\boxed{...}`` of the answer (or, without one, the tail of the
  response) is checked for mathematical equivalence with the reference by ``math-verify``.
* ``gsm_hard``: a number compared with the float target with a tolerance (see :func:`score_numeric`).
* ``medqa``, ``medmcqa``, ``mmlu_medical``: the option letter A-D (see :func:`extract_choice`).

Every scorer returns 1.0 or 0.0 and never raises on model output (empty, huge, unicode, unclosed
``\\boxed{``). A ``data_source`` it does not know, or a ground truth that cannot be right (a
multiple-choice truth other than A-D, a GSM-HARD target that is not a number), raises
``ValueError``: those are data errors and should stop a run, not silently score 0.

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread, and
verl scores in worker threads. So equivalence checks run in a few helper processes (this file run
as a script; started on first use, one request at a time each): a check that takes longer than
``TEMPO_REWARD_MATH_TIMEOUT`` seconds (default 10) scores 0.0 and its helper is killed and replaced.
``TEMPO_REWARD_MATH_WORKERS`` sets how many helpers a process may start (default
``min(4, cpu count)``). Only the answer part of a response is sent (at most a few thousand
characters).

Use it from verl with::

    reward.custom_reward_function.path=pkg://tempo_verl.recipes.rewards reward.custom_reward_function.name=compute_score
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CHOICE_LETTERS",
    "SOURCE_KINDS",
    "compute_score",
    "extract_boxed",
    "extract_choice",
    "extract_number",
    "reward_kind",
    "score_math",
    "score_multiple_choice",
    "score_numeric",
]

logger = logging.getLogger(__name__)

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

CHOICE_LETTERS = "ABCD"

#: Characters of a response looked at: its end (after the last ``</think>``) holds the answer.
MAX_TAIL_CHARS = 4000
#: Longest ``\\boxed{...}`` content taken as an answer.
MAX_BOXED_CHARS = 1000
#: Without a ``\\boxed{}``, math-verify reads this many characters of the response's end.
MATH_WINDOW_CHARS = 1500
#: Relative tolerance for GSM-HARD answers (their targets are float results of Python programs).
NUMERIC_REL_TOL = 1e-4
NUMERIC_ABS_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def reward_kind(data_source: str) -> str:
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
        solution_str: the decoded response.
        ground_truth: ``reward_model.ground_truth`` of the row.
        extra_info: the row's ``extra_info``; multiple choice reads ``options`` (the option texts in
            A-D order) to recognise an answer given as the option's text.
        **kwargs: whatever else verl passes (ignored).

    Raises:
        ValueError: unknown ``data_source`` or an impossible ground truth (never for model output).
    """
    kind = reward_kind(data_source)
    if kind == "math":
        return score_math(solution_str, _ground_truth_text(ground_truth, data_source))
    if kind == "numeric":
        gold = _to_float(ground_truth)
        if gold is None:
            raise ValueError(
                f"reward_model.ground_truth of a {data_source!r} row must be a number, got {ground_truth!r}."
            )
        return score_numeric(solution_str, gold)
    gold_letter = str(ground_truth).strip().upper()
    if len(gold_letter) != 1 or gold_letter not in CHOICE_LETTERS:
        raise ValueError(
            f"reward_model.ground_truth of a {data_source!r} row must be one of A, B, C, D, got {ground_truth!r}."
        )
    options = extra_info.get("options") if isinstance(extra_info, Mapping) else None
    return score_multiple_choice(solution_str, gold_letter, options)


def _ground_truth_text(ground_truth: Any, data_source: str) -> str:
    if isinstance(ground_truth, float) and ground_truth.is_integer():
        ground_truth = int(ground_truth)
    text = "" if ground_truth is None else str(ground_truth).strip()
    if not text:
        raise ValueError(f"reward_model.ground_truth of a {data_source!r} row is empty.")
    return text


# --------------------------------------------------------------------------------------------
# Shared text helpers
# --------------------------------------------------------------------------------------------


def _answer_part(solution_str: Any) -> str:
    """The part of a response that can hold its final answer: after the last ``</think>``, its tail."""
    if not isinstance(solution_str, str) or not solution_str:
        return ""
    text = solution_str
    cut = text.rfind("</think>")
    if cut >= 0:
        text = text[cut + len("</think>") :]
    text = text[-MAX_TAIL_CHARS:]
    return unicodedata.normalize("NFKC", text)


def extract_boxed(text: Any) -> list[str]:
    """Contents of every closed ``\\boxed{...}`` / ``\\fbox{...}`` (and ``\\boxed x``) in ``text``, in order.

    Braces are matched; an unclosed ``\\boxed{`` and contents longer than :data:`MAX_BOXED_CHARS`
    are left out. Never raises.
    """
    if not isinstance(text, str):
        return []
    found: list[tuple[int, str]] = []
    for command in ("\\boxed", "\\fbox"):
        start = text.find(command)
        while start >= 0:
            pos = start + len(command)
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == "{":
                depth, end = 0, -1
                limit = min(len(text), pos + MAX_BOXED_CHARS + 2)
                for i in range(pos, limit):
                    if text[i] == "{":
                        depth += 1
                    elif text[i] == "}":
                        depth -= 1
                        if depth == 0:
                            end = i
                            break
                if end > 0:
                    found.append((start, text[pos + 1 : end].strip()))
            elif command == "\\boxed" and pos > start + len(command) and pos < len(text):
                # "\boxed 5": one token up to whitespace or "$"
                match = re.match(r"[^\s$]{1,100}", text[pos:])
                if match:
                    found.append((start, match.group(0)))
            start = text.find(command, start + len(command))
    found.sort(key=lambda item: item[0])
    return [content for _, content in found if content]


# --------------------------------------------------------------------------------------------
# Math (math-verify)
# --------------------------------------------------------------------------------------------


def score_math(solution_str: Any, ground_truth: str) -> float:
    """1.0 if the response's final answer is mathematically equivalent to ``ground_truth``.

    The answer is the last ``\\boxed{...}`` after any ``</think>``; without one, math-verify reads
    the last :data:`MATH_WINDOW_CHARS` characters (it recognises "the final answer is ..." and
    similar). Equivalence (``1/2``, ``0.5``, ``\\frac{1}{2}``, ``\\dfrac12``, sets, intervals, ...)
    is math-verify's; an identical string is accepted without asking it.
    """
    text = _answer_part(solution_str)
    gold = str(ground_truth).strip() if ground_truth is not None else ""
    if not text.strip() or not gold:
        return 0.0
    boxed = extract_boxed(text)
    if boxed:
        answer = boxed[-1]
        if _compact(answer) == _compact(gold):
            return 1.0
        prediction = "\\boxed{" + answer + "}"
    else:
        prediction = text[-MATH_WINDOW_CHARS:]
    return _math_pool().check("\\boxed{" + gold + "}", prediction)


def _compact(text: str) -> str:
    return re.sub(r"\s+|\$", "", text)


def _verify_here(gold: str, prediction: str, timeout_seconds: int | None) -> float:
    """math-verify in this process (``timeout_seconds`` needs the main thread; None: unbounded)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    try:
        gold_parsed = parse(
            gold,
            extraction_config=(LatexExtractionConfig(), ExprExtractionConfig()),
            parsing_timeout=timeout_seconds,
        )
        if not gold_parsed:
            return 0.0
        pred_parsed = parse(
            prediction,
            extraction_config=(LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()),
            parsing_timeout=timeout_seconds,
        )
        if not pred_parsed:
            return 0.0
        return 1.0 if verify(gold_parsed, pred_parsed, timeout_seconds=timeout_seconds) else 0.0
    except BaseException as exc:  # math-verify's TimeoutException derives from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return 0.0


def _env_number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a {kind.__name__} > 0.") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a {kind.__name__} > 0.")
    return value


class _Helper:
    """One helper process running :func:`_serve` (this file as a script), JSON lines over pipes."""

    _BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='tempo_verl_math_helper')['_serve']()"

    def __init__(self, start_timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            close_fds=True,
        )
        self._buffer = b""
        ready = self._read_line(time.monotonic() + start_timeout)
        if ready != b"ready":
            self.kill()
            raise RuntimeError(f"math-verify helper did not start (got {ready!r}).")

    def _read_line(self, deadline: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.strip()

    def check(self, gold: str, prediction: str, timeout: float) -> float | None:
        """The score, or None if the helper timed out or died (then it is killed)."""
        assert self.proc.stdin is not None
        try:
            request = {"gold": gold, "pred": prediction, "timeout": max(1, min(5, int(timeout // 2)))}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            self.kill()
            return None
        line = self._read_line(time.monotonic() + timeout)
        if line is None:
            self.kill()
            return None
        try:
            return 1.0 if float(json.loads(line)["score"]) == 1.0 else 0.0
        except (ValueError, KeyError, TypeError):
            self.kill()
            return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class _MathPool:
    """At most ``size`` helpers per process; a caller borrows one for each check."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.size = _env_number("TEMPO_REWARD_MATH_WORKERS", min(4, os.cpu_count() or 1), int)
        self.timeout = _env_number("TEMPO_REWARD_MATH_TIMEOUT", 10.0, float)
        self.start_timeout = max(60.0, self.timeout)
        self._idle: queue.LifoQueue[_Helper] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._broken: str | None = None
        self._all: list[_Helper] = []

    def _borrow(self) -> _Helper | None:
        """An idle helper, a new one (up to ``size``), or None when helpers cannot be started."""
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if self._broken is not None:
                    return None
                can_start = self._started < self.size
                if can_start:
                    self._started += 1
            if can_start:
                break
            try:  # short waits: a killed helper frees a slot without passing through the queue
                return self._idle.get(timeout=0.2)
            except queue.Empty:
                continue
        try:
            helper = _Helper(self.start_timeout)
        except (OSError, RuntimeError) as exc:
            with self._lock:
                self._started -= 1
                self._broken = str(exc)
            logger.warning(
                "tempo_verl.recipes.rewards: math-verify helpers unavailable (%s); checking in-process.", exc
            )
            return None
        with self._lock:
            self._all.append(helper)
        return helper

    def check(self, gold: str, prediction: str) -> float:
        helper = self._borrow()
        if helper is None:
            in_main = threading.current_thread() is threading.main_thread()
            return _verify_here(gold, prediction, math.ceil(self.timeout) if in_main else None)
        score = helper.check(gold, prediction, self.timeout)
        if score is None or not helper.alive:
            with self._lock:
                self._started -= 1
                if helper in self._all:
                    self._all.remove(helper)
            helper.kill()
            return 0.0 if score is None else score
        self._idle.put(helper)
        return score

    def close(self) -> None:
        with self._lock:
            helpers, self._all = self._all, []
            self._started = 0
        for helper in helpers:
            helper.kill()
        while not self._idle.empty():
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break


_POOL: _MathPool | None = None
_POOL_LOCK = threading.Lock()


def _math_pool() -> _MathPool:
    """This process's pool (a forked child gets its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _MathPool()
        return _POOL


def _close_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()


atexit.register(_close_pool)


def _serve() -> None:
    """Helper-process loop: one JSON request per stdin line, one ``{"score": ...}`` line back.

    math-verify's signal timeouts (about half the caller's limit, 1-5 s) stop most slow checks
    here; the caller kills the helper for the rest (e.g. a huge integer power inside C code).
    """
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (import before saying ready: startup is not a check's time)

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            # math-verify's own (signal) timeout first: the helper's main thread can use it
            score = _verify_here(str(request["gold"]), str(request["pred"]), int(request.get("timeout", 5)))
        except Exception:
            score = 0.0
        out.write(json.dumps({"score": score}).encode() + b"\n")
        out.flush()


# --------------------------------------------------------------------------------------------
# Numbers (GSM-HARD)
# --------------------------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*\$?\s*(\S[^\n]{0,80})", re.IGNORECASE)


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip().replace(",", ""))
        except (TypeError, ValueError):
            return None
    return number if math.isfinite(number) else None


def _clean_number_text(text: str) -> str:
    text = text.replace("\u2212", "-").replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    text = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{[^{}]*\}", " ", text)
    text = re.sub(r"\\(?:left|right)", "", text)
    text = text.replace("\\%", "").replace("%", "")
    return text.strip()


def extract_number(candidate: Any) -> float | None:
    """The number an answer string states: ``1,234.5``, ``-3``, ``\\frac{7}{2}``, ``7/2``, ``1.2\\times10^{5}``.

    A string holding several numbers gives its last one. None when there is none. Never raises.
    """
    if not isinstance(candidate, str) or not candidate.strip():
        return None
    text = _clean_number_text(candidate[-500:])
    sci = re.search(rf"({_NUMBER})\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{{?\s*([-+]?\d{{1,3}})\s*\}}?\s*$", text)
    if sci:
        base = _to_float(sci.group(1))
        return None if base is None else _finite(base * 10.0 ** int(sci.group(2)))
    frac = re.search(r"([-+]?)\\[dt]?frac\s*\{?\s*([-+]?\d+(?:\.\d+)?)\s*\}?\s*\{?\s*(\d+(?:\.\d+)?)\s*\}?\s*$", text)
    if frac is None:
        frac = re.search(r"([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}", text)
    if frac is None:
        frac = re.search(r"()(?<![\d.])([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*\.?\s*$", text)
    if frac:
        num, den = float(frac.group(2)), float(frac.group(3))
        if den == 0:
            return None
        value = num / den
        return _finite(-value if frac.group(1) == "-" else value)
    numbers = _NUMBER_RE.findall(text)
    if not numbers:
        return None
    return _to_float(numbers[-1])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _decimals(text: str) -> int:
    match = re.search(r"\.(\d+)\s*$", text.strip())
    return len(match.group(1)) if match else 0


def score_numeric(solution_str: Any, target: float, rel_tol: float = NUMERIC_REL_TOL) -> float:
    """1.0 if the response's final number matches ``target``.

    The final number is the one in the last ``\\boxed{}``, else after the last "answer is"/"Answer:",
    else the last number of the response. It matches when it is within ``rel_tol`` (relative) or
    :data:`NUMERIC_ABS_TOL` of the target, or when it is the target correctly rounded to the two or
    more decimals it is written with (``12.33`` for ``12.3333...``).
    """
    text = _answer_part(solution_str)
    if not text.strip():
        return 0.0
    boxed = extract_boxed(text)
    if boxed:
        candidate = boxed[-1]
    else:
        phrases = _ANSWER_IS_RE.findall(text)
        candidate = phrases[-1] if phrases else text[-500:]
    value = extract_number(candidate)
    if value is None:
        return 0.0
    if math.isclose(value, target, rel_tol=rel_tol, abs_tol=NUMERIC_ABS_TOL):
        return 1.0
    numbers = _NUMBER_RE.findall(_clean_number_text(candidate))
    decimals = _decimals(numbers[-1]) if numbers else 0
    if decimals >= 2 and abs(value - target) <= 0.5 * 10.0**-decimals * (1 + 1e-9):
        return 1.0
    return 0.0


# --------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------

_LETTER = r"(?<![A-Za-z0-9])\(?\[?([A-D])\]?\)?(?![A-Za-z0-9])"
_LETTER_LIST_RE = re.compile(
    r"\**\s*(?:option|choice)?\s*\(?\[?([A-D])\]?\)?(?![A-Za-z0-9])"
    r"((?:\s*(?:,|/|\bor\b|\band\b|&)\s*(?:option|choice)?\s*\(?\[?[A-D]\]?\)?(?![A-Za-z0-9]))*)",
    re.IGNORECASE,
)
_PHRASE_RE = re.compile(
    r"(?:final\s+|correct\s+|best\s+|right\s+)?(?:answer|option|choice)(?:\s+is)?\s*(?:is|:|=)\s*(?:\\\(|\$)?\s*",
    re.IGNORECASE,
)
_MARKUP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|bf|textit)\s*\{([^{}]*)\}")


def _option_texts(options: Any) -> list[str]:
    """Option texts in A-D order from a list/array or an ``{"A": ...}`` mapping (else [])."""
    if options is None or isinstance(options, str | bytes):
        return []
    if isinstance(options, Mapping):
        return [str(options.get(letter, "") or "") for letter in CHOICE_LETTERS]
    try:
        return [str(item) if item is not None else "" for item in list(options)[: len(CHOICE_LETTERS)]]
    except TypeError:
        return []


def _norm_option(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _letter_by_text(text: str, options: Sequence[str]) -> set[str]:
    wanted = _norm_option(text)
    if not wanted:
        return set()
    hits = {CHOICE_LETTERS[i] for i, option in enumerate(options) if option and _norm_option(option) == wanted}
    return hits


def _letters_declared(text: str, options: Sequence[str]) -> set[str]:
    """The letters an answer declaration (a boxed content, the words after "answer is") names."""
    text = _MARKUP_RE.sub(r"\1", text)
    text = text.replace("$", "").replace("*", "").strip().strip(".:;,!").strip()
    text = re.sub(r"^(?:option|choice|answer)\s*:?\s*", "", text, flags=re.IGNORECASE).strip()
    if not text:
        return set()
    if len(text) == 1 and text.upper() in CHOICE_LETTERS:
        return {text.upper()}
    by_text = _letter_by_text(text, options)
    if by_text:
        return by_text
    match = _LETTER_LIST_RE.match(text)
    # a lowercase letter only counts on its own ("(c)"), not as a word ("a combination")
    if match and (match.group(1).isupper() or len(text) <= 3):
        letters = {match.group(1).upper()}
        letters.update(letter.upper() for letter in re.findall(_LETTER, match.group(2), flags=re.IGNORECASE))
        return letters
    return set()


def _last_line_letters(line: str, options: Sequence[str]) -> set[str]:
    """Letters a response's last line gives: "C", "C.", "(C)", "Option C", "C) text" or an option's text."""
    line = _MARKUP_RE.sub(r"\1", line).replace("$", "")
    line = re.sub(r"^[#>*\-\s]+|[*\s]+$", "", line)
    line = re.sub(r"^(?:so|thus|therefore|hence)\s*,?\s*", "", line, flags=re.IGNORECASE)
    bare = re.fullmatch(r"(?:option|choice)?\s*\(?([A-Da-d])\)?\s*[.):]?", line, flags=re.IGNORECASE)
    if bare:
        return {bare.group(1).upper()}
    labelled = re.fullmatch(r"(?:option|choice)?\s*\(?([A-D])\s*[.):]\s*(.+)", line, flags=re.IGNORECASE)
    if labelled and labelled.group(1).isupper():
        return {labelled.group(1)}
    return _letter_by_text(line.rstrip("."), options)


def _agreed(declarations: list[set[str]]) -> str | None:
    letters: set[str] = set()
    for declared in declarations:
        letters |= declared
    return next(iter(letters)) if len(letters) == 1 else None


def extract_choice(solution_str: Any, options: Any = None) -> str | None:
    """The single option letter (A-D) a response gives as its answer, or None.

    Looked for after the last ``</think>``, in this order; the first kind that names any letter
    decides:

    1. ``\\boxed{...}``: ``\\boxed{C}``, ``\\boxed{(C)}``, ``\\boxed{\\text{C}}``, ``\\boxed{C. text}`` or
       the option's text;
    2. phrases: "The answer is (C)", "Answer: C", "the correct option is C", or "the answer is
       <option text>";
    3. the last non-empty line: ``C``, ``C.``, ``(C)``, ``C) text``, ``Option C`` or an option's text.

    All declarations of the deciding kind must name the same single letter: "\\boxed{A} ...
    \\boxed{C}", "\\boxed{A or C}" and "The answer is A or B" give None.
    """
    text = _answer_part(solution_str)
    if not text.strip():
        return None
    option_texts = _option_texts(options)
    boxed = [found for found in (_letters_declared(c, option_texts) for c in extract_boxed(text)) if found]
    if boxed:
        return _agreed(boxed)
    phrases = []
    for match in _PHRASE_RE.finditer(text):
        tail = text[match.end() : match.end() + 300].split("\n", 1)[0]
        declared = _letters_declared(tail, option_texts)
        if not declared:
            sentence = re.split(r"(?<=[.!?])\s", tail, maxsplit=1)[0]
            declared = _letters_declared(sentence, option_texts)
        if declared:
            phrases.append(declared)
    if phrases:
        return _agreed(phrases)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _agreed([_last_line_letters(lines[-1], option_texts)]) if lines else None


def score_multiple_choice(solution_str: Any, ground_truth: str, options: Any = None) -> float:
    """1.0 if :func:`extract_choice` finds exactly ``ground_truth`` (a letter A-D)."""
    return 1.0 if extract_choice(solution_str, options) == str(ground_truth).strip().upper() else 0.0
