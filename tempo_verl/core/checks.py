"""Input checks of the TEMPO estimator and the valid lengths of its masks (pure torch).

Every bad input raises a ``ValueError`` that names the argument, says what was expected and how to
fix it. The masks are read in row chunks, so no check allocates more than a chunk whatever the
mask's dtype (a full-size float64 or bool copy of a paper-scale mask is hundreds of MiB).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_inputs", "check_lengths", "check_number", "read_mask"]

_CHUNK_ELEMENTS = 1 << 22  # mask entries read per chunk: few, large steps (each is a parallel region)


def check_number(name: str, value, minimum: float | None = None) -> float:
    """``value`` as a finite float (at least ``minimum`` when given), else a ``ValueError`` naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a number, got {value!r}.") from err
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {number}.")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name}: expected a number >= {minimum}, got {number}.")
    return number


def check_inputs(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, responses: torch.Tensor | None
) -> None:
    """Check the shapes and dtypes of the three batch tensors.

    Args:
        token_level_rewards: ``(bs, L)`` float rewards.
        response_mask: ``(bs, L)`` mask (its values are checked by :func:`read_mask`).
        responses: ``(bs, L)`` token ids of any integer dtype.
    """
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
    if responses is None:
        raise ValueError(
            "responses: TEMPO needs the response token ids to build the prefix trees, and none were "
            "passed. Call compute_tempo_advantage(..., responses=batch['responses']); inside verl, "
            "install the plugin (pip install tempo-verl) so its hook passes them to the estimator "
            "(see docs/verl.md)."
        )
    for name, t in (("response_mask", response_mask), ("responses", responses)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (bs, length):
            raise ValueError(
                f"{name}: expected shape ({bs}, {length}) like token_level_rewards, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}."
            )
    if responses.dtype.is_floating_point or responses.dtype.is_complex or responses.dtype == torch.bool:
        raise ValueError(f"responses: expected integer token ids (any integer dtype), got dtype {responses.dtype}.")


def check_lengths(response_lengths, bs: int, width: int, device: torch.device) -> torch.Tensor:
    """``(bs,)`` int64 valid lengths given directly, each in ``[0, width]``."""
    lengths = torch.as_tensor(response_lengths, device=device)
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or tuple(lengths.shape) != (bs,):
        raise ValueError(f"response_lengths: expected ({bs},) integers, got {lengths.dtype} {tuple(lengths.shape)}.")
    lengths = lengths.long()
    if bool(((lengths < 0) | (lengths > width)).any()):
        raise ValueError(
            f"response_lengths: every valid length must lie in [0, {width}] (the response width); "
            f"got values from {int(lengths.min())} to {int(lengths.max())}."
        )
    return lengths


def read_mask(
    name: str, mask: torch.Tensor, lengths: bool, scalars: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Check that a mask holds only 0 and 1 (and, for lengths, is right-padded); scale it by row.

    One pass over the mask in row chunks, with reductions only (no full-size temporary):

    - integer masks: with ``n`` the row sum and ``z`` the first position of the row minimum ``m``, a
      row is ones-then-zeros exactly when ``m == 1 and n == L`` or ``m == 0 and n == z`` (entries
      before ``z`` are then positive and sum to ``z``); without lengths, ``min >= 0 and max <= 1``;
    - float masks: ``0 <= x <= 1`` and ``x == round(x)`` prove 0/1 (``x - round(x)`` is exact); a 0/1
      row is ones-then-zeros exactly when it never rises (``x[t] - x[t + 1] >= 0``).

    Args:
        name: the argument's name, for the error.
        mask: ``(bs, L)`` of any real dtype (bool, integer or float).
        lengths: also return each row's valid length, checking it is right-padded.
        scalars: ``(bs,)`` float32; if given, also return ``scalars[:, None] * mask``.

    Returns:
        ``(lengths, scaled)``: ``(bs,)`` int64 or None, ``(bs, L)`` float32 or None.
    """
    if mask.dtype.is_complex:
        raise ValueError(f"{name}: expected a 0/1 mask, got dtype {mask.dtype}.")
    bs, width = mask.shape
    device = mask.device
    out = None if scalars is None else torch.empty((bs, width), dtype=torch.float32, device=device)
    valid = torch.zeros(bs, dtype=torch.long, device=device) if lengths else None
    only01 = torch.ones((), dtype=torch.bool, device=device)
    padded = torch.ones((), dtype=torch.bool, device=device)
    integer_path = out is None and not mask.dtype.is_floating_point  # else the chunks are checked as floats
    rows = max(1, _CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, bs, rows):
        chunk = mask[start : start + rows]
        if out is not None:
            scaled = out[start : start + rows]
            scaled.copy_(chunk)  # exact on 0 and 1, monotone elsewhere
            if mask.dtype != torch.float64:
                chunk = scaled  # so the float32 copy, hot in cache, gives the same verdict
        if chunk.dtype == torch.bool:
            chunk = chunk.view(torch.uint8)
        if integer_path and lengths and width:
            count = chunk.sum(-1, dtype=torch.long)
            low, first_low = torch.min(chunk, dim=-1)
            padded &= (((low == 1) & (count == width)) | ((low == 0) & (count == first_low))).all()
            valid[start : start + rows] = count
            continue
        low, high = torch.aminmax(chunk)
        only01 &= (low >= 0) & (high <= 1)
        if integer_path:
            continue
        if chunk.dtype not in (torch.float32, torch.float64):
            chunk = chunk.float()
        if mask.dtype.is_floating_point:  # integers are whole already
            off_low, off_high = torch.aminmax(chunk.round().sub_(chunk))
            only01 &= (off_low == 0) & (off_high == 0)
        if lengths and width:
            # 0/1 values: integer sums, exact in float32 below 2**24; ones-then-zeros = never rising.
            valid[start : start + rows] = chunk.sum(-1, dtype=torch.float64 if width >= 2**24 else None).long()
            if width > 1:
                padded &= torch.aminmax(chunk[:, :-1] - chunk[:, 1:]).min >= 0
        if out is not None:
            scaled.mul_(scalars[start : start + rows, None])
    if not bool(only01) or (not bool(padded) and integer_path and _outside01(mask)):
        raise ValueError(f"{name}: expected a 0/1 mask (values 0 and 1 only), found other values.")
    if not bool(padded):
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
    return valid, out


def _outside01(mask: torch.Tensor) -> bool:
    """Whether an integer mask holds a value other than 0 and 1 (to word an error; not on the fast path)."""
    low, high = torch.aminmax(mask.view(torch.uint8) if mask.dtype == torch.bool else mask)
    return bool((low < 0) | (high > 1))
