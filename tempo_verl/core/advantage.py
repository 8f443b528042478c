"""The TEMPO advantage estimator (pure torch; no verl import).

For a group of responses ``y_1..y_G`` to one prompt with outcome scores ``r_1..r_G``
(``mu``, ``sd``: the group's mean and unbiased standard deviation; ``mu = 0, sd = 1`` for a group
of one, as in verl's GRPO) and ``V(p)`` the mean score of the responses through prefix ``p``::

    A[i, t] = ((r_i - mu) + td_coef * (V(y_i[:t+1]) - V(y_i[:t]))) / (sd + epsilon)   (t < n_i)

(without the division when ``norm_adv_by_std_in_grpo`` is False), times ``response_mask``. The TD
term is zero except at branch tokens, so the result is GRPO's dense advantage plus a sparse
correction; ``td_coef = 0`` is exactly GRPO. The semantics are those of SPEC-tempo.md.
"""

from __future__ import annotations

from typing import Any

import torch

from tempo_verl.core.forest import PrefixForest, build_prefix_forest, uid_to_group_ids

__all__ = ["compute_tempo_advantage", "tempo_advantage_and_forest"]


def _check_01(name: str, weights: torch.Tensor, source_dtype: torch.dtype) -> None:
    """Raise unless every entry of ``weights`` (a float32 copy of a mask) is 0 or 1; no full-size temporaries."""
    if source_dtype == torch.bool or weights.numel() == 0:
        return
    lo, hi = torch.aminmax(weights)
    ok = (lo >= 0) & (hi <= 1)
    if source_dtype.is_floating_point:
        # In [0, 1], the count of non-zeros equals the sum only if every non-zero is exactly 1.
        ok &= weights.count_nonzero() == weights.sum(dtype=torch.float64)
    if not bool(ok):
        raise ValueError(f"{name}: expected a 0/1 mask (values 0 and 1 only), found other values.")


def _valid_lengths(name: str, mask: torch.Tensor, known_01: bool = False) -> torch.Tensor:
    """``(bs,)`` valid lengths from a right-padded ``(bs, L)`` 0/1 mask, checked in two row reductions.

    With ``z`` the first position of the row minimum ``m`` and ``n`` the row sum, a row is ones-then-zeros
    exactly when ``m == 1 and n == L`` or ``m == 0 and n == z`` (entries before ``z`` are then positive and
    sum to ``z``). For integer masks this also proves 0/1; float masks need ``max <= 1`` too.
    """
    if mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)
    if mask.dtype.is_complex:
        raise ValueError(f"{name}: expected a 0/1 mask, got dtype {mask.dtype}.")
    width = mask.shape[1]
    lengths = mask.sum(-1, dtype=torch.float64 if mask.dtype.is_floating_point else torch.long)
    if width:
        low, first_low = torch.min(mask, dim=-1)
        ok = ((low == 1) & (lengths == width)) | ((low == 0) & (lengths == first_low))
        if mask.dtype.is_floating_point and not known_01:
            ok &= mask.max() <= 1
        if not bool(ok.all()):
            hint = (
                " (multi-turn rollouts have holes in response_mask: pass the response part of "
                "attention_mask as response_attention_mask)"
                if name == "response_mask"
                else ""
            )
            raise ValueError(
                f"{name}: expected a right-padded 0/1 mask (ones, then zeros) that gives each response's "
                f"valid length, found other values or a zero before a one{hint}."
            )
    return lengths.long()


