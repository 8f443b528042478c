"""The background writer of the tree dump: a few groups' ``tempo-tree/1`` records every ``every`` steps.

The training thread only picks the groups and copies their rows to the host
(:func:`~tempo_verl.trees.records.snapshot`); the records, the JSON and the file are made on a daemon
thread. Nothing here raises into training.

Files never clobber one another and are never seen half-written: each writer names its files
``tempo_trees_step{N}.{writer_id}.jsonl`` with an id of its own (start time + random hex), writes a
hidden temporary file in the same folder and publishes it with a hard link, which fails rather than
replace an existing file (a clash, should one happen, takes the next free name ``...{writer_id}-2``).
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from tempo_verl.core.forest import PrefixForest
from tempo_verl.trees.format import dump_file_name
from tempo_verl.trees.records import choose_groups, records_from_snapshot, snapshot

__all__ = ["TreeDumpWriter", "write_records"]

logger = logging.getLogger(__name__)

_JSON = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}


def _dumps(record: dict) -> str:
    """One record as one JSON line, encoded a response at a time (short GIL holds on the writer thread)."""
    head = json.dumps({k: v for k, v in record.items() if k != "responses"}, **_JSON)
    parts = []
    for response in record["responses"]:
        parts.append(json.dumps(response, **_JSON))
        time.sleep(0)
    return head[:-1] + ',"responses":[' + ",".join(parts) + "]}"


def write_records(directory: Path, name: str, records: list[dict]) -> Path:
    """Write records as ``directory/name`` (JSONL), whole or not at all, never over an existing file.

    Args:
        directory: the folder (created if missing).
        name: the file name wanted; if it is taken, ``{stem}-2.jsonl``, ``{stem}-3.jsonl``, ... instead.

    Returns:
        The path written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            for record in records:
                f.write(_dumps(record) + "\n")
        stem = name.removesuffix(".jsonl")
        for k in range(1, 1000):
            path = directory / (name if k == 1 else f"{stem}-{k}.jsonl")
            try:
                os.link(tmp, path)  # atomic, and fails instead of replacing an existing file
                return path
            except FileExistsError:
                continue
            except OSError as err:  # a file system without hard links: the name is ours alone (writer id)
                if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV) or path.exists():
                    raise
                os.replace(tmp, path)
                return path
        raise FileExistsError(f"{directory / name}: a thousand files of this name exist already")
    finally:
        tmp.unlink(missing_ok=True)


class TreeDumpWriter:
    """Writes the prefix trees of a few groups every ``every`` steps, off the training thread.

    A step is dumped when ``step % every == 0``, and so is the first step the writer sees (a short
    run, or a run resumed between two dump steps, still leaves one file to look at). Nothing here
    raises: a failure is logged at WARNING and the dump is skipped; training goes on.

    Attributes:
        directory: where the ``tempo_trees_step{N}.{writer_id}.jsonl`` files go (created at the first write).
        writer_id: this writer's part of the file names (start time and random hex): unique to it, so
            runs and writers sharing ``directory`` never write the same file.
        every: dump period in steps.
        groups: at most this many groups per dumped step.
        max_pending: dumps waiting for the writer thread beyond which a new one is skipped.
        last_write_s: seconds the last write took on the background thread.
        written: paths written so far.
        failures: number of dumps skipped after an error.
    """

    def __init__(self, directory: str | os.PathLike, every: int = 50, groups: int = 8, max_pending: int = 2) -> None:
        self.directory = Path(directory)
        self.writer_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.every = max(1, int(every))
        self.groups = max(1, int(groups))
        self.max_pending = max(1, int(max_pending))
        self.last_write_s = 0.0
        self.written: list[Path] = []
        self.failures = 0
        self._seen_step = False
        self._last_step: int | None = None
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close, 30.0)

    def should_dump(self, step: int | None) -> bool:
        """Whether ``step`` is a dump step (a multiple of ``every``, or the first step seen; never twice)."""
        if step is None or step == self._last_step:
            return False
        return not self._seen_step or step % self.every == 0

    def maybe_dump(
        self,
        step: int | None,
        forest: PrefixForest,
        responses: torch.Tensor,
        response_mask: torch.Tensor,
        uids: Sequence,
    ) -> bool:
        """Schedule the dump of this step's trees if it is a dump step; never raises.

        On the caller's thread only the chosen groups' rows are copied to the host; the records,
        the JSON and the file are made on a daemon thread.

        Args:
            step: the training step (no dump when None).
            forest: the batch's prefix trees; ``responses``/``response_mask``: ``(bs, L)``;
            uids: ``(bs,)`` prompt ids.

        Returns:
            True when a dump was scheduled.
        """
        try:
            if self._closed or not self.should_dump(step):
                return False
            self._seen_step = True
            self._last_step = step
            with self._lock:
                if self._pending >= self.max_pending:
                    logger.warning(
                        "tempo-verl: tree dump of step %s skipped: %d earlier dumps are still being written to %s.",
                        step,
                        self._pending,
                        self.directory,
                    )
                    self.failures += 1
                    return False
                self._pending += 1
            try:
                groups = choose_groups(forest, self.groups)
                snap = snapshot(forest, responses, response_mask, uids, int(step), groups)
                self._ensure_thread()
                self._queue.put(snap)
            except BaseException:
                with self._lock:
                    self._pending -= 1
                raise
            return True
        except Exception as err:  # never let a dump stop training
            with self._lock:
                self.failures += 1
            logger.warning("tempo-verl: tree dump of step %s skipped: %s: %s", step, type(err).__name__, err)
            return False

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="tempo-tree-dump", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            snap = self._queue.get()
            if snap is None:
                return
            start = time.perf_counter()
            try:
                name = dump_file_name(snap.step, self.writer_id)
                path = write_records(self.directory, name, records_from_snapshot(snap))
                self.written.append(path)
            except Exception as err:  # a failed write is skipped, never raised
                with self._lock:
                    self.failures += 1
                logger.warning(
                    "tempo-verl: could not write the tree dump of step %d to %s (skipped; training goes on): %s: %s",
                    snap.step,
                    self.directory,
                    type(err).__name__,
                    err,
                )
            finally:
                self.last_write_s = time.perf_counter() - start
                with self._lock:
                    self._pending -= 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every scheduled dump is written (or ``timeout`` seconds pass); True if none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._pending == 0:
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def close(self, timeout: float | None = None) -> None:
        """Write what is scheduled, then stop the thread (idempotent; later ``maybe_dump`` calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout)
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join(timeout)
        except Exception as err:  # pragma: no cover - defensive: close() runs at interpreter exit
            logger.warning("tempo-verl: closing the tree dump writer: %s", err)
