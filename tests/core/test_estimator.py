"""The TEMPO estimator against the spec: worked example, a dictionary-trie oracle, invariances, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from batches import batch_from_rows, tempo_batches
from hypothesis import given
from hypothesis import strategies as st
from trie_reference import reference_tempo_advantage

from tempo_verl import build_prefix_forest, compute_tempo_advantage
from tempo_verl.core.forest import pairwise_common_prefix
from tempo_verl.core.groups import group_layout, uid_to_group_ids


def test_spec_worked_example():
    a, b, c, d, e, f = 11, 12, 13, 14, 15, 16
    rows = [("p", [a, b, c], 1.0), ("p", [a, b, d], 0.0), ("p", [a, e], 1.0), ("p", [f], 0.0)]
    rewards, mask, index, responses = batch_from_rows(rows)
    adv, ret = compute_tempo_advantage(rewards, mask, index, responses)
    sd = math.sqrt(1 / 3) + 1e-6
    expected = torch.tensor(
        [
            [(0.5 + 1 / 6) / sd, (0.5 - 1 / 6) / sd, (0.5 + 1 / 2) / sd],  # V: 1/2 -> 2/3 -> 1/2 -> 1
            [(-0.5 + 1 / 6) / sd, (-0.5 - 1 / 6) / sd, (-0.5 - 1 / 2) / sd],  # V: 1/2 -> 2/3 -> 1/2 -> 0
            [(0.5 + 1 / 6) / sd, (0.5 + 1 / 3) / sd, 0.0],  # V: 1/2 -> 2/3 -> 1
            [(-0.5 - 1 / 2) / sd, 0.0, 0.0],  # V: 1/2 -> 0
        ]
    )
    assert adv.dtype == torch.float32
    assert ret is adv
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)
    # The figures the spec prints for response 1 and response 4.
    assert [round(x, 3) for x in adv[0].tolist()] == [1.155, 0.577, 1.732]
    assert round(adv[3, 0].item(), 3) == -1.732


@given(
    batch=tempo_batches(),
    norm=st.booleans(),
    td_coef=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_matches_dictionary_trie_reference(batch, norm, td_coef, dtype):
    rewards, response_mask, attention, index, responses = batch
    rewards = rewards.to(dtype)
    adv, _ = compute_tempo_advantage(
        rewards,
        response_mask,
        index,
        responses,
        response_attention_mask=attention,
        norm_adv_by_std_in_grpo=norm,
        td_coef=td_coef,
    )
    expected = reference_tempo_advantage(
        rewards,
        response_mask,
        index,
        responses,
        attention.sum(-1).tolist(),
        norm_adv_by_std_in_grpo=norm,
        td_coef=td_coef,
    )
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)


@given(batch=tempo_batches(max_group_size=8, max_width=16), window=st.sampled_from([1, 2, 3, 5, 64]))
def test_pairwise_common_prefix_is_exact_for_any_window(batch, window):
    _, _, attention, index, responses = batch
    lengths = attention.sum(-1)
    layout = group_layout(uid_to_group_ids(index, len(index)))
    lcp = pairwise_common_prefix(responses, lengths, layout, window=window)
    mates = layout.mates
    for i in range(len(index)):
        for k, j in enumerate(mates[i].tolist()):
            if j < 0:
                assert lcp[i, k] == -1
                continue
            n = min(lengths[i], lengths[j])
            brute = 0
            while brute < n and responses[i, brute] == responses[j, brute]:
                brute += 1
            assert lcp[i, k] == (lengths[i] if i == j else brute), (i, j)


def test_dense_prefix_values_follow_the_tree():
    a, b, c, d, e, f = 1, 2, 3, 4, 5, 6
    rows = [("p", [a, b, c], 1.0), ("p", [a, b, d], 0.0), ("p", [a, e], 1.0), ("p", [f], 0.0)]
    rewards, mask, index, responses = batch_from_rows(rows)
    forest = build_prefix_forest(responses, mask.sum(-1), uid_to_group_ids(index, 4), rewards.sum(-1))
    v = forest.values(torch.arange(4))
    torch.testing.assert_close(v[0], torch.tensor([0.5, 2 / 3, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(v[3, :2], torch.tensor([0.5, 0.0], dtype=torch.float64))
    assert torch.isnan(v[3, 2:]).all()
    assert forest.divergence_depth.tolist() == [2, 2, 1, 0]
    # Branch tokens of row 0: t=0 (f leaves), t=1 (e leaves), t=2 (d leaves).
    assert sorted(forest.branch_pos[forest.branch_row == 0].tolist()) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# Invariances


def _random_tree_batch(seed: int = 0, groups: int = 6, size: int = 5, width: int = 20, vocab: int = 3):
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for g in range(groups):
        base = torch.randint(1, vocab + 1, (width,), generator=gen).tolist()
        for _ in range(size):
            n = int(torch.randint(1, width + 1, (1,), generator=gen))
            keep = int(torch.randint(0, n + 1, (1,), generator=gen))
            tail = torch.randint(1, vocab + 1, (n - keep,), generator=gen).tolist()
            rows.append((f"g{g}", base[:keep] + tail, float(torch.randint(0, 2, (1,), generator=gen))))
    return batch_from_rows(rows, width=width)


def test_invariant_to_row_order():
    rewards, mask, index, responses = _random_tree_batch()
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    perm = torch.randperm(len(index), generator=torch.Generator().manual_seed(1))
    adv_p, _ = compute_tempo_advantage(rewards[perm], mask[perm], index[perm.numpy()], responses[perm])
    torch.testing.assert_close(adv_p, adv[perm], rtol=0, atol=1e-6)


def test_invariant_to_pad_id_and_content_beyond_valid_length():
    rewards, mask, index, responses = _random_tree_batch(seed=3)
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    beyond = mask == 0
    for fill in (0, 7, 151_643):
        other = responses.masked_fill(beyond, fill)
        torch.testing.assert_close(compute_tempo_advantage(rewards, mask, index, other)[0], adv, rtol=0, atol=0)
    noise = torch.randint(1, 4, responses.shape, generator=torch.Generator().manual_seed(5))
    other = torch.where(beyond, noise, responses)
    torch.testing.assert_close(compute_tempo_advantage(rewards, mask, index, other)[0], adv, rtol=0, atol=0)


def test_identical_responses_give_grpo():
    rows = [("p", [5, 6, 7], s) for s in (1.0, 0.0, 1.0, 1.0)]
    rewards, mask, index, responses = batch_from_rows(rows)
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    grpo, _ = compute_tempo_advantage(rewards, mask, index, responses, td_coef=0.0)
    torch.testing.assert_close(adv, grpo, rtol=0, atol=0)


def test_td_telescopes_along_each_response():
    """Sum of TD along a response = V(y_i) - V(empty); checked through the advantage itself."""
    rewards, mask, index, responses = _random_tree_batch(seed=11, size=7)
    lam1, _ = compute_tempo_advantage(rewards, mask, index, responses, norm_adv_by_std_in_grpo=False)
    lam0, _ = compute_tempo_advantage(rewards, mask, index, responses, norm_adv_by_std_in_grpo=False, td_coef=0.0)
    td_sum = (lam1 - lam0).double().sum(-1)
    scores = rewards.double().sum(-1)
    n = mask.sum(-1)
    for i in range(len(index)):
        same = [j for j in range(len(index)) if index[j] == index[i]]
        full = [j for j in same if n[j] >= n[i] and torch.equal(responses[j, : n[i]], responses[i, : n[i]])]
        expected = scores[full].mean() - scores[same].mean()
        assert abs(td_sum[i] - expected) < 1e-5


# ---------------------------------------------------------------------------------------------
# Reductions to verl's own GRPO


def _verl_grpo(rewards, mask, index, norm=True):
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    return core_algos.get_adv_estimator_fn("grpo")(rewards, mask, index, norm_adv_by_std_in_grpo=norm)[0]


@pytest.mark.parametrize(("norm", "td_coef"), [(True, 1.0), (False, 1.0), (True, 0.5)])
def test_no_shared_first_token_is_verl_grpo_after_the_root(norm, td_coef):
    """Every response leaves the root alone, so V(y_i[:1]) = r_i and the only TD term is r_i - mu at t = 0.

    docs/estimator.md, "Consequences": the root is a branch point (the worked example's response "f"
    has TD -0.5 at t0), so on every later token TEMPO is verl's GRPO and on the first (1 + td_coef) times it.
    """
    gen = torch.Generator().manual_seed(0)
    bs, width = 24, 16
    index = np.array([f"q{i % 5}" for i in range(bs)], dtype=object)  # interleaved groups
    index[-1] = "alone"  # and a singleton, whose advantage is its score
    responses = torch.randint(0, 50, (bs, width), generator=gen)
    responses[:, 0] = torch.arange(bs) + 100  # every row starts with its own token
    lengths = torch.randint(1, width + 1, (bs,), generator=gen)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    rewards = torch.zeros(bs, width)
    rewards[torch.arange(bs), lengths - 1] = torch.randint(0, 2, (bs,), generator=gen).float()
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses, norm_adv_by_std_in_grpo=norm, td_coef=td_coef)
    expected = _verl_grpo(rewards, mask, index, norm).clone()
    expected[:-1, 0] *= 1 + td_coef
    torch.testing.assert_close(adv, expected, rtol=1e-6, atol=1e-6)


@given(batch=tempo_batches(max_group_size=9), norm=st.booleans(), near=st.booleans())
def test_td_coef_zero_is_verl_grpo_bit_for_bit(batch, norm, near):
    """td_coef = 0 gives verl's registry ``grpo`` output exactly (float32 rewards, as verl holds them)."""
    rewards, response_mask, attention, index, responses = batch
    if near:  # scores that nearly agree: sd far below epsilon, where rounding of mu is the whole result
        rewards = rewards * 1e-7 + 0.3 * attention
    adv, _ = compute_tempo_advantage(
        rewards,
        response_mask,
        index,
        responses,
        response_attention_mask=attention,
        td_coef=0.0,
        norm_adv_by_std_in_grpo=norm,
    )
    assert torch.equal(adv, _verl_grpo(rewards, response_mask, index, norm))


