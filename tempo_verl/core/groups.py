"""Which rows form a group: verl's ``uid`` grouping, and a table of each group's rows (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GroupLayout", "group_layout", "uid_to_group_ids"]


def uid_to_group_ids(index, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Map prompt ids (verl's ``uid``) to contiguous group ids ``0..num_groups-1``, in order of first appearance.

    Rows are grouped exactly as verl's GRPO groups them: by equal Python values, as the keys of a
    ``dict`` (``compute_grpo_outcome_advantage`` keys ``id2score`` by ``index[i]``). So ``None`` is one
    group, ``"1"`` and ``1`` are two, ``1``, ``1.0`` and ``True`` are one, and mixed types are fine.
    A NaN uid is equal to nothing, not even another NaN: in an object array or a list, repeats of the
    same NaN object form one group (dict lookups try identity first, as in verl); in a float array
    every element is a fresh object, which verl's GRPO fails on with a ``KeyError``, so it is
    rejected here with a ``ValueError``.

    Args:
        index: ``(bs,)`` group labels: a numpy array (verl passes ``non_tensor_batch["uid"]``, an
            object array of strings), a list, or an integer tensor. Rows of a group need not be contiguous.
        batch_size: the expected number of rows.
        device: where the returned tensor lives.

    Returns:
        ``(bs,)`` int64 group ids.
    """
    if index is None:
        raise ValueError(
            "index: the prompt id of every row (verl's non_tensor_batch['uid']) is required to group "
            "responses; pass index=<array of bs uids>."
        )
    if isinstance(index, torch.Tensor):
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dim() != 1:
            raise ValueError(
                f"index: expected a 1-D integer tensor or an array of uids, got {index.dtype} {tuple(index.shape)}."
            )
        index = index.detach().cpu().numpy()
    labels = index if isinstance(index, np.ndarray) else np.asarray(index, dtype=object)
    if labels.ndim != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"index: expected one uid per row, shape ({batch_size},), got shape {tuple(labels.shape)}.")
    if labels.dtype.kind in "fc" and bool(np.isnan(labels).any()):
        raise ValueError(
            "index: found NaN uids in a float array; NaN equals nothing, so these rows belong to no group "
            "(verl's GRPO fails on them too). Give every prompt a real uid."
        )
    ids: dict = {}
    try:
        group = [ids.setdefault(uid, len(ids)) for uid in (index if isinstance(index, list | tuple) else labels)]
    except TypeError as err:
        raise ValueError(f"index: every uid must be hashable (a string, a number, None...); {err}.") from err
    return torch.tensor(group, dtype=torch.long, device=device)


@dataclass(frozen=True)
class GroupLayout:
    """Where the rows of each group are.

    Attributes:
        group: ``(bs,)`` int64 group id of each row.
        members: ``(num_groups, G)`` int64 row indices of each group's members in batch order,
            padded with ``-1`` (``G`` the size of the largest group).
        size: ``(num_groups,)`` int64 number of rows of each group.
    """

    group: torch.Tensor
    members: torch.Tensor
    size: torch.Tensor

    @property
    def mates(self) -> torch.Tensor:
        """``(bs, G)`` the members of each row's group (``-1`` padded), the row itself included.

        ``O(bs * G)``: for small sets of rows (the pairwise table of one dumped group), not for a batch.
        """
        return self.members[self.group]


def group_layout(group: torch.Tensor) -> GroupLayout:
    """Lay out the rows of each group side by side.

    Args:
        group: ``(bs,)`` int64 contiguous group ids (see :func:`uid_to_group_ids`).
    """
    bs = group.shape[0]
    size = torch.bincount(group)
    width = int(size.max()) if bs else 0  # one host sync: the widest group
    order = torch.argsort(group, stable=True)
    start = torch.cumsum(size, 0) - size
    ordered = group.index_select(0, order)  # index_select, index_copy_: no parallel region at these sizes
    slot = torch.arange(bs, device=group.device) - start.index_select(0, ordered)
    members = torch.full((size.shape[0] * width,), -1, dtype=torch.long, device=group.device)
    members = members.index_copy_(0, ordered * width + slot, order).view(size.shape[0], width)
    return GroupLayout(group=group, members=members, size=size)
