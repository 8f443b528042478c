"""The TEMPO advantage estimator (pure torch; no verl import).

For a group of responses ``y_1..y_G`` to one prompt with outcome scores ``r_1..r_G``
(``mu``, ``sd``: the group's mean and unbiased standard deviation; ``mu = 0, sd = 1`` for a group
of one, as in verl's GRPO) and ``V(p)`` the mean score of the responses through prefix ``p``::

    A[i, t] = ((r_i - mu) + td_coef * (V(y_i[:t+1]) - V(y_i[:t]))) / (sd + epsilon)   (t < n_i)

(without the division when ``norm_adv_by_std_in_grpo`` is False), times ``response_mask``. The TD
term is zero except at branch tokens, so the result is verl's GRPO advantage (:func:`grpo_scalars`,
computed in the same order as verl's ``grpo``, so ``td_coef = 0`` gives its output bit for bit with
float32 rewards) plus a sparse TD correction at the branch tokens (:func:`tempo_advantage_and_forest`).
The prefix values come from :mod:`tempo_verl.core.forest`; the semantics are docs/estimator.md's.
"""

from __future__ import annotations

from typing import Any

import torch

from tempo_verl.core.checks import check_inputs, check_lengths, check_number, read_mask
from tempo_verl.core.forest import PrefixForest, build_prefix_forest
from tempo_verl.core.groups import uid_to_group_ids

__all__ = ["compute_tempo_advantage", "grpo_scalars", "tempo_advantage_and_forest"]


