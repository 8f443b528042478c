"""The math-verify helper process, seen from verl's reward threads: every check bounded end to end.

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread, and verl
scores in worker threads; a check can also be stuck in C code where no signal helps. So checks run in
a helper process (:mod:`tempo_verl.recipes.rewards.pool_server`, one per scoring process, started on
first use) that forks a child per check and kills it at its deadline.

The bound: :func:`check_equivalent` returns within ``TEMPO_REWARD_MATH_TIMEOUT`` seconds of being
called, whatever happens — starting the helper, waiting behind other checks, a slow input, a helper
that dies. A check not answered by then scores 0.0 (and its child is killed). The settings are
validated when this module loads (verl imports it with the reward function, before the first step), and
read again at first use (:func:`settings`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from tempo_verl.recipes.rewards import pool_server

logger = logging.getLogger(__name__)

TIMEOUT_VAR = "TEMPO_REWARD_MATH_TIMEOUT"
WORKERS_VAR = "TEMPO_REWARD_MATH_WORKERS"
#: Valid ``TEMPO_REWARD_MATH_TIMEOUT`` (seconds): (0, MAX_TIMEOUT_S].
MAX_TIMEOUT_S = 3600.0
#: Below this many seconds a warning says that right answers may score 0 (a check takes 5-200 ms,
#: starting the helper about half a second).
WARN_TIMEOUT_S = 1.0
#: Valid ``TEMPO_REWARD_MATH_WORKERS``: 1..MAX_WORKERS checks running at once.
MAX_WORKERS = 256


@dataclass(frozen=True)
class Settings:
    """The helper's settings, from the environment.

    Attributes:
        timeout: ``TEMPO_REWARD_MATH_TIMEOUT``, seconds one :func:`check_equivalent` call may take
            end to end (default 10).
        workers: ``TEMPO_REWARD_MATH_WORKERS``, checks running at once (default ``min(4, cpu count)``;
            checks running longer than a second no longer count).
    """

    timeout: float
    workers: int


def _env_value(name: str, default: float, parse: type, low: float, high: float, range_text: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = math.nan
    if not (low < value <= high):  # NaN fails here too
        raise ValueError(f"{name}={raw!r} is not valid: expected {range_text}. Unset it for the default ({default}).")
    return value


def settings() -> Settings:
    """Read and validate the environment (a clear ``ValueError`` naming the variable and its range)."""
    timeout = _env_value(TIMEOUT_VAR, 10.0, float, 0.0, MAX_TIMEOUT_S, f"a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    workers = _env_value(
        WORKERS_VAR, min(4, os.cpu_count() or 1), int, 0, MAX_WORKERS, f"an integer in 1..{MAX_WORKERS}"
    )
    return Settings(timeout=float(timeout), workers=int(workers))


def _warn_if_short(config: Settings) -> Settings:
    if config.timeout < WARN_TIMEOUT_S:
        logger.warning(
            "%s=%g s: checks not answered within it score 0, and a math-verify check takes 5-200 ms (starting "
            "the helper about 0.5 s): right answers may score 0. Use at least %g s.",
            TIMEOUT_VAR,
            config.timeout,
            WARN_TIMEOUT_S,
        )
    return config


class _Helper:
    """One running helper process and the threads waiting for its answers."""

    _BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='tempo_verl_math_helper')"

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._BOOT, os.path.abspath(pool_server.__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        fcntl.fcntl(self._in, fcntl.F_SETFL, fcntl.fcntl(self._in, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.ready = threading.Event()
        self.dead = threading.Event()
        self._answers: dict[int, list[float]] = {}
        self._events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read_answers, name="tempo-math-helper-reader", daemon=True).start()

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                if line.strip() == b"ready":
                    self.ready.set()
                    continue
                answer = json.loads(line)
                with self._lock:
                    event = self._events.pop(answer["id"], None)
                    if event is not None:
                        self._answers[answer["id"]] = [float(answer["score"])]
                if event is not None:
                    event.set()
        except (OSError, ValueError, KeyError):
            pass
        self.dead.set()
        with self._lock:
            events, self._events = list(self._events.values()), {}
        for event in events:
            event.set()

    def ask(self, request: dict, deadline: float) -> float | None:
        """Send one request; its score, or None if no answer came by ``deadline`` (monotonic seconds)."""
        event = threading.Event()
        with self._lock:
            self._events[request["id"]] = event
        data = json.dumps(request).encode() + b"\n"
        with self._write_lock:
            while data:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [self._in], [], remaining)[1]:
                    return self._forget(request["id"])
                try:
                    data = data[os.write(self._in, data) :]
                except BlockingIOError:
                    continue
                except OSError:
                    self.dead.set()
                    return self._forget(request["id"])
        event.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._events.pop(request["id"], None)
            answer = self._answers.pop(request["id"], None)
        return answer[0] if answer else None

    def _forget(self, request_id: int) -> None:
        with self._lock:
            self._events.pop(request_id, None)
            self._answers.pop(request_id, None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the helper kills its children on stdin's end
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class MathPool:
    """This process's helper (restarted in the background when it dies) and its settings."""

    def __init__(self, config: Settings) -> None:
        self.pid = os.getpid()
        self.settings = config
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
        self._starting = False
        self._start_error: str | None = None

    def _current(self) -> _Helper | None:
        """The live helper, starting one in the background if there is none (None while it starts)."""
        with self._lock:
            helper = self._helper
            if helper is not None and not helper.dead.is_set():
                return helper
            if helper is not None:
                self._helper = None
                threading.Thread(target=helper.close, daemon=True).start()
            if not self._starting and self._start_error is None:
                self._starting = True
                threading.Thread(target=self._start, name="tempo-math-helper-start", daemon=True).start()
            return None

    def _start(self) -> None:
        try:
            helper = _Helper()
        except OSError as exc:
            with self._lock:
                self._start_error, self._starting = str(exc), False
            logger.warning("tempo_verl rewards: the math-verify helper cannot start (%s); checking in-process.", exc)
            return
        with self._lock:
            self._helper, self._starting = helper, False

    def check(self, gold: str, prediction: str) -> float:
        """math-verify's verdict within :attr:`Settings.timeout` seconds of the call; 0.0 when late."""
        deadline = time.monotonic() + self.settings.timeout
        while True:
            helper = self._current()
            if helper is not None:
                break
            if self._start_error is not None:
                return _check_in_thread(gold, prediction, deadline)
            if time.monotonic() >= deadline:
                return 0.0
            time.sleep(0.01)
        if not helper.ready.wait(max(0.0, deadline - time.monotonic())) or helper.dead.is_set():
            return 0.0
        request = {
            "id": next(self._ids),
            "gold": gold,
            "pred": prediction,
            "timeout": max(0.0, deadline - time.monotonic()),
            "workers": self.settings.workers,
        }
        score = helper.ask(request, deadline)
        return 0.0 if score is None else score

    def close(self) -> None:
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()