def test_the_tree_matters_on_a_test_batch():
    rewards, mask, index, responses = _random_tree_batch(seed=7)
    grpo, _ = compute_tempo_advantage(rewards, mask, index, responses, td_coef=0.0)
    with_td, _ = compute_tempo_advantage(rewards, mask, index, responses)
    assert not torch.allclose(with_td, grpo)


def test_singleton_group_is_its_score():
    rewards, mask, index, responses = batch_from_rows([("solo", [1, 2, 3], 0.75)])
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    torch.testing.assert_close(adv, torch.full((1, 3), 0.75 / (1 + 1e-6)))


# ---------------------------------------------------------------------------------------------
# Bad input


def _good():
    return _random_tree_batch(seed=2, groups=2, size=3, width=6)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r, m, i, y: (r, m[:, :-1], i, y), "response_mask: expected shape"),
        (lambda r, m, i, y: (r, m, i, y[:-1]), "responses: expected shape"),
        (lambda r, m, i, y: (r, m, i[:-1], y), r"index: expected one uid per row"),
        (lambda r, m, i, y: (r, m, None, y), "index: the prompt id of every row"),
        (lambda r, m, i, y: (r, m, i, y.float()), "responses: expected integer token ids"),
        (lambda r, m, i, y: (r, m, i, None), "responses: TEMPO needs the response token ids"),
        (
            lambda r, m, i, y: (
                r.index_put((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"))),
                m,
                i,
                y,
            ),
            "NaN or infinite",
        ),
        (
            lambda r, m, i, y: (
                r.index_put((torch.tensor([1]), torch.tensor([0])), torch.tensor(float("inf"))),
                m,
                i,
                y,
            ),
            "NaN or infinite",
        ),
        (lambda r, m, i, y: (r, m * 2, i, y), "response_mask: expected a 0/1 mask"),
        (lambda r, m, i, y: (r, m.float() * 0.5, i, y), "response_mask: expected a 0/1 mask"),
        (lambda r, m, i, y: (r[:0], m[:0], i[:0], y[:0]), "the batch is empty"),
        (lambda r, m, i, y: (r.long(), m, i, y), "token_level_rewards: expected a float tensor"),
        (lambda r, m, i, y: (r[0], m, i, y), r"token_level_rewards: expected a \(bs, response_length\)"),
    ],
)
def test_bad_input_is_named(mutate, match):
    with pytest.raises(ValueError, match=match):
        compute_tempo_advantage(*mutate(*_good()))


