"""``tempo-tree/1`` records from the estimator's PrefixForest: a host snapshot of a few groups, then the records.

The snapshot (:func:`snapshot`) is all that must run where the forest lives (the training thread):
it picks the groups and copies their rows to the host. :func:`records_from_snapshot` is pure host
work, safe on a background thread. The format itself is defined in :mod:`tempo_verl.trees.format`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tempo_verl.core.forest import PrefixForest
from tempo_verl.trees.format import FORMAT, root_value

__all__ = ["Snapshot", "choose_groups", "group_records", "records_from_snapshot", "snapshot"]


@dataclass
class Snapshot:
    """The chosen groups' data, on the host: what :func:`records_from_snapshot` turns into records.

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


def choose_groups(forest: PrefixForest, max_groups: int) -> list[int]:
    """Up to ``max_groups`` group ids: groups of two or more responses first, each set in batch order."""
    size = forest.layout.size.tolist()
    first_row = forest.layout.members[:, 0].tolist()
    return sorted(range(len(size)), key=lambda g: (size[g] < 2, first_row[g]))[: max(0, max_groups)]


def snapshot(
    forest: PrefixForest, responses: torch.Tensor, response_mask: torch.Tensor, uids: Sequence, step: int, groups: list
) -> Snapshot:
    """Copy the given groups' rows to the host (the part a writer runs on the training thread).

    Only the chosen rows are copied or read.

    Args:
        forest: the batch's prefix trees; ``responses``/``response_mask``: ``(bs, L)`` (any device);
        uids: ``(bs,)`` prompt ids (verl's ``non_tensor_batch['uid']``); step: the training step;
        groups: the group ids to copy, in the order their records will have.
    """
    device = forest.lengths.device
    members = forest.layout.members[torch.as_tensor(groups, dtype=torch.long, device=device)].cpu()
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
    mask = response_mask[rows.to(response_mask.device), :width].cpu()  # compared with 0 later, off this thread

    # Branch entries of the chosen rows; position of each batch row among the snapshot rows.
    where = torch.full((forest.lengths.shape[0],), -1, dtype=torch.long, device=device)
    where[rows] = torch.arange(rows.shape[0], device=device)
    b_local = where[forest.branch_row]
    keep = b_local >= 0
    b_row, b_pos = b_local[keep].cpu(), forest.branch_pos[keep].cpu()
    order = torch.argsort(b_row * (width + 1) + b_pos)
    if isinstance(uids, torch.Tensor):
        uids = uids.cpu().numpy()
    index = np.asarray(uids, dtype=object) if not isinstance(uids, np.ndarray) else uids
    return Snapshot(
        step=int(step),
        group_rows=group_rows,
        uids=[_json_scalar(index[flat[g[0]]]) if g else None for g in group_rows],
        rows=rows_cpu,
        ids=ids,
        mask=mask,
        lengths=lengths,
        scores=forest.scores[rows].cpu(),
        b_row=b_row[order],
        b_pos=b_pos[order],
        b_before=forest.value_before[keep].cpu()[order],
        b_after=forest.value_after[keep].cpu()[order],
    )


def _holes(mask_row: np.ndarray) -> list[list[int]]:
    """Runs ``[start, end)`` where a ``(n,)`` bool mask is False."""
    off = np.concatenate(([0], (~mask_row).astype(np.int8), [0]))
    step = np.diff(off)
    starts, ends = np.flatnonzero(step == 1), np.flatnonzero(step == -1)
    return [[int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def records_from_snapshot(snap: Snapshot) -> list[dict]:
    """Turn a snapshot into ``tempo-tree/1`` records (pure host work: safe on a background thread)."""
    lengths = snap.lengths.tolist()
    scores = snap.scores.tolist()
    rows = snap.rows.tolist()
    mask = (snap.mask != 0).numpy()
    entries = zip(snap.b_pos.tolist(), snap.b_before.tolist(), snap.b_after.tolist(), strict=True)
    per_row: list[list[list]] = [[] for _ in rows]
    for r, (t, before, after) in zip(snap.b_row.tolist(), entries, strict=True):
        per_row[r].append([t, before, after])
    records = []
    for uid, members in zip(snap.uids, snap.group_rows, strict=True):
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
            time.sleep(0)  # on a writer thread: let the training thread take the GIL between rows
        records.append(
            {
                "format": FORMAT,
                "step": snap.step,
                "uid": uid,
                "root_value": root_value([scores[k] for k in members]),
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
    """The ``tempo-tree/1`` records of up to ``max_groups`` groups of a batch (:func:`choose_groups` picks them).

    Returns:
        One dict per group, in the format described in the module docstring.
    """
    return records_from_snapshot(
        snapshot(forest, responses, response_mask, uids, step, choose_groups(forest, max_groups))
    )
