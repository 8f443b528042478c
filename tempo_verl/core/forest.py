"""The prefix trees of TEMPO ("P2T"), built for every group of a batch at once, in pure torch.

The responses sampled for one prompt form a prefix tree. Everything TEMPO needs from that tree
follows from one number per pair of responses of a group: the length of their longest common
prefix, ``lcp(i, j)`` (capped by both valid lengths; ``lcp(i, i) = n_i``). Response ``j`` passes
through the prefix ``s_t = y_i[:t]`` of response ``i`` exactly when ``lcp(i, j) >= t``, so

    V(s_t) = mean { r_j : lcp(i, j) >= t }      (the nonparametric prefix value, no critic)

is a step function of ``t`` that only changes where another response of the group leaves the
path of ``i``. The TD term ``V(s_{t+1}) - V(s_t)`` is therefore non-zero only at the depths
``t = lcp(i, j) < n_i``: at most ``G - 1`` positions per row. The dense part of the advantage is
plain GRPO; the tree only contributes these sparse branch entries.

How the pairwise common prefixes are found without a loop over tokens or rows, and without
comparing every pair over its whole shared part: rows are refined in *classes* (rows of a group
known to share a prefix of length ``depth``). Each class has a representative; every member
compares the next ``window`` tokens with its representative in one batched gather. A member that
stops matching at depth ``e`` leaves the class; members that leave at the same depth with the same
next token form a new class one token deeper, those still matching stay, one window deeper. Two
rows that end up in different classes get ``lcp = min(e_i, e_j)`` (the classic trie/ultrametric
argument: if they left the representative's path at different depths, they part at the shallower
one; at the same depth with different next tokens, they part there). Each row therefore reads its
shared part roughly once, and the Python loop runs once per tree level or window, never per token,
row or group.

Shapes: ``bs`` rows, ``L`` response positions, ``G`` the size of the largest group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "GroupLayout",
    "PrefixForest",
    "build_prefix_forest",
    "expand_values",
    "group_layout",
    "pairwise_common_prefix",
    "uid_to_group_ids",
]

_END = -1  # "next token" of a response that ends at the compared depth
_MATCHING = -2  # "next token" of a row still matching its representative at the end of the window
_MAX_SPAN = 4096  # the longest comparison span of one step
_STEP_ELEMENTS = 1 << 16  # tokens a step may compare anyway: rows x width below this costs little more


def uid_to_group_ids(index, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Map prompt ids (verl's ``uid``) to contiguous group ids ``0..num_groups-1``.

    Args:
        index: ``(bs,)`` group labels: a numpy array (verl passes ``non_tensor_batch["uid"]``, an
            object array of strings), a list, or an integer tensor. Rows with equal labels form one
            group; rows of a group need not be contiguous.
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
        labels = index.detach().cpu().numpy()
    else:
        labels = np.asarray(index, dtype=object) if not isinstance(index, np.ndarray) else index
    if labels.ndim != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"index: expected one uid per row, shape ({batch_size},), got shape {tuple(labels.shape)}.")
    try:
        _, inverse = np.unique(labels, return_inverse=True)
    except TypeError as err:
        raise ValueError(
            f"index: uids must be mutually comparable (all strings or all integers); got mixed types ({err})."
        ) from err
    return torch.as_tensor(inverse.reshape(-1).astype(np.int64), device=device)


@dataclass(frozen=True)
class GroupLayout:
    """Where the rows of each group are.

    Attributes:
        group: ``(bs,)`` int64 group id of each row.
        members: ``(num_groups, G)`` int64 row indices of each group's members in batch order,
            padded with ``-1``.
        size: ``(num_groups,)`` int64 number of rows of each group.
    """

    group: torch.Tensor
    members: torch.Tensor
    size: torch.Tensor

    @property
    def mates(self) -> torch.Tensor:
        """``(bs, G)`` the members of each row's group (``-1`` padded), the row itself included."""
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
    slot = torch.arange(bs, device=group.device) - start[group[order]]
    members = torch.full((size.shape[0], width), -1, dtype=torch.long, device=group.device)
    members[group[order], slot] = order
    return GroupLayout(group=group, members=members, size=size)