def _check_in_thread(gold: str, prediction: str, deadline: float) -> float:
    """The fallback without a helper: math-verify in a daemon thread, waited for until ``deadline``.

    The wait is bounded; a runaway check keeps its thread (and, in C code holding the GIL, can delay
    others): this path is only taken where no subprocess can be started, and says so in a warning.
    """
    result: list[float] = []
    if threading.current_thread() is threading.main_thread():
        seconds = max(1, math.ceil(deadline - time.monotonic()))
        return pool_server.verify(gold, prediction, seconds)
    worker = threading.Thread(target=lambda: result.append(pool_server.verify(gold, prediction, None)), daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    return result[0] if result else 0.0


_POOL: MathPool | None = None
_POOL_LOCK = threading.Lock()


def math_pool() -> MathPool:
    """This process's pool, created at first use (a forked child gets its own). Raises on bad settings."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = MathPool(_warn_if_short(settings()))
        return _POOL


def check_equivalent(gold: str, prediction: str) -> float:
    """1.0 if math-verify finds ``prediction`` equivalent to ``gold``; 0.0 otherwise or when not answered in time.

    Returns within ``TEMPO_REWARD_MATH_TIMEOUT`` seconds (plus thread scheduling) from any thread.

    Raises:
        ValueError: a bad ``TEMPO_REWARD_MATH_*`` setting (names the variable and the valid range).
    """
    return math_pool().check(gold, prediction)


def close_pool() -> None:
    """Stop this process's helper (its running checks are killed); the next check starts a new one."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(close_pool)
settings()  # a bad setting stops the run when verl loads the reward function, not at the first math answer
