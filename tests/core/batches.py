"""Batches for the core tests: rows written out by hand, and random groups for the property tests."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st


def batch_from_rows(rows: list[tuple[str, list[int], float]], width: int | None = None, pad: int = 0):
    """(uid, tokens, score) rows -> right-padded tensors; the score sits on the last valid token."""
    width = width or max(1, max(len(t) for _, t, _ in rows))
    bs = len(rows)
    responses = torch.full((bs, width), pad, dtype=torch.long)
    mask = torch.zeros(bs, width, dtype=torch.long)
    rewards = torch.zeros(bs, width)
    for i, (_, toks, score) in enumerate(rows):
        responses[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        mask[i, : len(toks)] = 1
        rewards[i, max(len(toks) - 1, 0)] = score
    index = np.array([u for u, _, _ in rows], dtype=object)
    return rewards, mask, index, responses


@st.composite
def tempo_batches(draw, max_groups: int = 5, max_group_size: int = 6, max_width: int = 12):
    """Groups of random responses over a tiny vocabulary (so prefixes are shared and duplicated)."""
    vocab = draw(st.integers(1, 4))
    width = draw(st.integers(1, max_width))
    n_groups = draw(st.integers(1, max_groups))
    rows = []
    for g in range(n_groups):
        size = draw(st.integers(1, max_group_size))
        base = draw(st.lists(st.integers(1, vocab), min_size=width, max_size=width))
        for _ in range(size):
            n = draw(st.integers(0, width))
            keep = draw(st.integers(0, n))  # share a prefix of the group's base, then wander
            tail = draw(st.lists(st.integers(1, vocab), min_size=n - keep, max_size=n - keep))
            score = draw(st.sampled_from([0.0, 1.0]) | st.floats(-3, 3, allow_nan=False, width=32))
            rows.append((f"uid-{g}", base[:keep] + tail, score))
    order = draw(st.permutations(range(len(rows))))  # interleave the groups
    rows = [rows[i] for i in order]
    rewards, attention, index, responses = batch_from_rows(rows, width=width)
    # Holes in response_mask inside the valid part (tool outputs), so the attention mask is separate.
    holes = torch.tensor(draw(st.lists(st.booleans(), min_size=len(rows) * width, max_size=len(rows) * width)))
    response_mask = attention.clone()
    if draw(st.booleans()):
        response_mask[holes.reshape(len(rows), width)] = 0
    # Spread each row's score over random valid positions: only the sum is the outcome.
    if draw(st.booleans()):
        split = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
        total = rewards.sum(-1, keepdim=True)
        weights = split * attention
        rewards = torch.where(
            attention.sum(-1, keepdim=True) > 0,
            total * weights / weights.sum(-1, keepdim=True).clamp(min=1e-9),
            rewards,
        )
    return rewards, response_mask, attention, index, responses
