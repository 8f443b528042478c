"""The prefix trees of TEMPO ("P2T"), built for every group of a batch at once, in pure torch.

The responses sampled for one prompt form a prefix tree. Response ``j`` passes through the prefix
``s_t = y_i[:t]`` of response ``i`` when its first ``t`` tokens are those (``t <= n_j``, its valid
length), and

    V(s_t) = mean { r_j : j passes through s_t }      (the nonparametric prefix value, no critic)

is a step function of ``t`` along response ``i`` that only changes where another response of the
group leaves its path: at the *branch tokens* ``t < n_i``, at most ``G - 1`` per row. The TD term
``V(s_{t+1}) - V(s_t)`` is zero elsewhere, so the forest is a list of branch entries
``(i, t, V(s_t), V(s_{t+1}))``; :func:`expand_values` turns them back into dense values.

How the trees are found without a loop over tokens, rows or groups (:func:`_refine`): an MSD radix
sort of the rows. Rows are kept in *classes* (trie nodes: rows of a group known to share a prefix
of length ``depth``). Each class has a representative; every member compares the next ``span``
tokens with the representative's in one batched gather. A member stops at depth ``e`` where it
first differs (or where it or the representative ends); members stopping at the same depth with
the same next token form a new class one token deeper, those matching the whole span stay, one span
deeper (the span doubles while they keep matching). Each row reads its shared part about once and
the Python loop runs once per tree level or span, never per token, row or group.

What one step tells about the tree (:func:`build_prefix_forest`): in a class ``C``, the rows through
``s_t`` for ``t <= e_i`` are exactly the members with ``e_j >= t``. So row ``i``'s branch tokens in
this step are the stop depths of its class mates below ``e_i``, plus ``e_i`` itself when some other
member goes on past it elsewhere; ``V`` there is a suffix mean of the class's members ordered by
``e``, and ``V(s_{e_i + 1})`` the mean of ``i``'s new class. Each row gets one entry per branch token
it has, so the work follows the size of the trees, not the square of the group size.

Shapes: ``bs`` rows, ``L`` response positions, ``nb`` branch entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from tempo_verl.core.groups import GroupLayout, group_layout

__all__ = ["PrefixForest", "build_prefix_forest", "expand_values", "pairwise_common_prefix"]

# Wide unsigned ids are compared as the signed integers of the same bits (few CPU kernels take them).
_SIGNED_VIEW = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}
_MAX_SPAN = 4096  # the longest comparison span of one step
_STEP_ELEMENTS = 1 << 16  # tokens a step may compare anyway: rows x width below this costs little more
# Parallel regions: on a busy machine each of torch's parallel regions waits for every thread to be scheduled
# (milliseconds), so the per-row work here stays below torch's parallel thresholds: 1-D gathers and writes go
# through index_select / index_copy_ (plain `x[i]` on a few thousand rows starts a region).


class _Step(NamedTuple):
    """One refinement step over the ``n`` rows still sharing a prefix with a group mate.

    ``rows``: ``(n,)`` their indices; ``level``: ``(n,)`` compact ids of (class, stop depth) sorted by
    class, then depth, with ``level_key = class * (L + 2) + depth`` per id; ``stop``: ``(n,)`` the
    depth ``e`` where each row parts from its representative (``L + 1``: still matching);
    ``ended``: ``(n,)`` the row itself ends at ``e``; ``new_class``: ``(n,)`` compact ids of the
    classes after the step, grouped by level.
    """

    rows: torch.Tensor
    level: torch.Tensor
    level_key: torch.Tensor
    stop: torch.Tensor
    ended: torch.Tensor
    new_class: torch.Tensor


def _refine(responses: torch.Tensor, lengths: torch.Tensor, layout: GroupLayout, window: int) -> Iterator[_Step]:
    """Refine the rows of every group into trie nodes, one step per tree level or comparison span.

    Args:
        responses: ``(bs, L)`` integer token ids of any integer dtype; only the first ``lengths[i]`` count.
        lengths: ``(bs,)`` int64 valid lengths.
        layout: the groups.
        window: tokens a row compares in its first step after a branch (doubling while it keeps matching).
    """
    bs, L = responses.shape
    if L == 0:  # nothing to compare: no branch, every common prefix is empty
        return
    device = responses.device
    never = L + 1  # stop depth of a row that matched its representative over the whole window
    cls = layout.group.clone()
    rep = layout.members[:, 0].index_select(0, layout.group)
    depth = torch.zeros(bs, dtype=torch.long, device=device)
    span = torch.full((bs,), window, dtype=torch.long, device=device)
    active = layout.size.index_select(0, layout.group) >= 2
    # Row windows without index arithmetic: windows(W)[b] is flat[b : b + W], a view, gathered by row.
    flat = responses.contiguous().reshape(-1)
    flat = flat.view(_SIGNED_VIEW.get(flat.dtype, flat.dtype))

    while True:
        act = active.nonzero().squeeze(1)  # host sync: one per step, never per token, row or group
        n_act = act.numel()
        if n_act == 0:
            return
        act_rep, act_depth, act_len = rep.index_select(0, act), depth.index_select(0, act), lengths.index_select(0, act)
        # Compare the next `span` tokens of each active row with its representative's: one window of
        # W positions per row, starting at its depth (or at L - W near the end, to stay in the row).
        width = min(max(int(span.index_select(0, act).max()), _STEP_ELEMENTS // n_act), L)
        windows = flat.as_strided((flat.numel() - width + 1, width), (1, 1))
        start = act_depth.clamp(max=L - width)
        own, ref = windows.index_select(0, torch.cat([act, act_rep]) * L + start.repeat(2)).split(n_act)
        skip = act_depth - start  # window positions before the row's depth
        differ = own != ref
        if L - width < int(act_depth.max()):  # some windows start before their row's depth (near the end)
            differ &= torch.arange(width, device=device) >= skip[:, None]
        found, first = differ.max(dim=1)
        # both responses still have a token
        limit = torch.minimum(act_len, lengths.index_select(0, act_rep)) - act_depth
        k = torch.minimum(torch.where(found, first - skip, never), limit)
        hit = k < width
        e = torch.where(hit, act_depth + k, never)
        ended = hit & (e >= act_len)
        # The next token of each row as a code that no token id can collide with: 0 still matching,
        # 1 ended, 2 + rank among this step's tokens otherwise (token ids are arbitrary integers).
        tok = own.gather(1, (k + skip).clamp(max=width - 1)[:, None]).squeeze(1).long()
        _, tok_rank = torch.unique(tok, return_inverse=True)
        code = torch.where(hit, torch.where(ended, 1, tok_rank + 2), 0)
        level_key, level = torch.unique(cls.index_select(0, act) * (L + 2) + e, return_inverse=True)
        _, new_cls = torch.unique(level * (n_act + 2) + code, return_inverse=True)
        yield _Step(rows=act, level=level, level_key=level_key, stop=e, ended=ended, new_class=new_cls)

        # Rows go on in their new class while it holds another row that has not ended.
        count = torch.zeros_like(act).index_add_(0, new_cls, (~ended).long())
        new_rep = torch.full_like(count, bs).scatter_reduce(0, new_cls, act, reduce="amin")
        cls.index_copy_(0, act, new_cls)
        rep.index_copy_(0, act, new_rep.index_select(0, new_cls))
        depth.index_copy_(0, act, torch.where(hit, e + 1, act_depth + width))
        span.index_copy_(0, act, torch.where(hit, window, min(2 * width, _MAX_SPAN)))
        active.index_copy_(0, act, ~ended & (count.index_select(0, new_cls) >= 2))


def _repeat_ids(counts: torch.Tensor) -> torch.Tensor:
    """``(sum(counts),)`` int64: ``i`` repeated ``counts[i]`` times (``repeat_interleave`` of ``arange``).

    Built from a scatter and a running maximum, which stay serial at these sizes (``repeat_interleave``
    always starts a parallel region). Each row with a count > 0 is the largest id at its start offset.
    """
    n = counts.shape[0]
    start = torch.cumsum(counts, 0) - counts
    total = int(start[-1] + counts[-1]) if n else 0
    ids = torch.arange(n, device=counts.device)
    marks = torch.zeros(total + 1, dtype=torch.long, device=counts.device)
    marks.scatter_reduce_(0, start, ids, reduce="amax")
    return marks[:total].cummax(0).values


def pairwise_common_prefix(
    responses: torch.Tensor, lengths: torch.Tensor, layout: GroupLayout, window: int = 32
) -> torch.Tensor:
    """Longest common prefix of every row with every member of its group, from the same refinement.

    Two rows of a class that land in different new classes (or one of which ends) part at
    ``min(e_i, e_j)``. ``O(bs * G)`` memory: meant for small sets of rows (one group of a dump); the
    estimator itself never builds this table.

    Args:
        responses: ``(bs, L)`` integer token ids; only the first ``lengths[i]`` of row ``i`` count.
        lengths: ``(bs,)`` int64 valid lengths ``n_i``.
        layout: the groups (:func:`~tempo_verl.core.groups.group_layout`).
        window: a speed knob of the refinement; the result does not depend on it.

    Returns:
        ``(bs, G)`` int64: ``[i, k]`` is ``lcp(i, layout.mates[i, k])``, ``n_i`` on the row itself,
        ``-1`` in padded slots.
    """
    mates = layout.mates
    real = mates >= 0
    safe = mates.clamp(min=0)
    lcp = torch.where(real, 0, -1)
    bs = lengths.shape[0]
    klass = torch.full((bs,), -1, dtype=torch.long, device=lengths.device)  # class before the step, -1 if idle
    new_class, stop = torch.zeros_like(klass), torch.zeros_like(klass)
    ended = torch.zeros_like(klass, dtype=torch.bool)
    for step in _refine(responses, lengths, layout, window):
        rows, cls = step.rows, step.level_key[step.level] // (responses.shape[1] + 2)
        klass[rows], new_class[rows], stop[rows], ended[rows] = cls, step.new_class, step.stop, step.ended
        m = safe[rows]
        same_class = real[rows] & (klass[m] == cls[:, None])
        parted = same_class & ((new_class[m] != step.new_class[:, None]) | ended[m] | step.ended[:, None])
        lcp[rows] = torch.where(parted, torch.minimum(step.stop[:, None], stop[m]), lcp[rows])
        klass[rows] = -1
    return torch.where(mates == torch.arange(bs, device=lengths.device)[:, None], lengths[:, None], lcp)


@dataclass(frozen=True)
class PrefixForest:
    """The prefix trees of all groups of a batch, reduced to what TEMPO uses.

    Attributes:
        layout: the groups.
        lengths: ``(bs,)`` int64 valid response lengths.
        scores: ``(bs,)`` float64 outcome scores ``r_i``.
        branch_row, branch_pos: ``(nb,)`` int64 the branch tokens ``(i, t)``, sorted by row then
            position: positions where another response of the group leaves the path of row ``i`` (``t < n_i``).
        value_before, value_after: ``(nb,)`` float64 ``V(s_t)`` and ``V(s_{t+1})`` there.
        divergence_depth: ``(bs,)`` int64 how many leading tokens a row shares with at least one other
            row of its group: the depth at which it leaves the last path it shares (``n_i`` for an exact
            duplicate or a response that another one extends, ``0`` in a singleton group).
    """

    layout: GroupLayout
    lengths: torch.Tensor
    scores: torch.Tensor
    branch_row: torch.Tensor
    branch_pos: torch.Tensor
    value_before: torch.Tensor
    value_after: torch.Tensor
    divergence_depth: torch.Tensor

    @property
    def td(self) -> torch.Tensor:
        """``(nb,)`` float64 the TD term ``V(s_{t+1}) - V(s_t)`` at each branch token."""
        return self.value_after - self.value_before

    def values(self, rows: torch.Tensor) -> torch.Tensor:
        """Dense prefix values ``V(y_i[:t])`` for ``t = 0..L`` of the given rows (see :func:`expand_values`).

        Args:
            rows: ``(k,)`` int64 row indices.

        Returns:
            ``(k, L + 1)`` float64, ``L`` the longest valid length of the batch; NaN for ``t > n_i``.
        """
        bs = self.lengths.shape[0]
        local = torch.full((bs,), -1, dtype=torch.long, device=rows.device)
        local[rows] = torch.arange(rows.shape[0], device=rows.device)
        keep = local[self.branch_row] >= 0
        group = self.layout.group
        mean = torch.zeros(self.layout.size.shape[0], dtype=torch.float64, device=rows.device)
        mean = mean.index_add_(0, group, self.scores) / self.layout.size
        return expand_values(
            self.lengths[rows],
            local[self.branch_row[keep]],
            self.branch_pos[keep],
            self.value_before[keep],
            self.value_after[keep],
            mean[group[rows]],
            int(self.lengths.max()) if bs else 0,
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
    """Dense prefix values of ``k`` rows from their branch entries: the one expansion of V.

    ``V`` is a step function along a response: ``V(s_0) = root_value`` (the group's mean score) up to
    the first branch token; ``V(s_t) = value_before`` at a branch token ``t``; after it, ``value_after``
    until the next one.

    Args:
        lengths: ``(k,)`` int64 valid lengths ``n_i``.
        branch_row: ``(nb,)`` int64 row of each entry, in ``0..k-1``.
        branch_pos: ``(nb,)`` int64 its position ``t < n_i``.
        value_before, value_after: ``(nb,)`` float ``V(s_t)`` and ``V(s_{t+1})``.
        root_value: ``(k,)`` float64 ``V`` of the empty prefix of each row's group.
        width: the last prefix length to give.

    Returns:
        ``(k, width + 1)`` float64: ``[i, t] = V(y_i[:t])``, NaN for ``t > n_i``.
    """
    k = lengths.shape[0]
    device = lengths.device
    order = torch.argsort(branch_row * (width + 2) + branch_pos)
    row, pos = branch_row[order], branch_pos[order]
    entry = torch.arange(order.shape[0], device=device)
    at = torch.full((k, width + 2), -1, dtype=torch.long, device=device)  # entry at position t
    since = torch.full((k, width + 2), -1, dtype=torch.long, device=device)  # latest entry before t
    on = pos <= width
    at[row[on], pos[on]] = entry[on]
    since[row[on], pos[on] + 1] = entry[on]
    since = since.cummax(dim=1).values
    pad = torch.full((1,), float("nan"), dtype=torch.float64, device=device)  # index -1: no entry
    before = torch.cat([value_before[order].to(torch.float64), pad])
    after = torch.cat([value_after[order].to(torch.float64), pad])
    v = torch.where(since >= 0, after[since], root_value.to(torch.float64)[:, None])
    v = torch.where(at >= 0, before[at], v)[:, : width + 1]
    t = torch.arange(width + 1, device=device)
    return v.masked_fill(t[None, :] > lengths[:, None], float("nan"))


def build_prefix_forest(
    responses: torch.Tensor,
    lengths: torch.Tensor,
    group: torch.Tensor,
    scores: torch.Tensor,
    window: int = 32,
) -> PrefixForest:
    """Build the prefix trees of all groups: the branch tokens with their prefix values.

    Args:
        responses: ``(bs, L)`` integer token ids of any integer dtype, right-padded.
        lengths: ``(bs,)`` int64 valid lengths ``n_i`` (``0 <= n_i <= L``).
        group: ``(bs,)`` int64 contiguous group ids.
        scores: ``(bs,)`` outcome scores ``r_i``.
        window: tokens compared per step (a speed knob; the result does not depend on it).

    Returns:
        The :class:`PrefixForest`.
    """
    layout = group_layout(group)
    r64 = scores.to(torch.float64)
    L = responses.shape[1]
    device = lengths.device
    divergence = torch.zeros_like(lengths)
    rows_out, pos_out, before_out, after_out = [], [], [], []
    for step in _refine(responses, lengths, layout, window):
        rows, level, e = step.rows, step.level, step.stop
        n_levels = step.level_key.shape[0]
        depth = step.level_key % (L + 2)
        r = r64.index_select(0, rows)
        count = torch.bincount(level, minlength=n_levels)
        total = torch.zeros(n_levels, dtype=torch.float64, device=device).index_add_(0, level, r)
        # Levels are sorted by class, then depth: each class is a run [first, end) of levels, and the
        # rows through s_t (t <= e_i) are its levels from depth t on: suffix sums inside the run.
        _, run_of, run = torch.unique_consecutive(step.level_key // (L + 2), return_inverse=True, return_counts=True)
        end = torch.cumsum(run, 0)
        first = (end - run).index_select(0, run_of)
        end = end.index_select(0, run_of)
        before_sum = torch.cat([total.new_zeros(1), torch.cumsum(total, 0)])
        before_count = torch.cat([count.new_zeros(1), torch.cumsum(count, 0)])
        through_sum = before_sum.index_select(0, end) - before_sum[:-1]
        through_count = before_count.index_select(0, end) - before_count[:-1]
        v = through_sum / through_count  # V(s_t) at each level's depth, for rows at or past it

        # Branch tokens of row i below e_i: one per level of its class before its own.
        first_of = first.index_select(0, level)
        below = level - first_of
        row_of = _repeat_ids(below)
        lv = (
            first_of.index_select(0, row_of)
            + torch.arange(row_of.shape[0], device=device)
            - (torch.cumsum(below, 0) - below).index_select(0, row_of)
        )
        # And at e_i itself when some other row of the class goes on past it (not the same way).
        n_new = torch.bincount(step.new_class)
        sum_new = torch.zeros(n_new.shape[0], dtype=torch.float64, device=device).index_add_(0, step.new_class, r)
        own = (e <= L) & ~step.ended & (through_count.index_select(0, level) > n_new.index_select(0, step.new_class))
        own = own.nonzero().squeeze(1)
        rows_out += [rows.index_select(0, row_of), rows.index_select(0, own)]
        pos_out += [depth.index_select(0, lv), e.index_select(0, own)]
        before_out += [v.index_select(0, lv), v.index_select(0, level.index_select(0, own))]
        after_out += [v.index_select(0, lv + 1), (sum_new / n_new).index_select(0, step.new_class.index_select(0, own))]

        # Rows that leave now: the deepest point they share with another row of the class.
        going_on = torch.zeros_like(n_new).index_add_(0, step.new_class, (~step.ended).long())
        leaving = step.ended | (going_on.index_select(0, step.new_class) < 2)
        top = end.index_select(0, level) - 1  # the class's deepest level
        alone_at_top = (level == top) & (count.index_select(0, level) == 1)
        others_top = depth.index_select(0, torch.where(alone_at_top, top - 1, top))
        leaving = leaving.nonzero().squeeze(1)
        divergence.index_copy_(0, rows.index_select(0, leaving), torch.minimum(e, others_top).index_select(0, leaving))

    branch_row = torch.cat(rows_out) if rows_out else lengths.new_zeros(0)
    branch_pos = torch.cat(pos_out) if pos_out else lengths.new_zeros(0)
    order = torch.argsort(branch_row * (L + 1) + branch_pos)
    empty = r64.new_zeros(0)
    return PrefixForest(
        layout=layout,
        lengths=lengths,
        scores=r64,
        branch_row=branch_row.index_select(0, order),
        branch_pos=branch_pos.index_select(0, order),
        value_before=(torch.cat(before_out) if before_out else empty).index_select(0, order),
        value_after=(torch.cat(after_out) if after_out else empty).index_select(0, order),
        divergence_depth=divergence,
    )
