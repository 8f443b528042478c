"""Tree metrics of one TEMPO call (pure torch), logged under ``tempo/`` in verl's metrics dict."""

from __future__ import annotations

import torch

from tempo_verl.core.forest import PrefixForest

__all__ = ["tree_metrics"]


def tree_metrics(forest: PrefixForest, response_mask: torch.Tensor) -> dict[str, float]:
    """Summarise how the responses of each group share prefixes.

    Args:
        forest: the prefix trees of the batch.
        response_mask: ``(bs, L)`` 0/1 trained tokens.

    Returns:
        ``tempo/branch_token_frac``: share of trained tokens that are branch tokens (where another
        response of the group leaves the path, so the TD term applies);
        ``tempo/divergence_depth/mean`` and ``/max``: tokens a response shares with at least one
        other response of its group before it goes its own way (rows of groups of two or more);
        ``tempo/shared_prefix_group_frac``: share of groups (of two or more) in which some two
        responses share at least their first token;
        ``tempo/td_abs/mean``: mean ``|V(s_{t+1}) - V(s_t)|`` over the branch tokens;
        ``tempo/branches_per_response``: mean number of branch tokens per response.
        All values are plain floats (one host transfer).
    """
    layout = forest.layout
    grouped = layout.size[layout.group] >= 2
    depth = forest.divergence_depth.to(torch.float64)
    b_row, b_pos = forest.branch_row, forest.branch_pos
    trained_branch = response_mask[b_row, b_pos].to(torch.float64).sum()
    # Counted, not summed in the mask's dtype (fp16 stops at 65504, float32 is inexact past 2**24), and
    # without a full-size copy: the mask is 0/1 (the estimator checked it).
    trained = (response_mask.count_nonzero() if response_mask.dtype.is_floating_point else response_mask.sum()).to(
        torch.float64
    )
    multi = layout.size >= 2
    shares = torch.zeros_like(layout.size).index_add_(0, layout.group, (grouped & (depth > 0)).long()) > 0
    n_grouped = grouped.sum()
    stats = torch.stack(
        [
            trained_branch / trained.clamp(min=1),
            torch.where(grouped, depth, 0.0).sum() / n_grouped.clamp(min=1),
            torch.where(grouped, depth, 0.0).max() if depth.numel() else depth.new_zeros(()),
            (shares & multi).sum() / multi.sum().clamp(min=1),
            forest.td.abs().mean() if b_row.numel() else depth.new_zeros(()),
            torch.tensor(float(b_row.numel()), dtype=torch.float64, device=depth.device) / depth.numel(),
        ]
    ).tolist()
    names = [
        "tempo/branch_token_frac",
        "tempo/divergence_depth/mean",
        "tempo/divergence_depth/max",
        "tempo/shared_prefix_group_frac",
        "tempo/td_abs/mean",
        "tempo/branches_per_response",
    ]
    return dict(zip(names, stats, strict=True))
