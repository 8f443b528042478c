"""The math-verify helper process: one check per forked child, each killed at its deadline.

Started by :mod:`tempo_verl.recipes.rewards.pool` as a script (``runpy.run_path`` of this file: it
imports only the standard library and ``math_verify``, never ``tempo_verl`` or verl). It imports
math-verify once, says ``ready``, then reads one JSON request per stdin line::

    {"id": 7, "gold": "\\\\boxed{1/2}", "pred": "\\\\boxed{0.5}", "timeout": 9.9, "workers": 4}

and hands it to a worker: a child forked from this warm process (forking costs about 20 ms, no
import), which runs :func:`verify` and reports through a pipe, then waits for the next check. In the
worker's main thread math-verify's own ``signal.alarm`` limit (a third of the timeout, 1-5 s per step)
ends most slow checks early, and the worker lives on. A worker still busy at its check's deadline is
killed (SIGKILL: math-verify can be stuck in C code where no signal handler runs) and the request
answered 0.0; a new worker is forked when needed, so a kill never costs a restart. At most ``workers``
checks younger than :data:`STALE_AFTER_S` run at once (others wait here, each still bound by its
deadline); an older check is lowered to the lowest CPU priority and stops counting, so slow inputs do
not hold up fast ones.
Each answer is one stdout line ``{"id": 7, "score": 1.0}``. On stdin's end every worker is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time

#: A check running longer than this (seconds) is presumed slow: niced, and no longer counted in ``workers``.
STALE_AFTER_S = 1.0
#: Most children alive at once, slow ones included (memory guard); more requests wait.
MAX_CHILDREN = 64


def verify(gold: str, prediction: str, timeout_seconds: int | None) -> float:
    """1.0 if math-verify finds ``prediction`` equivalent to ``gold`` (both LaTeX/plain text), else 0.0.

    ``timeout_seconds`` is math-verify's own ``signal.alarm`` limit per step (main thread only);
    None: unbounded (the caller bounds it). Never raises (but passes KeyboardInterrupt/SystemExit).
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from math_verify import verify as equivalent

    try:
        gold_parsed = parse(
            gold, extraction_config=(LatexExtractionConfig(), ExprExtractionConfig()), parsing_timeout=timeout_seconds
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
        return 1.0 if equivalent(gold_parsed, pred_parsed, timeout_seconds=timeout_seconds) else 0.0
    except BaseException as exc:  # math-verify's TimeoutException derives from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return 0.0


class _Check:
    """One request: its id, texts and deadline (monotonic seconds)."""

    def __init__(self, request: dict) -> None:
        self.id = request["id"]
        timeout = max(0.0, float(request["timeout"]))
        # math-verify's own alarm (per parse/verify step) ends most slow checks without a kill
        alarm = min(5, max(1, int(timeout / 3)))
        self.line = json.dumps([str(request["gold"]), str(request["pred"]), alarm]).encode() + b"\n"
        self.deadline = time.monotonic() + timeout


class _Worker:
    """A child forked from this warm process: reads ``[gold, pred, alarm]`` lines, writes a byte ``1``/``0`` each."""

    def __init__(self) -> None:
        request_read, self.request_fd = os.pipe()
        self.result_fd, result_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: serve until the request pipe ends, leave without the parent's cleanup
            _detach(keep=(request_read, result_write))
            with contextlib.suppress(BaseException), os.fdopen(request_read, "rb") as requests:
                for line in requests:
                    gold, prediction, alarm = json.loads(line)
                    os.write(result_write, b"1" if verify(gold, prediction, alarm) == 1.0 else b"0")
            os._exit(0)
        os.close(request_read)
        os.close(result_write)
        self.check: _Check | None = None
        self.started = 0.0
        self.niced = False

    def give(self, check: _Check) -> None:
        self.check, self.started = check, time.monotonic()
        os.write(self.request_fd, check.line)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.request_fd)
        os.close(self.result_fd)


def _detach(keep: tuple[int, ...]) -> None:
    """In a new worker: hold no descriptor but ``keep`` (so pipes end when their owner goes), die with the helper."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    with contextlib.suppress(Exception):  # Linux: SIGKILL this worker when the helper dies
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _answer(check: _Check, score: float) -> None:
    os.write(sys.stdout.fileno(), json.dumps({"id": check.id, "score": score}).encode() + b"\n")


def _warm_up() -> None:
    """Run a few checks here so that every worker forked later starts with math-verify's lazy parts loaded."""
    for gold, prediction in (("\\boxed{\\frac{1}{2}}", "\\boxed{0.5}"), ("\\boxed{x^2+2x}", "The answer is $2x+x^2$")):
        verify(gold, prediction, None)


def serve() -> None:
    """The helper's loop (see the module docstring); returns when stdin ends."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    _warm_up()
    os.write(sys.stdout.fileno(), b"ready\n")
    waiting: list[_Check] = []
    idle: list[_Worker] = []
    busy: dict[int, _Worker] = {}  # result fd -> worker
    try:
        _loop(waiting, idle, busy)
    except BrokenPipeError:  # the scoring process is gone: nobody to answer
        pass
    finally:
        for worker in [*idle, *busy.values()]:
            worker.stop()


def _loop(waiting: list[_Check], idle: list[_Worker], busy: dict[int, _Worker]) -> None:
    """Answer requests until stdin ends (the workers are the caller's to stop)."""
    stdin = sys.stdin.fileno()
    buffer = b""
    workers = 1
    while True:
        now = time.monotonic()
        for check in [c for c in waiting if c.deadline <= now]:
            waiting.remove(check)
            _answer(check, 0.0)
        for fd, worker in list(busy.items()):
            if worker.check.deadline <= now:  # too late: kill it (it may be stuck in C code)
                del busy[fd]
                worker.stop()
                _answer(worker.check, 0.0)
            elif not worker.niced and now - worker.started > STALE_AFTER_S:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, worker.pid, 19)
                worker.niced = True
        young = sum(1 for worker in busy.values() if not worker.niced)
        while waiting and (idle or (young < workers and len(busy) < MAX_CHILDREN)):
            worker = idle.pop() if idle else _Worker()
            worker.give(waiting.pop(0))
            busy[worker.result_fd] = worker
            young += 1
        wakeups = [c.deadline for c in waiting] + [w.check.deadline for w in busy.values()]
        wakeups += [w.started + STALE_AFTER_S for w in busy.values() if not w.niced]
        timeout = max(0.0, min(wakeups) - time.monotonic()) if wakeups else None
        readable, _, _ = select.select([stdin, *busy], [], [], timeout)
        for fd in readable:
            if fd != stdin:
                worker = busy.pop(fd)
                result = os.read(fd, 1)
                _answer(worker.check, 1.0 if result == b"1" else 0.0)
                if result and not worker.niced and len(idle) < workers:
                    idle.append(worker)  # a niced worker cannot be un-niced: replace it
                else:
                    worker.stop()
                continue
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    request = json.loads(line)
                    workers = max(1, int(request.get("workers", workers)))
                    waiting.append(_Check(request))


if __name__ in ("__main__", "tempo_verl_math_helper"):
    serve()