def test_mask_with_holes_needs_attention_mask():
    rewards, mask, index, responses = _good()
    holed = mask.clone()
    holed[1, 1] = 0
    with pytest.raises(ValueError, match=r"response_mask: expected a right-padded 0/1 mask.*response_attention_mask"):
        compute_tempo_advantage(rewards, holed, index, responses)
    adv, _ = compute_tempo_advantage(rewards, holed, index, responses, response_attention_mask=mask)
    assert adv[1, 1] == 0 and adv[1, 2] != 0


def test_bad_lengths_and_attention_mask():
    rewards, mask, index, responses = _good()
    width = responses.shape[1]
    with pytest.raises(ValueError, match=rf"response_lengths: every valid length must lie in \[0, {width}\]"):
        compute_tempo_advantage(rewards, mask, index, responses, response_lengths=mask.sum(-1) + width)
    with pytest.raises(ValueError, match="response_attention_mask: expected shape"):
        compute_tempo_advantage(rewards, mask, index, responses, response_attention_mask=mask[:, 1:])
    left_padded = mask.flip(-1)
    with pytest.raises(ValueError, match=r"response_attention_mask: expected a (right-padded )?0/1 mask"):
        compute_tempo_advantage(rewards, mask, index, responses, response_attention_mask=left_padded)
    for bad in (mask * 2, mask.float() * 0.5, mask - 1):
        with pytest.raises(ValueError, match=r"response_attention_mask: expected a (right-padded )?0/1 mask"):
            compute_tempo_advantage(rewards, mask, index, responses, response_attention_mask=bad)
    with pytest.raises(ValueError, match="td_coef: expected a finite number"):
        compute_tempo_advantage(rewards, mask, index, responses, td_coef=float("nan"))


