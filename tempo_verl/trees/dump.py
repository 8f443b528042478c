"""Dump the prefix trees TEMPO builds during training, and read them (or verl's rollout dumps) back.

Format ``tempo-tree/1``: one JSON object per line, one line per group (prompt), one file
``tempo_trees_step{N}.jsonl`` per dumped step::

    {"format": "tempo-tree/1", "step": 50, "uid": "3f2a...", "root_value": 0.4286,
     "responses": [
        {"row": 17, "length": 412, "score": 1.0, "mask_holes": [[120, 180]],
         "branches": [[0, 0.4286, 0.6], [37, 0.6, 1.0]], "ids": [151644, 872, ...]},
        ...]}

- ``root_value``: ``V(empty prefix)``, the mean score of the group.
- ``ids``: the response token ids truncated to the valid length ``length`` (so ``len(ids) == length``);
  ``row``: the response's row in the training batch (informative only).
- ``mask_holes``: the runs ``[start, end)`` inside ``[0, length)`` where ``response_mask`` is 0
  (tool output in multi-turn rollouts; tokens in the tree but not trained on).
- ``branches``: the branch tokens of the response, ``[t, V(s_t), V(s_{t+1})]`` with increasing
  ``t``: the positions where another response of the group leaves this response's path (or ends).

The prefix value is constant between branch tokens, so the per-token arrays are recovered exactly
(:func:`token_values`): ``V(s_t)`` is the branch entry's ``V(s_t)`` at a branch token, else the
previous branch token's ``V(s_{t+1})`` (``root_value`` before the first); ``V(s_{t+1})`` is the entry's
at a branch token, else ``V(s_t)``; ``TD = V(s_{t+1}) - V(s_t)``, non-zero only at branch tokens.
Values are the float64 numbers the estimator used (JSON keeps every bit of a float64).

The writer (:class:`TreeDumpWriter`) copies a few groups' rows to the host on the training thread
and does everything else (lists, JSON, the file) on a daemon thread; it never raises.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tempo_verl.core.forest import PrefixForest, build_prefix_forest, group_layout, pairwise_common_prefix

__all__ = [
    "FORMAT",
    "TreeDumpWriter",
    "TreeInputError",
    "dump_file_name",
    "group_records",
    "input_files",
    "load_tree_input",
    "pairwise_lcp",
    "prefix_value",
    "token_values",
]

logger = logging.getLogger(__name__)

FORMAT = "tempo-tree/1"
_FORMAT_PREFIX = "tempo-tree/"
_TOLERANCE = 1e-9  # relative agreement demanded between stored prefix values and the tree


class TreeInputError(ValueError):
    """A tree input (our dump or verl's rollout dump) that cannot be read; the message is ``file:line: what``."""


def dump_file_name(step: int) -> str:
    """The dump file of one step: ``tempo_trees_step{step}.jsonl``."""
    return f"tempo_trees_step{step}.jsonl"


# ----------------------------------------------------------------------------------------------
# Building records from a PrefixForest
# ----------------------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """The chosen groups' data, on the host: what the background thread turns into records.

    Attributes:
        step: training step.
        group_rows: per chosen group, the positions (into the ``k`` snapshot rows) of its members.
        uids: per chosen group, its uid.
        rows: ``(k,)`` int64 batch rows of the chosen responses.
        ids: ``(k, Lk)`` token ids (``Lk``: the longest chosen valid length).
        mask: ``(k, Lk)`` response mask (any dtype; non-zero: trained).
        lengths: ``(k,)`` int64 valid lengths.
        scores: ``(k,)`` float64 outcome scores.
        b_row, b_pos, b_before, b_after: ``(nb,)`` branch entries of the chosen rows (``b_row``
            indexes the snapshot rows), sorted by row then position.
    """

    step: int
    group_rows: list[list[int]]
    uids: list[Any]
    rows: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    b_row: torch.Tensor
    b_pos: torch.Tensor
    b_before: torch.Tensor
    b_after: torch.Tensor


def _json_scalar(value: Any) -> Any:
    """A uid as a JSON value: strings and ints as they are, numpy scalars unwrapped, anything else as str."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    return str(value)


def _choose_groups(forest: PrefixForest, max_groups: int) -> list[int]:
    """Up to ``max_groups`` group ids: groups of two or more responses first, each set in batch order."""
    size = forest.layout.size.tolist()
    first_row = forest.layout.members[:, 0].tolist()
    order = sorted(range(len(size)), key=lambda g: (size[g] < 2, first_row[g]))
    return order[: max(0, max_groups)]


def _snapshot(
    forest: PrefixForest,
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    uids: Sequence,
    step: int,
    max_groups: int,
) -> _Snapshot:
    """Copy the chosen groups' rows to the host (the part that must run on the training thread)."""
    chosen = _choose_groups(forest, max_groups)
    device = forest.lengths.device
    members = forest.layout.members[torch.as_tensor(chosen, dtype=torch.long, device=device)].cpu()
    group_rows: list[list[int]] = []
    flat: list[int] = []
    for m in members.tolist():
        real = [r for r in m if r >= 0]
        group_rows.append(list(range(len(flat), len(flat) + len(real))))
        flat.extend(real)
    rows_cpu = torch.as_tensor(flat, dtype=torch.long)
    rows = rows_cpu.to(device)
    lengths = forest.lengths[rows].cpu()
    width = int(lengths.max()) if lengths.numel() else 0
    ids = responses[rows.to(responses.device), :width].cpu()
    mask = response_mask[rows.to(response_mask.device), :width].cpu()  # compared with 0 on the writer thread
    scores = forest.scores[rows].cpu()

    # Branch entries of the chosen rows; position of each batch row among the snapshot rows.
    where = torch.full((forest.lengths.shape[0],), -1, dtype=torch.long, device=device)
    where[rows] = torch.arange(rows.shape[0], device=device)
    b_local = where[forest.branch_row]
    keep = b_local >= 0
    b_row, b_pos = b_local[keep].cpu(), forest.branch_pos[keep].cpu()
    b_before, b_after = forest.value_before[keep].cpu(), forest.value_after[keep].cpu()
    order = torch.argsort(b_row * (width + 1) + b_pos)
    if isinstance(uids, torch.Tensor):
        uids = uids.cpu().numpy()
    index = np.asarray(uids, dtype=object) if not isinstance(uids, np.ndarray) else uids
    group_uids = [_json_scalar(index[flat[g[0]]]) if g else None for g in group_rows]
    return _Snapshot(
        step=int(step),
        group_rows=group_rows,
        uids=group_uids,
        rows=rows_cpu,
        ids=ids,
        mask=mask,
        lengths=lengths,
        scores=scores,
        b_row=b_row[order],
        b_pos=b_pos[order],
        b_before=b_before[order],
        b_after=b_after[order],
    )


def _holes(mask_row: np.ndarray) -> list[list[int]]:
    """Runs ``[start, end)`` where a ``(n,)`` bool mask is False."""
    off = np.concatenate(([0], (~mask_row).astype(np.int8), [0]))
    step = np.diff(off)
    starts, ends = np.flatnonzero(step == 1), np.flatnonzero(step == -1)
    return [[int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def _records_from_snapshot(snap: _Snapshot) -> list[dict]:
    """Turn a snapshot into ``tempo-tree/1`` records (pure host work: safe on a background thread)."""
    lengths = snap.lengths.tolist()
    scores = snap.scores.tolist()
    rows = snap.rows.tolist()
    mask = (snap.mask != 0).numpy()
    b_row = snap.b_row.tolist()
    entries = list(zip(snap.b_pos.tolist(), snap.b_before.tolist(), snap.b_after.tolist(), strict=True))
    per_row: list[list[list]] = [[] for _ in rows]
    for r, (t, before, after) in zip(b_row, entries, strict=True):
        per_row[r].append([t, before, after])
    records = []
    for uid, members in zip(snap.uids, snap.group_rows, strict=True):
        group_scores = [scores[k] for k in members]
        responses = []
        for k in members:
            n = lengths[k]
            responses.append(
                {
                    "row": rows[k],
                    "length": n,
                    "score": scores[k],
                    "mask_holes": _holes(mask[k, :n]),
                    "branches": per_row[k],
                    "ids": snap.ids[k, :n].tolist(),
                }
            )
            time.sleep(0)  # on the writer thread: let the training thread take the GIL between rows
        records.append(
            {
                "format": FORMAT,
                "step": snap.step,
                "uid": uid,
                "root_value": math.fsum(group_scores) / len(group_scores),
                "responses": responses,
            }
        )
    return records


def group_records(
    forest: PrefixForest,
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    uids: Sequence,
    step: int,
    max_groups: int,
) -> list[dict]:
    """Build the ``tempo-tree/1`` records of up to ``max_groups`` groups of a batch.

    The groups are chosen deterministically: groups of two or more responses first, each set in
    batch order (of its first row). Only the chosen rows are copied or read.

    Args:
        forest: the prefix trees the estimator built for the batch.
        responses: ``(bs, L)`` response token ids (any device).
        response_mask: ``(bs, L)`` 0/1 trained tokens.
        uids: ``(bs,)`` prompt ids (verl's ``non_tensor_batch['uid']``).
        step: the training step.
        max_groups: at most this many groups.

    Returns:
        One dict per group, in the format described in the module docstring.
    """
    return _records_from_snapshot(_snapshot(forest, responses, response_mask, uids, step, max_groups))


_JSON = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}


def _dumps(record: dict) -> str:
    """One record as one JSON line, encoded a response at a time (short GIL holds on the writer thread)."""
    head = json.dumps({k: v for k, v in record.items() if k != "responses"}, **_JSON)
    parts = []
    for response in record["responses"]:
        parts.append(json.dumps(response, **_JSON))
        time.sleep(0)
    return head[:-1] + ',"responses":[' + ",".join(parts) + "]}"


def _write_records(directory: Path, step: int, records: list[dict]) -> Path:
    """Write one step's records atomically (a temporary file renamed into place)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / dump_file_name(step)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(_dumps(record) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ----------------------------------------------------------------------------------------------
# The background writer
# ----------------------------------------------------------------------------------------------


class TreeDumpWriter:
    """Writes the prefix trees of a few groups every ``every`` steps, off the training thread.

    A step is dumped when ``step % every == 0``, and so is the first step the writer sees (a short
    run, or a run resumed between two dump steps, still leaves one file to look at). Nothing here
    raises: a failure is logged at WARNING and the dump is skipped; training goes on.

    Attributes:
        directory: where the ``tempo_trees_step{N}.jsonl`` files go (created at the first write).
        every: dump period in steps.
        groups: at most this many groups per dumped step.
        max_pending: dumps waiting for the writer thread beyond which a new one is skipped.
        last_caller_s: seconds the last scheduled dump took on the caller's thread.
        last_write_s: seconds the last write took on the background thread.
        written: paths written so far.
        failures: number of dumps skipped after an error.
    """

    def __init__(self, directory: str | os.PathLike, every: int = 50, groups: int = 8, max_pending: int = 2) -> None:
        self.directory = Path(directory)
        self.every = max(1, int(every))
        self.groups = max(1, int(groups))
        self.max_pending = max(1, int(max_pending))
        self.last_caller_s = 0.0
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
        start = time.perf_counter()
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
                snap = _snapshot(forest, responses, response_mask, uids, int(step), self.groups)
                self._ensure_thread()
                self._queue.put(snap)
            except BaseException:
                with self._lock:
                    self._pending -= 1
                raise
            self.last_caller_s = time.perf_counter() - start
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
                path = _write_records(self.directory, snap.step, _records_from_snapshot(snap))
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


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def pairwise_lcp(ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Longest common prefix of every pair of responses of one group (the estimator's own computation).

    Args:
        ids: ``G`` token-id sequences.

    Returns:
        ``(G, G)`` int64; the diagonal holds each length.
    """
    rows = [torch.as_tensor(list(x), dtype=torch.long) for x in ids]
    if not rows:
        return np.zeros((0, 0), dtype=np.int64)
    lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    layout = group_layout(torch.zeros(len(rows), dtype=torch.long))
    return pairwise_common_prefix(padded, lengths, layout).numpy()


def prefix_value(response: dict, root_value: float, depth: int) -> float:
    """``V(y[:depth])`` of one response record (``0 <= depth <= length``), from its branch entries."""
    value = root_value
    for t, before, after in response["branches"]:
        if t == depth:
            return before
        if t > depth:
            break
        value = after
    return value


def token_values(response: dict, root_value: float) -> tuple[list[float], list[float], list[float]]:
    """The exact per-token arrays of one response record.

    Returns:
        ``(v_before, v_after, td)``, each ``(length,)``: ``V(s_t)``, ``V(s_{t+1})`` and their difference.
    """
    n = response["length"]
    before, after = [0.0] * n, [0.0] * n
    value = root_value
    branches = {t: (b, a) for t, b, a in response["branches"]}
    for t in range(n):
        if t in branches:
            before[t], after[t] = branches[t]
        else:
            before[t] = after[t] = value
        value = after[t]
    return before, after, [a - b for a, b in zip(after, before, strict=True)]


def _step_of(path: Path) -> int | None:
    match = re.search(r"(\d+)(?=\.jsonl$)", path.name)
    return int(match.group(1)) if match else None


def input_files(path: str | os.PathLike) -> list[tuple[int | None, Path]]:
    """The ``*.jsonl`` files of an input (a file, or a directory of them), as ``(step, path)`` sorted by step.

    The step is the number that ends the file name (``50.jsonl``, ``tempo_trees_step50.jsonl``).

    Raises:
        TreeInputError: the path does not exist or the directory holds no ``*.jsonl`` file.
    """
    p = Path(path)
    if p.is_dir():
        files = [(_step_of(f), f) for f in p.glob("*.jsonl") if f.is_file()]
        if not files:
            raise TreeInputError(
                f"{p}: no *.jsonl files in this directory (expected a tempo-tree or verl rollout dump)"
            )
        return sorted(files, key=lambda sf: (sf[0] is None, sf[0] or 0, sf[1].name))
    if not p.exists():
        raise TreeInputError(f"{p}: no such file or directory")
    return [(_step_of(p), p)]


def _read_lines(path: Path) -> list[tuple[int, dict]]:
    """The JSON objects of a JSONL file with their 1-based line numbers (blank lines skipped)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TreeInputError(f"{path}: cannot read ({err.strerror or err})") from None
    out = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise TreeInputError(f"{path}:{number}: not UTF-8 text") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise TreeInputError(f"{path}:{number}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict):
            raise TreeInputError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        out.append((number, obj))
    if not out:
        raise TreeInputError(f"{path}:1: empty file (no JSON lines)")
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= _TOLERANCE * scale


def _check_dump_record(obj: dict, where: str) -> dict:
    """Validate one ``tempo-tree/1`` line (fields, types, ranges, agreement with its own tree)."""

    def fail(what: str) -> TreeInputError:
        return TreeInputError(f"{where}: {what}")

    fmt = obj.get("format")
    if fmt != FORMAT:
        raise fail(f"format {fmt!r} is not supported (this tempo-verl reads {FORMAT!r})")
    for key in ("step", "uid", "root_value", "responses"):
        if key not in obj:
            raise fail(f"missing field '{key}'")
    if not _is_int(obj["step"]) or obj["step"] < 0:
        raise fail(f"step: expected a non-negative integer, got {obj['step']!r}")
    if not isinstance(obj["uid"], str | int) or isinstance(obj["uid"], bool):
        raise fail(f"uid: expected a string or an integer, got {obj['uid']!r}")
    if not _is_number(obj["root_value"]):
        raise fail(f"root_value: expected a finite number, got {obj['root_value']!r}")
    responses = obj["responses"]
    if not isinstance(responses, list) or not responses:
        raise fail("responses: expected a non-empty list of response objects")
    for k, resp in enumerate(responses):
        name = f"responses[{k}]"
        if not isinstance(resp, dict):
            raise fail(f"{name}: expected an object, got {type(resp).__name__}")
        for key in ("ids", "length", "score", "mask_holes", "branches"):
            if key not in resp:
                raise fail(f"{name}: missing field '{key}'")
        ids, n = resp["ids"], resp["length"]
        if not isinstance(ids, list) or not all(_is_int(x) and x >= 0 for x in ids):
            raise fail(f"{name}.ids: expected a list of non-negative integer token ids")
        if not _is_int(n) or n < 0:
            raise fail(f"{name}.length: expected a non-negative integer, got {n!r}")
        if n > len(ids):
            raise fail(f"{name}.length: {n} is beyond its {len(ids)} token ids")
        if n < len(ids):
            raise fail(f"{name}.length: {n}, but {len(ids)} token ids (ids are stored truncated to the length)")
        if not _is_number(resp["score"]):
            raise fail(f"{name}.score: expected a finite number, got {resp['score']!r}")
        holes = resp["mask_holes"]
        if not isinstance(holes, list):
            raise fail(f"{name}.mask_holes: expected a list of [start, end) runs")
        prev_end = -1
        for h in holes:
            ok = isinstance(h, list) and len(h) == 2 and all(_is_int(x) for x in h)
            if not ok or not (prev_end + 1 <= h[0] < h[1] <= n):
                raise fail(
                    f"{name}.mask_holes: {h!r} is not a sorted, disjoint [start, end) run inside [0, {n}) "
                    "(runs of tokens that are not trained on)"
                )
            prev_end = h[1]
        branches = resp["branches"]
        if not isinstance(branches, list):
            raise fail(f"{name}.branches: expected a list of [t, V(s_t), V(s_t+1)] entries")
        prev_t = -1
        for b in branches:
            ok = isinstance(b, list) and len(b) == 3 and _is_int(b[0]) and _is_number(b[1]) and _is_number(b[2])
            if not ok or not (prev_t < b[0] < n):
                raise fail(
                    f"{name}.branches: {b!r} is not a [t, V(s_t), V(s_t+1)] entry with increasing t inside [0, {n})"
                )
            prev_t = b[0]
    _check_against_tree(obj, fail)
    obj["uid"] = str(obj["uid"])
    return obj


def _check_against_tree(obj: dict, fail) -> None:
    """The stored branch tokens and values must be those of the group's own prefix tree."""
    responses = obj["responses"]
    scores = np.array([r["score"] for r in responses], dtype=np.float64)
    scale = max(1.0, float(np.abs(scores).max()))
    if not _close(obj["root_value"], float(scores.mean()), scale):
        raise fail(f"root_value: {obj['root_value']!r} is not the mean score of the group ({scores.mean()!r})")
    lcp = pairwise_lcp([r["ids"] for r in responses])
    for i, resp in enumerate(responses):
        n = resp["length"]
        others = np.delete(lcp[i], i)
        expected = sorted({int(d) for d in others if d < n})
        stored = [b[0] for b in resp["branches"]]
        if stored != expected:
            raise fail(
                f"responses[{i}].branches: the group's tree branches at tokens {expected} of this response, "
                f"the record lists {stored}"
            )
        for t, before, after in resp["branches"]:
            for label, depth, value in (("V(s_t)", t, before), ("V(s_t+1)", t + 1, after)):
                through = lcp[i] >= depth
                want = float(scores[through].mean())
                if not _close(value, want, scale):
                    raise fail(
                        f"responses[{i}].branches at t={t}: {label} = {value!r}, but the mean score of the "
                        f"{int(through.sum())} responses through that prefix is {want!r}"
                    )


def _verl_rows_to_records(path: Path, rows: list[tuple[int, dict]], tokenizer: Any) -> list[dict]:
    """Group verl rollout rows by prompt, re-tokenize the outputs and build their prefix trees."""
    if tokenizer is None:
        raise TreeInputError(
            f"{path}:{rows[0][0]}: this is a verl rollout dump (text only): pass --tokenizer (the run's "
            "tokenizer directory or hub id) to re-tokenize 'output'"
        )
    for number, obj in rows:
        for key in ("input", "output", "score"):
            if key not in obj:
                raise TreeInputError(
                    f"{path}:{number}: missing field '{key}' (verl rollout rows have input, output, score)"
                )
        if not isinstance(obj["input"], str) or not isinstance(obj["output"], str):
            raise TreeInputError(f"{path}:{number}: 'input' and 'output' must be strings")
        if not _is_number(obj["score"]):
            raise TreeInputError(f"{path}:{number}: score: expected a finite number, got {obj['score']!r}")
        if "step" in obj and not (_is_int(obj["step"]) and obj["step"] >= 0):
            raise TreeInputError(f"{path}:{number}: step: expected a non-negative integer, got {obj['step']!r}")
    try:
        encoded = tokenizer([obj["output"] for _, obj in rows], add_special_tokens=False)["input_ids"]
    except Exception as err:
        raise TreeInputError(f"{path}:{rows[0][0]}: the tokenizer failed on 'output': {err}") from None
    prompts: dict[str, int] = {}
    group = [prompts.setdefault(obj["input"], len(prompts)) for _, obj in rows]
    lengths = torch.tensor([len(x) for x in encoded], dtype=torch.long)
    width = int(lengths.max()) if lengths.numel() else 0
    responses = torch.zeros((len(rows), width), dtype=torch.long)
    for i, x in enumerate(encoded):
        responses[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    scores = torch.tensor([float(obj["score"]) for _, obj in rows], dtype=torch.float64)
    group_ids = torch.tensor(group, dtype=torch.long)
    forest = build_prefix_forest(responses, lengths, group_ids, scores)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    uids = [_prompt_uid(obj["input"]) for _, obj in rows]
    step = rows[0][1].get("step", _step_of(path) or 0)
    records = _records_from_snapshot(_snapshot(forest, responses, mask, uids, step, len(prompts)))
    first_line: dict[str, int] = {}
    for number, obj in rows:
        first_line.setdefault(_prompt_uid(obj["input"]), number)
    text = {_prompt_uid(p): p for p in prompts}
    for record in records:
        record["prompt"] = text[record["uid"]]
        record["source"] = f"{path}:{first_line[record['uid']]}"
    # In the order of the prompts' first appearance in the file.
    return sorted(records, key=lambda r: first_line[r["uid"]])


def _prompt_uid(prompt: str) -> str:
    """A short stable id for a prompt text (verl's rollout dump has no group id)."""
    return "p" + hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:10]


def _load_file(path: Path, tokenizer: Any) -> list[dict]:
    rows = _read_lines(path)
    number, first = rows[0]
    if "format" in first:
        records = []
        for number, obj in rows:
            record = _check_dump_record(obj, f"{path}:{number}")
            record["source"] = f"{path}:{number}"
            records.append(record)
        return records
    if "input" in first or "output" in first:
        return _verl_rows_to_records(path, rows, tokenizer)
    raise TreeInputError(
        f"{path}:{number}: neither a tempo-tree dump line (no 'format' field) nor a verl rollout row "
        "(no 'input'/'output' fields)"
    )


def load_tree_input(path: str | os.PathLike, tokenizer: Any = None) -> list[dict]:
    """Read a tree dump or a verl rollout dump (a ``.jsonl`` file or a directory of them); format detected.

    - ``tempo-tree/1`` files (our dump): every line is validated, including that its branch tokens
      and prefix values are those of the group's own prefix tree.
    - verl rollout dumps (``trainer.rollout_data_dir``: ``{step}.jsonl``, rows with ``input``,
      ``output``, ``score``, ``step``, ...): ``output`` is re-tokenized with ``tokenizer``, rows are
      grouped by ``input`` and each group's tree is built as TEMPO would.

    Args:
        path: a file, or a directory whose ``*.jsonl`` files are all read (in step order).
        tokenizer: a Hugging Face tokenizer; needed for verl rollout dumps only.

    Returns:
        ``tempo-tree/1`` records (dicts), each with an extra ``source`` (``"file:line"``); records
        from verl dumps also carry ``prompt`` (the input text) and a ``uid`` made from it.

    Raises:
        TreeInputError: ``"{file}:{line}: {what is wrong}"``.
    """
    records: list[dict] = []
    for _, f in input_files(path):
        records.extend(_load_file(f, tokenizer))
    return records