def _check_inputs(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    responses: torch.Tensor,
) -> None:
    if not isinstance(token_level_rewards, torch.Tensor) or token_level_rewards.dim() != 2:
        raise ValueError(
            "token_level_rewards: expected a (bs, response_length) float tensor, got "
            f"{getattr(token_level_rewards, 'shape', type(token_level_rewards).__name__)}."
        )
    bs, length = token_level_rewards.shape
    if bs == 0:
        raise ValueError("token_level_rewards: the batch is empty (bs = 0); TEMPO needs at least one response.")
    if not token_level_rewards.dtype.is_floating_point:
        raise ValueError(f"token_level_rewards: expected a float tensor, got {token_level_rewards.dtype}.")
    for name, t in (("response_mask", response_mask), ("responses", responses)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (bs, length):
            raise ValueError(
                f"{name}: expected shape ({bs}, {length}) like token_level_rewards, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}."
            )
    if responses.dtype.is_floating_point or responses.dtype.is_complex or responses.dtype == torch.bool:
        raise ValueError(f"responses: expected integer token ids, got dtype {responses.dtype}.")


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
    try:
        td_coef = float(td_coef)
    except (TypeError, ValueError) as err:
        raise ValueError(f"td_coef: expected a number, got {td_coef!r}.") from err
    if td_coef != td_coef or abs(td_coef) == float("inf"):
        raise ValueError(f"td_coef: expected a finite number, got {td_coef}.")
    if not epsilon >= 0:
        raise ValueError(f"epsilon: expected a non-negative number, got {epsilon}.")

    if responses is None:
        raise ValueError(
            "responses: TEMPO needs the response token ids to build the prefix trees, and none were "
            "passed. Call compute_tempo_advantage(..., responses=batch['responses']); inside verl, "
            "install the plugin (pip install tempo-verl) so its hook passes them to the estimator "
            "(see docs/verl.md)."
        )
    _check_inputs(token_level_rewards, response_mask, responses)
    bs, length = token_level_rewards.shape
    device = token_level_rewards.device
    group = uid_to_group_ids(index, bs, device=device)

    # The float32 copy of response_mask is checked, then becomes the advantages buffer (one full-size allocation).
    weights = response_mask.to(torch.float32, copy=True)
    _check_01("response_mask", weights, response_mask.dtype)
    if response_lengths is not None:
        lengths = torch.as_tensor(response_lengths, device=device)
        if lengths.dtype.is_floating_point or tuple(lengths.shape) != (bs,):
            raise ValueError(
                f"response_lengths: expected ({bs},) integers, got {lengths.dtype} {tuple(lengths.shape)}."
            )
        lengths = lengths.long()
        if bool(((lengths < 0) | (lengths > length)).any()):
            raise ValueError(
                f"response_lengths: every valid length must lie in [0, {length}] (the response width); "
                f"got values from {int(lengths.min())} to {int(lengths.max())}."
            )
    elif response_attention_mask is not None:
        if not isinstance(response_attention_mask, torch.Tensor) or tuple(response_attention_mask.shape) != (
            bs,
            length,
        ):
            raise ValueError(
                f"response_attention_mask: expected shape ({bs}, {length}), got "
                f"{tuple(getattr(response_attention_mask, 'shape', ()))}."
            )
        lengths = _valid_lengths("response_attention_mask", response_attention_mask)
    else:
        lengths = _valid_lengths("response_mask", weights, known_01=True)

    scores = token_level_rewards.sum(dim=-1)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("token_level_rewards: found NaN or infinite rewards; every outcome score must be finite.")

    forest = build_prefix_forest(responses, lengths, group, scores)

    # Group statistics (float64): mean and unbiased std; a group of one gets mu = 0, sd = 1 (verl's GRPO).
    r = forest.scores
    size = forest.layout.size.to(torch.float64)
    mean = torch.zeros_like(size).index_add_(0, group, r) / size
    sq = torch.zeros_like(size).index_add_(0, group, (r - mean[group]) ** 2)
    std = torch.sqrt(sq / (size - 1).clamp(min=1))
    single = forest.layout.size == 1
    mean = mean.masked_fill(single, 0.0)
    std = std.masked_fill(single, 1.0)
    centred = r - mean[group]
    scale = 1.0 / (std[group] + epsilon) if norm_adv_by_std_in_grpo else torch.ones_like(r)

    # Dense part: GRPO. Sparse part: the TD term at the branch tokens, written over the dense value.
    b_row, b_pos = forest.branch_row, forest.branch_pos
    mask_at_branch = weights[b_row, b_pos]
    advantages = weights.mul_((centred * scale).to(torch.float32)[:, None])
    value = (centred[b_row] + td_coef * forest.td) * scale[b_row]
    advantages[b_row, b_pos] = value.to(torch.float32) * mask_at_branch
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
        response_mask: ``(bs, L)`` 0/1 tokens that are trained on; the advantage is 0 elsewhere.
            In multi-turn rollouts tool-output tokens are 0 here but still part of the tree.
        index: ``(bs,)`` prompt ids (verl's ``uid``); rows with equal ids form a group, in any order.
        responses: ``(bs, L)`` integer response token ids, right-padded. Required.
        response_attention_mask: ``(bs, L)`` 0/1 right-padded mask of the positions that hold a
            real token (``attention_mask[:, -L:]``); gives each response's valid length ``n_i``.
            Defaults to ``response_mask``, which is right for single-turn rollouts only: with
            tool-output holes in ``response_mask`` pass the attention mask (a mask with holes is
            rejected rather than misread).
        epsilon: added to the group std before dividing (verl's GRPO uses 1e-6).
        norm_adv_by_std_in_grpo: divide by the group std (GRPO); False gives Dr. GRPO scaling.
        td_coef: weight of the TD term (1.0 is the paper's estimator; 0.0 is exactly GRPO).
        response_lengths: ``(bs,)`` integer valid lengths, instead of an attention mask.

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