def grpo_scalars(
    scores: torch.Tensor, group: torch.Tensor, epsilon: float, norm_adv_by_std_in_grpo: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's GRPO advantage of each row, ``(r_i - mu) / (sd + epsilon)``, and the scale ``1 / (sd + epsilon)``.

    The group statistics are ``torch.mean`` and ``torch.std`` of each group's scores in batch order,
    as verl's ``compute_grpo_outcome_advantage`` computes them (one pair of reductions per group of
    two or more: the one loop over groups, kept for bit-identical results), and the row values are
    the same elementwise operations in the scores' dtype (float32 for half-precision scores).

    Args:
        scores: ``(bs,)`` outcome scores ``r_i``.
        group: ``(bs,)`` int64 contiguous group ids.
        epsilon: added to the group std.
        norm_adv_by_std_in_grpo: divide by ``sd + epsilon`` (else Dr. GRPO: only centre).

    Returns:
        ``(grpo, scale)``: ``(bs,)`` in the scores' dtype, and ``(bs,)`` float64 (``1`` without the division).
    """
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()
    size = torch.bincount(group)
    mean = torch.zeros(size.shape[0], dtype=scores.dtype, device=scores.device)
    std = torch.ones_like(mean)
    multi = (size >= 2).nonzero().squeeze(1).tolist()
    if multi:
        sorted_scores = scores[torch.argsort(group, stable=True)]
        per_group = sorted_scores.split(size.tolist())
        mean[multi] = torch.stack([per_group[g].mean() for g in multi])
        std[multi] = torch.stack([per_group[g].std() for g in multi])
    centred = scores - mean[group]
    if not norm_adv_by_std_in_grpo:
        return centred, torch.ones_like(scores, dtype=torch.float64)
    sd = std[group] + epsilon
    return centred / sd, 1.0 / sd.to(torch.float64)


def tempo_advantage_and_forest(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    responses: torch.Tensor | None,
    *,
    response_attention_mask: torch.Tensor | None = None,
    response_lengths: torch.Tensor | None = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    td_coef: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, PrefixForest]:
    """:func:`compute_tempo_advantage`, also returning the :class:`PrefixForest` (for metrics and dumps)."""
    td_coef = check_number("td_coef", td_coef)
    epsilon = check_number("epsilon", epsilon, minimum=0.0)
    check_inputs(token_level_rewards, response_mask, responses)
    bs, width = token_level_rewards.shape
    device = token_level_rewards.device
    group = uid_to_group_ids(index, bs, device=device)
    scores = token_level_rewards.sum(dim=-1)
    if not bool(torch.isfinite(scores).all()):  # why an error, not NaN for the group: docs/estimator.md
        rows = (~torch.isfinite(scores)).nonzero().squeeze(1).tolist()
        raise ValueError(
            f"token_level_rewards: found NaN or infinite rewards in {len(rows)} response(s) (rows "
            f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}); every outcome score must be "
            "finite. Make the reward function return a finite number (0.0 for an answer it cannot grade)."
        )

    # Dense part: verl's GRPO, the row value broadcast over the checked mask (one full-size allocation).
    grpo, scale = grpo_scalars(scores, group, epsilon, norm_adv_by_std_in_grpo)
    from_mask = response_lengths is None and response_attention_mask is None
    lengths, advantages = read_mask("response_mask", response_mask, lengths=from_mask, scalars=grpo.float())
    if response_lengths is not None:
        lengths = check_lengths(response_lengths, bs, width, device)
    elif response_attention_mask is not None:
        if not isinstance(response_attention_mask, torch.Tensor) or tuple(response_attention_mask.shape) != (
            bs,
            width,
        ):
            raise ValueError(
                f"response_attention_mask: expected shape ({bs}, {width}), got "
                f"{tuple(getattr(response_attention_mask, 'shape', ()))}."
            )
        lengths, _ = read_mask("response_attention_mask", response_attention_mask, lengths=True)

    # Sparse part: the TD term at the branch tokens, added to the GRPO value there.
    forest = build_prefix_forest(responses, lengths, group, scores)
    b_row, b_pos = forest.branch_row, forest.branch_pos
    value = grpo[b_row].to(torch.float64) + td_coef * forest.td * scale[b_row]
    advantages[b_row, b_pos] = (value * response_mask[b_row, b_pos].to(torch.float64)).float()
    return advantages, advantages, forest


def compute_tempo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    responses: torch.Tensor,
    *,
    response_attention_mask: torch.Tensor | None = None,
    response_lengths: torch.Tensor | None = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    td_coef: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TEMPO advantage: GRPO plus a prefix-tree TD correction at branch tokens.

    Args:
        token_level_rewards: ``(bs, L)`` float rewards per response token; a response's outcome
            score ``r_i`` is their sum (as in verl's GRPO).
        response_mask: ``(bs, L)`` 0/1 tokens that are trained on (bool, integer or float); the
            advantage is 0 elsewhere. In multi-turn rollouts tool-output tokens are 0 here but still
            part of the tree.
        index: ``(bs,)`` prompt ids (verl's ``uid``); rows with equal ids form a group, in any order,
            grouped exactly as verl's GRPO groups them (equal Python values: ``None``, mixed strings
            and integers are fine; see :func:`~tempo_verl.core.groups.uid_to_group_ids` for NaN).
        responses: ``(bs, L)`` response token ids of any integer dtype, right-padded; the ids are
            arbitrary integers (negative ones included). Required.
        response_attention_mask: ``(bs, L)`` 0/1 right-padded mask of the positions that hold a
            real token (``attention_mask[:, -L:]``); gives each response's valid length ``n_i``.
            Defaults to ``response_mask``, which is right for single-turn rollouts only: with
            tool-output holes in ``response_mask`` pass the attention mask (a mask with holes is
            rejected rather than misread).
        response_lengths: ``(bs,)`` integer valid lengths, instead of an attention mask.
        epsilon: added to the group std before dividing (verl's GRPO uses 1e-6).
        norm_adv_by_std_in_grpo: divide by the group std (GRPO); False gives Dr. GRPO scaling.
        td_coef: weight of the TD term (1.0 is the paper's estimator). With 0.0 the result is
            verl's ``grpo`` output bit for bit for float32 rewards (rounded to float32 for float64 rewards).

    An unknown keyword argument is a ``TypeError`` (a misspelt ``td_coeff`` never falls back to a
    default). verl's registry calls :func:`tempo_verl.plugin.estimator.tempo_estimator`, which reads
    ``norm_adv_by_std_in_grpo`` and ``algorithm.tempo.td_coef`` from verl's config and calls this.

    Returns:
        ``(advantages, returns)``, both the same ``(bs, L)`` float32 tensor on the input's device.
    """
    advantages, returns, _ = tempo_advantage_and_forest(
        token_level_rewards,
        response_mask,
        index,
        responses,
        response_attention_mask=response_attention_mask,
        response_lengths=response_lengths,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo,
        td_coef=td_coef,
    )
    return advantages, returns