def pairwise_common_prefix(
    responses: torch.Tensor, lengths: torch.Tensor, layout: GroupLayout, window: int = 32
) -> torch.Tensor:
    """Longest common prefix of every row with every member of its group.

    Args:
        responses: ``(bs, L)`` integer token ids; only the first ``lengths[i]`` of row ``i`` count.
        lengths: ``(bs,)`` int64 valid lengths ``n_i``.
        layout: the groups, from :func:`group_layout`.
        window: how many tokens a row compares with its class representative in its first step after
            a branch (doubling while it keeps matching). A speed knob: the result does not depend on it.

    Returns:
        ``(bs, G)`` int64: ``[i, k]`` is ``lcp(i, layout.mates[i, k])``, ``n_i`` on the row itself,
        ``-1`` in padded slots.
    """
    bs, L = responses.shape
    device = responses.device
    mates = layout.mates
    real = mates >= 0
    safe_mates = mates.clamp(min=0)
    lcp = torch.full(mates.shape, -1, dtype=torch.long, device=device)
    rows = torch.arange(bs, device=device)
    if L == 0:  # nothing to compare: every common prefix is empty
        return torch.where(real, 0, -1)
    never = L + 1  # e of a row that matched its representative over the whole window

    # Class state of every row: id, representative, the depth its class is known to share, and how
    # many tokens it compares next (doubling while it keeps matching, so a long shared part costs
    # O(log) steps; back to `window` after each branch).
    cls = layout.group.clone()
    rep = layout.members[layout.group, 0].clone()
    depth = torch.zeros(bs, dtype=torch.long, device=device)
    span = torch.full((bs,), window, dtype=torch.long, device=device)
    active = layout.size[layout.group] >= 2
    stop_at = torch.full((bs,), never, dtype=torch.long, device=device)
    next_tok = torch.full((bs,), _MATCHING, dtype=torch.long, device=device)
    # Row windows without index arithmetic: windows(W)[b] is flat[b : b + W], a view, gathered by row.
    flat = responses.contiguous().reshape(-1)

    while True:
        act = active.nonzero().squeeze(1)  # host sync: one per step, never per token, row or group
        if act.numel() == 0:
            break
        act_rep, act_depth, act_len = rep[act], depth[act], lengths[act]
        # Compare the next `span` tokens of each active row with its representative's: one window of
        # W positions per row, starting at its depth (or at L - W near the end, to stay in the row).
        # All rows compare the same number of tokens: their longest span, or more while few rows are
        # left (a step's fixed cost dominates small batches; its work is rows x width).
        width = min(max(int(span[act].max()), _STEP_ELEMENTS // act.numel()), L)
        windows = flat.as_strided((flat.numel() - width + 1, width), (1, 1))
        start = act_depth.clamp(max=L - width)
        own = windows[act * L + start]
        ref = windows[act_rep * L + start]
        skip = act_depth - start  # window positions before the row's depth
        differ = own != ref
        if L - width < int(act_depth.max()):  # some windows start before their row's depth (near the end)
            differ &= torch.arange(width, device=device) >= skip[:, None]
        hit, first = differ.max(dim=1)
        limit = torch.minimum(act_len, lengths[act_rep]) - act_depth  # both responses still have a token
        k = torch.minimum(torch.where(hit, first - skip, never), limit)
        hit = k < width
        e = torch.where(hit, act_depth + k, never)
        tok = own.gather(1, (k + skip).clamp(max=width - 1)[:, None]).squeeze(1)
        nt = torch.where(~hit, _MATCHING, torch.where(e < act_len, tok, _END))
        stop_at[act], next_tok[act] = e, nt

        # Pairs of this class that part now get their common prefix: min of the two stop depths.
        m = safe_mates[act]
        same_before = real[act] & active[m] & (cls[m] == cls[act][:, None])
        e_m, nt_m = stop_at[m], next_tok[m]
        same_after = (e_m == e[:, None]) & (nt_m == nt[:, None]) & (nt != _END)[:, None]
        parted = same_before & ~same_after
        lcp[act] = torch.where(parted, torch.minimum(e[:, None], e_m), lcp[act])

        # New classes: rows that stopped at the same depth with the same next token, or still match.
        # One int64 key per row: (class, stop depth, rank of the next token) < n * (L + 2) * n.
        keep = nt != _END
        _, nt_rank = torch.unique(nt, return_inverse=True)
        n_act = act.numel()
        key = (cls[act] * (L + 2) + e.clamp(max=L + 1)) * (n_act + 2) + nt_rank
        _, new_cls = torch.unique(key, return_inverse=True)
        count = torch.bincount(new_cls[keep], minlength=n_act)
        new_rep = torch.full_like(count, bs).scatter_reduce(0, new_cls, act, reduce="amin")
        cls[act] = new_cls
        rep[act] = new_rep[new_cls]
        depth[act] = torch.where(hit, e + 1, act_depth + width)
        span[act] = torch.where(hit, window, min(2 * width, _MAX_SPAN))
        active[act] = keep & (count[new_cls] >= 2)
        stop_at[act], next_tok[act] = never, _MATCHING

    own_slot = mates == rows[:, None]
    return torch.where(own_slot, lengths[:, None], lcp)


@dataclass(frozen=True)
class PrefixForest:
    """The prefix trees of all groups of a batch, reduced to what TEMPO uses.

    Attributes:
        layout: the groups.
        lengths: ``(bs,)`` int64 valid response lengths.
        scores: ``(bs,)`` float64 outcome scores ``r_i``.
        common_prefix: ``(bs, G)`` int64 ``lcp`` with each group mate (``-1`` in padded slots).
        branch_row, branch_pos: ``(nb,)`` int64 the branch tokens ``(i, t)``: positions where
            another response of the group leaves the path of row ``i`` (``t < n_i``).
        value_before, value_after: ``(nb,)`` float64 ``V(s_t)`` and ``V(s_{t+1})`` there.
    """

    layout: GroupLayout
    lengths: torch.Tensor
    scores: torch.Tensor
    common_prefix: torch.Tensor
    branch_row: torch.Tensor
    branch_pos: torch.Tensor
    value_before: torch.Tensor
    value_after: torch.Tensor

    @property
    def td(self) -> torch.Tensor:
        """``(nb,)`` float64 the TD term ``V(s_{t+1}) - V(s_t)`` at each branch token."""
        return self.value_after - self.value_before

    @property
    def divergence_depth(self) -> torch.Tensor:
        """``(bs,)`` int64 how many leading tokens a row shares with at least one other row of its group.

        This is the depth at which the response leaves the last path it shares (``n_i`` for an exact
        duplicate or a response that another one extends, ``0`` in a singleton group).
        """
        others = self.common_prefix.masked_fill(
            self.layout.mates == torch.arange(self.lengths.shape[0], device=self.lengths.device)[:, None], -1
        )
        return others.max(dim=1).values.clamp(min=0)

    def values(self, rows: torch.Tensor) -> torch.Tensor:
        """Dense prefix values ``V(y_i[:t])`` for ``t = 0..L`` of the given rows.

        Args:
            rows: ``(k,)`` int64 row indices.

        Returns:
            ``(k, L + 1)`` float64; entries with ``t > n_i`` are NaN (no such prefix).
        """
        lcp = self.common_prefix[rows]  # (k, G)
        mates = self.layout.mates[rows]
        r = torch.where(mates >= 0, self.scores[mates.clamp(min=0)], 0.0)
        L = int(self.lengths.max()) if self.lengths.numel() else 0
        t = torch.arange(L + 1, device=lcp.device)
        through = lcp[:, None, :] >= t[None, :, None]  # (k, L+1, G): mate passes through y_i[:t]
        total = (through * r[:, None, :]).sum(-1)
        count = through.sum(-1)
        v = total / count.clamp(min=1)
        return v.masked_fill(t[None, :] > self.lengths[rows][:, None], float("nan"))


def build_prefix_forest(
    responses: torch.Tensor,
    lengths: torch.Tensor,
    group: torch.Tensor,
    scores: torch.Tensor,
    window: int = 32,
) -> PrefixForest:
    """Build the prefix trees of all groups and locate the branch tokens with their prefix values.

    Args:
        responses: ``(bs, L)`` integer token ids, right-padded.
        lengths: ``(bs,)`` int64 valid lengths ``n_i`` (``0 <= n_i <= L``).
        group: ``(bs,)`` int64 contiguous group ids.
        scores: ``(bs,)`` outcome scores ``r_i``.
        window: tokens compared per step (a speed knob; the result does not depend on it).

    Returns:
        The :class:`PrefixForest`.
    """
    layout = group_layout(group)
    lcp = pairwise_common_prefix(responses, lengths, layout, window=window)
    r64 = scores.to(torch.float64)
    mates = layout.mates
    mate_r = torch.where(mates >= 0, r64[mates.clamp(min=0)], 0.0)

    # Per row, sort the mates by how deep they follow it. With d sorted descending, the mates that
    # pass through s_t are a prefix of the sorted list, so cumulative sums give V at every depth.
    d, perm = lcp.sort(dim=1, descending=True, stable=True)
    valid = d >= 0
    csum = torch.cumsum(mate_r.gather(1, perm) * valid, dim=1)
    ccount = torch.cumsum(valid.to(torch.float64), dim=1)
    g = d.shape[1]
    k = torch.arange(g, device=d.device).expand_as(d)
    starts = torch.ones_like(valid)
    starts[:, 1:] = d[:, 1:] != d[:, :-1]
    ends = torch.ones_like(valid)
    ends[:, :-1] = d[:, :-1] != d[:, 1:]
    first = torch.cummax(torch.where(starts, k, 0), dim=1).values  # first sorted slot with this depth
    last = torch.flip(torch.cummin(torch.flip(torch.where(ends, k, g - 1), [1]), dim=1).values, [1])

    # A branch of row i at t = d < n_i: mates with lcp == t pass through s_t but not s_{t+1}.
    is_branch = starts & valid & (d < lengths[:, None])
    b_row, b_slot = is_branch.nonzero(as_tuple=True)
    b_first, b_last = first[b_row, b_slot], last[b_row, b_slot]
    value_before = csum[b_row, b_last] / ccount[b_row, b_last]
    value_after = csum[b_row, b_first - 1] / ccount[b_row, b_first - 1]
    return PrefixForest(
        layout=layout,
        lengths=lengths,
        scores=r64,
        common_prefix=lcp,
        branch_row=b_row,
        branch_pos=d[b_row, b_slot],
        value_before=value_before,
        value_after=value_after,
    )


def expand_values(
    lengths: torch.Tensor,
    branch_row: torch.Tensor,
    branch_pos: torch.Tensor,
    value_before: torch.Tensor,
    value_after: torch.Tensor,
    root_value: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """Dense prefix values ``V(y_i[:t])``, ``t = 0..width``, from the sparse branch entries of ``k`` rows.

    V is a step function of ``t`` that changes only at branch tokens, so the branch entries hold it
    all: ``V(s_t)`` is the entry's ``value_before`` at a branch token ``t``; after a branch at ``t``
    it is that entry's ``value_after`` until the next branch token; before the first branch token it
    is ``root_value``.

    Args:
        lengths: ``(k,)`` int64 valid lengths ``n_i``.
        branch_row: ``(nb,)`` int64 row (``0..k-1``) of each branch entry.
        branch_pos: ``(nb,)`` int64 branch token ``t`` (``t < n_i``; at most one entry per row and ``t``).
        value_before, value_after: ``(nb,)`` float64 ``V(s_t)`` and ``V(s_{t+1})`` there.
        root_value: ``(k,)`` float64 ``V(empty prefix)`` of each row.
        width: the largest ``t`` wanted.

    Returns:
        ``(k, width + 1)`` float64; NaN where ``t > n_i``.
    """
    k = lengths.shape[0]
    device = lengths.device
    row, pos = branch_row.long(), branch_pos.long()
    # Column t + 1 of a branch at t starts a run of its value_after; column 0 starts the root's run.
    start = torch.zeros((k, width + 2), dtype=torch.long, device=device)
    run_value = torch.zeros((k, width + 2), dtype=torch.float64, device=device)
    run_value[:, 0] = root_value.to(torch.float64)
    start[row, pos + 1] = pos + 1
    run_value[row, pos + 1] = value_after.to(torch.float64)
    latest = torch.cummax(start, dim=1).values  # per column: where its run started
    values = run_value.gather(1, latest)[:, : width + 1]
    values[row, pos] = value_before.to(torch.float64)
    t = torch.arange(width + 1, device=device)
    return values.masked_fill(t[None, :] > lengths[:, None], float("nan"))
