"""Input checks of the TEMPO estimator and the valid lengths of its masks (pure torch).

Every bad input raises a ``ValueError`` that names the argument, says what was expected and how to
fix it. The masks are read in row chunks, so no check allocates more than a chunk whatever the
mask's dtype (a full-size float64 or bool copy of a paper-scale mask is hundreds of MiB).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_inputs", "check_lengths", "check_number", "read_mask"]

# Mask entries read per chunk. Each operation on a chunk is one parallel region of torch's threads, and on a
# busy machine a region waits for every thread to be scheduled (milliseconds each): few large chunks (8 M
# entries: four at paper scale) keep that wait small next to the work. A float mask is checked in place
# through a float scratch chunk (frac, staircase), which must stay in cache: 1 M entries (4 MiB of float32
# scratch) measured 154-188 ms against 218-231 ms with 8 M at paper scale on a quiet machine.
_CHUNK_ELEMENTS = 1 << 23
_FLOAT_CHUNK_ELEMENTS = 1 << 20


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

    One pass over the mask in row chunks (no full-size temporary):

    - integer masks: with ``n`` the row sum and ``z`` the first position of the row minimum ``m``, a
      row is ones-then-zeros exactly when ``m == 1 and n == L`` or ``m == 0 and n == z`` (entries
      before ``z`` are then positive and sum to ``z``); without lengths, ``min >= 0 and max <= 1``;
      with scalars, each chunk is first copied to the float32 output and checked there as floats;
    - float masks with lengths: ``n`` the row sum, the row must equal ``n`` ones then zeros (a view of a
      staircase, gathered into a reused chunk buffer and compared by ``torch.equal``); without
      lengths, ``0 <= x <= 1`` (NaN fails it) and ``x - trunc(x) == 0`` (exact; in the buffer).

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
    copied = out is not None and not mask.dtype.is_floating_point  # integers: checked and scaled as a float32 copy
    floating = copied or mask.dtype.is_floating_point
    dtype = torch.float32 if copied else mask.dtype
    rows = max(1, (_FLOAT_CHUNK_ELEMENTS if mask.dtype.is_floating_point else _CHUNK_ELEMENTS) // max(width, 1))
    if floating:
        scratch = torch.empty((min(rows, bs), width), dtype=dtype, device=device)  # reused by every chunk
        if lengths:  # staircase[width - n]: n ones, then zeros (a view)
            steps = torch.cat([scratch.new_ones(width), scratch.new_zeros(width)])
            staircase = steps.as_strided((width + 1, width), (1, 1))
            sums = torch.float64 if dtype == torch.float64 or width >= 2**24 else torch.float32
    for start in range(0, bs if width else 0, rows):  # an empty row holds no value, its length is 0
        chunk = mask[start : start + rows]
        if copied:  # exact on 0 and 1, monotone elsewhere; hot in cache for the checks and the product
            chunk = out[start : start + rows].copy_(chunk)
        elif chunk.dtype == torch.bool:
            chunk = chunk.view(torch.uint8)
        if lengths and floating:
            # The row sum read as a length n, then the row compared with n ones then zeros: a match
            # proves both 0/1 and right padding whatever the sum's rounding (NaN matches nothing).
            count = chunk.sum(-1, dtype=sums).long().clamp_(0, width)
            stairs = torch.index_select(staircase, 0, width - count, out=scratch[: chunk.shape[0]])
            padded &= torch.equal(stairs, chunk)
            valid[start : start + rows] = count
        elif lengths:
            count = chunk.sum(-1, dtype=torch.long)
            low, first_low = torch.min(chunk, dim=-1)
            padded &= (((low == 1) & (count == width)) | ((low == 0) & (count == first_low))).all()
            valid[start : start + rows] = count
        else:
            low, high = torch.aminmax(chunk)  # NaN gives NaN: not in [0, 1]
            only01 &= (low >= 0) & (high <= 1)
            if floating and not copied:  # and whole: x - trunc(x) == 0 (exact)
                off_low, off_high = torch.aminmax(torch.frac(chunk, out=scratch[: chunk.shape[0]]))
                only01 &= (off_low == 0) & (off_high == 0)
        if out is not None:
            torch.mul(chunk, scalars[start : start + rows, None], out=out[start : start + rows])  # in place if copied
    if not bool(only01) or (not bool(padded) and _outside01(mask)):
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
    """Whether a mask holds a value other than 0 and 1 (to word an error; not on the fast path)."""
    return bool(((mask != 0) & (mask != 1)).any())
