"""The ``tempo-tree/1`` format: what a record holds, how one is made from a PrefixForest, how one is checked.

One JSON object per line, one line per group (prompt)::

    {"format": "tempo-tree/1", "step": 50, "uid": "3f2a...", "root_value": 0.4286,
     "responses": [
        {"row": 17, "length": 412, "score": 1.0, "mask_holes": [[120, 180]],
         "branches": [[0, 0.4286, 0.6], [37, 0.6, 1.0]], "ids": [151644, 872, ...]},
        ...]}

- ``root_value``: ``V(empty prefix)``, the mean score of the group.
- ``ids``: the response token ids truncated to the valid length ``length`` (so ``len(ids) == length``),
  each in ``[0, 2**63)``; ``row``: the response's row in the training batch (informative only).
- ``mask_holes``: the runs ``[start, end)`` inside ``[0, length)`` where ``response_mask`` is 0
  (tool output in multi-turn rollouts; tokens in the tree but not trained on).
- ``branches``: the branch tokens of the response, ``[t, V(s_t), V(s_{t+1})]`` with increasing
  ``t``: the positions where another response of the group leaves this response's path (or ends).

The prefix value is constant between branch tokens, so the per-token arrays are recovered exactly by
the core's :func:`~tempo_verl.core.forest.expand_values` (:func:`record_values`, :func:`token_values`).
Values are the float64 numbers the estimator used (JSON keeps every bit of a float64).
Files: ``tempo_trees_step{N}.{writer}.jsonl``, one per dumped step and writer (:func:`dump_file_name`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tempo_verl.core.forest import build_prefix_forest, expand_values, pairwise_common_prefix
from tempo_verl.core.groups import group_layout

__all__ = [
    "FORMAT",
    "INT64_MAX",
    "TreeInputError",
    "check_record",
    "dump_file_name",
    "file_step",
    "is_count",
    "is_number",
    "pairwise_lcp",
    "record_values",
    "root_value",
    "token_values",
]

FORMAT = "tempo-tree/1"
INT64_MAX = 2**63 - 1  # token ids, steps and lengths are int64 in torch
_TOLERANCE = 1e-9  # relative agreement demanded between stored prefix values and the tree
_DUMP_NAME = re.compile(r"^tempo_trees_step(\d+)(?:\.[A-Za-z0-9_-]+)?\.jsonl$")
_ANY_STEP_NAME = re.compile(r"(\d+)\.jsonl$")


class TreeInputError(ValueError):
    """A tree input (our dump or verl's rollout dump) that cannot be read; the message is ``file:line: what``."""


def dump_file_name(step: int, writer: str | None = None) -> str:
    """The dump file of one step: ``tempo_trees_step{step}.{writer}.jsonl`` (``writer``: an id unique to a run)."""
    return f"tempo_trees_step{step}.{writer}.jsonl" if writer else f"tempo_trees_step{step}.jsonl"


def file_step(path: Path) -> int | None:
    """The step a file name says: ``tempo_trees_step50[.writer].jsonl``, verl's ``50.jsonl``; else None."""
    match = _DUMP_NAME.match(path.name) or _ANY_STEP_NAME.search(path.name)
    return int(match.group(1)) if match else None


def is_count(x: Any) -> bool:
    """A non-negative integer that fits int64 (a step, a length, a token id)."""
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= INT64_MAX


def is_number(x: Any) -> bool:
    """A finite JSON number that fits a float64 (``10**400`` does not)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def root_value(scores: Sequence[float]) -> float:
    """``V(empty prefix)`` of a group: the mean of its ``(G,)`` scores, summed exactly."""
    return math.fsum(scores) / len(scores)


def pairwise_lcp(ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """Longest common prefix of every pair of responses of one group (the estimator's own computation).

    Args:
        ids: ``G`` token-id sequences.

    Returns:
        ``(G, G)`` int64; the diagonal holds each length.
    """
    rows = [torch.as_tensor(list(x), dtype=torch.long) for x in ids]
    if not rows:
        return torch.zeros((0, 0), dtype=torch.long)
    lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    layout = group_layout(torch.zeros(len(rows), dtype=torch.long))
    return pairwise_common_prefix(padded, lengths, layout)


def record_values(record: dict) -> torch.Tensor:
    """``V(y_i[:t])`` of every response of a record, ``t = 0..longest length``.

    Returns:
        ``(G, W + 1)`` float64, NaN past each response's length.
    """
    responses = record["responses"]
    entries = [(k, t, before, after) for k, r in enumerate(responses) for t, before, after in r["branches"]]
    row, pos, before, after = (list(column) for column in zip(*entries, strict=True)) if entries else ([],) * 4
    lengths = torch.tensor([r["length"] for r in responses], dtype=torch.long)
    return expand_values(
        lengths,
        torch.tensor(row, dtype=torch.long),
        torch.tensor(pos, dtype=torch.long),
        torch.tensor(before, dtype=torch.float64),
        torch.tensor(after, dtype=torch.float64),
        torch.full((len(responses),), float(record["root_value"]), dtype=torch.float64),
        int(lengths.max()) if len(responses) else 0,
    )


def token_values(response: dict, root_value: float) -> tuple[list[float], list[float], list[float]]:
    """The exact per-token arrays of one response record.

    Returns:
        ``(v_before, v_after, td)``, each ``(length,)``: ``V(s_t)``, ``V(s_{t+1})`` and their difference.
    """
    values = record_values({"root_value": root_value, "responses": [response]})[0]
    before, after = values[:-1], values[1:]
    return before.tolist(), after.tolist(), (after - before).tolist()


def check_record(obj: dict, where: str) -> dict:
    """Validate one ``tempo-tree/1`` line (fields, types, ranges, agreement with its own tree).

    Args:
        obj: the parsed JSON object.
        where: ``"file:line"`` for the error messages.

    Returns:
        ``obj`` with its uid as a string.

    Raises:
        TreeInputError: ``"{where}: {field}: {what is wrong}"``.
    """

    def fail(what: str) -> TreeInputError:
        return TreeInputError(f"{where}: {what}")

    fmt = obj.get("format")
    if fmt != FORMAT:
        raise fail(f"format {fmt!r:.40} is not supported (this tempo-verl reads {FORMAT!r})")
    for key in ("step", "uid", "root_value", "responses"):
        if key not in obj:
            raise fail(f"missing field '{key}'")
    if not is_count(obj["step"]):
        raise fail(f"step: expected a non-negative integer below 2**63, got {obj['step']!r:.40}")
    if not isinstance(obj["uid"], str | int) or isinstance(obj["uid"], bool):
        raise fail(f"uid: expected a string or an integer, got {obj['uid']!r:.40}")
    if not is_number(obj["root_value"]):
        raise fail(f"root_value: expected a finite number, got {obj['root_value']!r:.40}")
    responses = obj["responses"]
    if not isinstance(responses, list) or not responses:
        raise fail("responses: expected a non-empty list of response objects")
    for k, resp in enumerate(responses):
        _check_response(resp, f"responses[{k}]", fail)
    _check_against_tree(obj, fail)
    obj["uid"] = str(obj["uid"])
    return obj


def _check_response(resp: Any, name: str, fail: Callable[[str], TreeInputError]) -> None:
    """Fields, types and ranges of one response object."""
    if not isinstance(resp, dict):
        raise fail(f"{name}: expected an object, got {type(resp).__name__}")
    for key in ("ids", "length", "score", "mask_holes", "branches"):
        if key not in resp:
            raise fail(f"{name}: missing field '{key}'")
    ids, n = resp["ids"], resp["length"]
    if not isinstance(ids, list) or not all(is_count(x) for x in ids):
        raise fail(f"{name}.ids: expected a list of integer token ids in [0, 2**63)")
    if not is_count(n):
        raise fail(f"{name}.length: expected a non-negative integer, got {n!r:.40}")
    if n != len(ids):
        raise fail(
            f"{name}.length: {n} is beyond its {len(ids)} token ids"
            if n > len(ids)
            else f"{name}.length: {n}, but {len(ids)} token ids (ids are stored truncated to the length)"
        )
    if not is_number(resp["score"]):
        raise fail(f"{name}.score: expected a finite number, got {resp['score']!r:.40}")
    holes = resp["mask_holes"]
    if not isinstance(holes, list):
        raise fail(f"{name}.mask_holes: expected a list of [start, end) runs")
    prev_end = -1
    for h in holes:
        ok = isinstance(h, list) and len(h) == 2 and all(is_count(x) for x in h)
        if not ok or not (prev_end + 1 <= h[0] < h[1] <= n):
            raise fail(
                f"{name}.mask_holes: {h!r:.60} is not a sorted, disjoint [start, end) run inside [0, {n}) "
                "(runs of tokens that are not trained on)"
            )
        prev_end = h[1]
    branches = resp["branches"]
    if not isinstance(branches, list):
        raise fail(f"{name}.branches: expected a list of [t, V(s_t), V(s_t+1)] entries")
    prev_t = -1
    for b in branches:
        ok = isinstance(b, list) and len(b) == 3 and is_count(b[0]) and is_number(b[1]) and is_number(b[2])
        if not ok or not (prev_t < b[0] < n):
            raise fail(
                f"{name}.branches: {b!r:.60} is not a [t, V(s_t), V(s_t+1)] entry with increasing t inside [0, {n})"
            )
        prev_t = b[0]


def _check_against_tree(obj: dict, fail: Callable[[str], TreeInputError]) -> None:
    """The stored branch tokens and values must be those of the group's own prefix tree (built by the core)."""
    responses = obj["responses"]
    scores = [float(r["score"]) for r in responses]
    scale = max(1.0, *(abs(s) for s in scores))
    want_root = root_value(scores)
    if abs(obj["root_value"] - want_root) > _TOLERANCE * scale:
        raise fail(f"root_value: {obj['root_value']!r} is not the mean score of the group ({want_root!r})")
    ids = [torch.as_tensor(r["ids"], dtype=torch.long) for r in responses]
    lengths = torch.tensor([r["length"] for r in responses], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    forest = build_prefix_forest(
        padded, lengths, torch.zeros(len(ids), dtype=torch.long), torch.tensor(scores, dtype=torch.float64)
    )
    rows = forest.branch_row.tolist()
    entries = zip(forest.branch_pos.tolist(), forest.value_before.tolist(), forest.value_after.tolist(), strict=True)
    expected: list[list[tuple[int, float, float]]] = [[] for _ in responses]
    for i, entry in zip(rows, entries, strict=True):
        expected[i].append(entry)
    for i, resp in enumerate(responses):
        want = sorted(expected[i])
        stored = [b[0] for b in resp["branches"]]
        if stored != [t for t, _, _ in want]:
            raise fail(
                f"responses[{i}].branches: the group's tree branches at tokens {[t for t, _, _ in want]} of this "
                f"response, the record lists {stored}"
            )
        for (t, before, after), (_, want_before, want_after) in zip(resp["branches"], want, strict=True):
            for label, depth, value, v in (("V(s_t)", t, before, want_before), ("V(s_t+1)", t + 1, after, want_after)):
                if abs(value - v) > _TOLERANCE * scale:
                    through = int((pairwise_lcp([r["ids"] for r in responses])[i] >= depth).sum())
                    raise fail(
                        f"responses[{i}].branches at t={t}: {label} = {value!r}, but the mean score of the "
                        f"{through} responses through that prefix is {v!r}"
                    )