def test_lengths_instead_of_a_mask_and_bool_masks_agree():
    rewards, mask, index, responses = _good()
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    by_len, _ = compute_tempo_advantage(rewards, mask.bool(), index, responses, response_lengths=mask.sum(-1))
    by_float, _ = compute_tempo_advantage(rewards, mask.float(), index, responses, response_attention_mask=mask.bool())
    torch.testing.assert_close(by_len, adv, rtol=0, atol=0)
    torch.testing.assert_close(by_float, adv, rtol=0, atol=0)


def test_integer_uids_and_tensor_index():
    rewards, mask, index, responses = _good()
    as_int = np.array([int(u[1:]) for u in index])
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses)
    torch.testing.assert_close(compute_tempo_advantage(rewards, mask, as_int, responses)[0], adv)
    torch.testing.assert_close(compute_tempo_advantage(rewards, mask, torch.from_numpy(as_int), responses)[0], adv)


def test_nan_rewards_are_an_error_naming_the_rows_and_the_fix():
    """NaN or infinite scores stop the run (docs/estimator.md says why): the rows and the fix are named."""
    rewards = torch.zeros(4, 3)
    rewards[1, 2], rewards[3, 0] = float("nan"), float("inf")
    mask = torch.ones(4, 3)
    with pytest.raises(ValueError, match=r"in 2 response\(s\) \(rows 1, 3\).*return a finite number"):
        compute_tempo_advantage(rewards, mask, ["a", "a", "b", "b"], torch.zeros(4, 3, dtype=torch.long))
