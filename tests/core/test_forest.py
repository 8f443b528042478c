"""The prefix forest against the dictionary trie: large groups, deep trees, dense values, divergence depths."""

from __future__ import annotations

import torch
from batches import batch_from_rows, tempo_batches
from hypothesis import given
from hypothesis import strategies as st
from trie_reference import reference_prefix_values, reference_tempo_advantage

from tempo_verl.core import build_prefix_forest, compute_tempo_advantage, expand_values
from tempo_verl.core.forest import pairwise_common_prefix
from tempo_verl.core.groups import group_layout, uid_to_group_ids


def _forest(batch):
    rewards, _, attention, index, responses = batch
    lengths = attention.sum(-1)
    group = uid_to_group_ids(index, len(index))
    return build_prefix_forest(responses, lengths, group, rewards.sum(-1)), lengths


def _check_against_trie(batch) -> None:
    rewards, _, _, index, responses = batch
    forest, lengths = _forest(batch)
    n = lengths.tolist()
    scores = rewards.sum(-1).double().tolist()
    expected = reference_prefix_values(index, responses, n, scores)
    dense = forest.values(torch.arange(len(index)))
    for i in range(len(index)):
        torch.testing.assert_close(dense[i, : n[i] + 1], torch.tensor(expected[i], dtype=torch.float64))
        assert torch.isnan(dense[i, n[i] + 1 :]).all()
        # Branch tokens: exactly where V changes or another row ends or parts, each once, inside the row.
        pos = forest.branch_pos[forest.branch_row == i]
        assert bool((pos < n[i]).all()) and pos.unique().numel() == pos.numel()
    # The divergence depth is the longest common prefix with any other row of the group.
    lcp = pairwise_common_prefix(responses, lengths, group_layout(forest.layout.group))
    mates = forest.layout.mates
    others = torch.where((mates >= 0) & (mates != torch.arange(len(index))[:, None]), lcp, 0)
    assert torch.equal(forest.divergence_depth, others.max(dim=1).values.clamp(min=0))


@given(batch=tempo_batches(max_groups=3, max_group_size=40, max_width=40))
def test_large_groups_and_deep_trees_match_the_trie(batch):
    _check_against_trie(batch)


@given(batch=tempo_batches())
def test_values_and_branches_match_the_trie(batch):
    _check_against_trie(batch)


def _deep_group(size: int, width: int, seed: int, vocab: int = 2):
    """One group of ``size`` responses over a two-token vocabulary: a deep, bushy tree."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(size):
        n = int(torch.randint(0, width + 1, (1,), generator=gen))
        toks = torch.randint(0, vocab, (n,), generator=gen).tolist()
        rows.append(("one", toks, float(torch.randint(0, 2, (1,), generator=gen))))
    return batch_from_rows(rows, width=width)


def test_one_large_group_matches_the_reference():
    rewards, mask, index, responses = _deep_group(size=700, width=48, seed=3)
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    expected = reference_tempo_advantage(rewards, mask, index, responses, mask.sum(-1).tolist())
    torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)
    _check_against_trie((rewards, mask, mask, index, responses))


def test_long_shared_prefixes_need_several_spans():
    """2000-token shared parts cross several doubling spans and the near-the-end window clamp."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randint(0, 5, (2300,), generator=gen)
    rows = []
    for k, cut in enumerate([0, 1, 31, 32, 33, 500, 1999, 2000, 2000, 2299, 2300, 2300]):
        tail = torch.randint(5, 9, (2300 - cut,), generator=gen)
        toks = torch.cat([base[:cut], tail])[: 2300 - (k % 3)]
        rows.append(("g", toks.tolist(), float(k % 2)))
    rewards, mask, index, responses = batch_from_rows(rows, width=2300)
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    expected = reference_tempo_advantage(rewards, mask, index, responses, mask.sum(-1).tolist())
    torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)


@given(batch=tempo_batches(max_group_size=8, max_width=16), window=st.sampled_from([1, 2, 3, 5, 64]))
def test_forest_does_not_depend_on_the_window(batch, window):
    rewards, _, attention, index, responses = batch
    lengths = attention.sum(-1)
    group = uid_to_group_ids(index, len(index))
    a = build_prefix_forest(responses, lengths, group, rewards.sum(-1))
    b = build_prefix_forest(responses, lengths, group, rewards.sum(-1), window=window)
    assert torch.equal(a.branch_row, b.branch_row) and torch.equal(a.branch_pos, b.branch_pos)
    torch.testing.assert_close(a.td, b.td)
    assert torch.equal(a.divergence_depth, b.divergence_depth)


def test_expand_values_is_a_step_function_of_the_branch_entries():
    lengths = torch.tensor([4, 2, 0])
    v = expand_values(
        lengths,
        branch_row=torch.tensor([0, 1, 0]),
        branch_pos=torch.tensor([2, 0, 0]),
        value_before=torch.tensor([0.5, 0.25, 0.3]),
        value_after=torch.tensor([1.0, 0.75, 0.5]),
        root_value=torch.tensor([0.3, 0.25, 0.9], dtype=torch.float64),
        width=5,
    )
    nan = float("nan")
    expected = torch.tensor(
        [[0.3, 0.5, 0.5, 1.0, 1.0, nan], [0.25, 0.75, 0.75, nan, nan, nan], [0.9, nan, nan, nan, nan, nan]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(v, expected, equal_nan=True)


def test_a_group_of_thousands_has_linear_many_branch_entries():
    """Random responses: each row parts at the root; the forest holds ~one entry per row, no G x G table."""
    gen = torch.Generator().manual_seed(1)
    bs, width = 4096, 64
    responses = torch.randint(0, 151_000, (bs, width), generator=gen)
    forest = build_prefix_forest(
        responses, torch.full((bs,), width), torch.zeros(bs, dtype=torch.long), torch.rand(bs, generator=gen)
    )
    assert forest.branch_row.numel() < 2 * bs
    assert forest.layout.members.shape == (1, bs)
