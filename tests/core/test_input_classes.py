"""Inputs a library user or verl may pass: token dtypes and values, uid kinds, mask dtypes, keyword strictness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batches import batch_from_rows
from trie_reference import reference_tempo_advantage

from tempo_verl.core import compute_tempo_advantage, tempo_advantage_and_forest, tree_metrics


def _tree_batch(seed: int = 0, groups: int = 4, size: int = 6, width: int = 14, vocab: int = 3):
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for g in range(groups):
        for _ in range(size):
            n = int(torch.randint(1, width + 1, (1,), generator=gen))
            toks = torch.randint(0, vocab, (n,), generator=gen).tolist()
            rows.append((f"g{g}", toks, float(torch.randint(0, 2, (1,), generator=gen))))
    return batch_from_rows(rows, width=width)


def _verl_grpo(rewards, mask, index, norm=True):
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    return core_algos.get_adv_estimator_fn("grpo")(rewards, mask, index, norm_adv_by_std_in_grpo=norm)[0]


@pytest.mark.parametrize(
    "dtype", [torch.int8, torch.int16, torch.int32, torch.uint8, torch.uint16, torch.uint32, torch.uint64]
)
def test_every_integer_token_dtype(dtype):
    rewards, mask, index, responses = _tree_batch()
    expected, _ = compute_tempo_advantage(rewards, mask, index, responses)
    got, _ = compute_tempo_advantage(rewards, mask, index, responses.to(dtype))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("ids", [(-1, -2, 0), (-2, -1, 7), (2**63 - 1, -(2**63), -1)])
def test_token_ids_are_arbitrary_integers(ids):
    """Negative and extreme ids (-1, -2 were internal markers once) are tokens like any other."""
    rewards, mask, index, responses = _tree_batch(seed=1)
    table = torch.tensor(ids)
    mapped = table[responses]
    expected = reference_tempo_advantage(rewards, mask, index, mapped, mask.sum(-1).tolist())
    got, _ = compute_tempo_advantage(rewards, mask, index, mapped)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got, compute_tempo_advantage(rewards, mask, index, responses)[0])


@pytest.mark.parametrize(
    "uids",
    [
        [None] * 24,
        ["a", 1] * 12,
        [1, 1.0, True, "1"] * 6,
        [None, "x", 3, (1, 2)] * 6,
        [np.nan] * 24,  # the same NaN object: one group, as in a dict (and verl)
    ],
)
def test_uids_group_as_verl_grpo_groups_them(uids):
    rewards, mask, _, responses = _tree_batch()
    index = np.empty(len(uids), dtype=object)
    index[:] = uids
    adv, _ = compute_tempo_advantage(rewards, mask, index, responses, td_coef=0.0)
    assert torch.equal(adv, _verl_grpo(rewards, mask, index))
    # The same grouping under plain labels: one label per distinct dict key.
    keys: dict = {}
    labels = np.array([f"k{keys.setdefault(u, len(keys))}" for u in uids], dtype=object)
    assert torch.equal(compute_tempo_advantage(rewards, mask, index, responses)[0],
                       compute_tempo_advantage(rewards, mask, labels, responses)[0])  # fmt: skip


def test_nan_uids_in_a_float_array_are_named():
    rewards, mask, _, responses = _tree_batch()
    index = np.arange(len(mask), dtype=np.float64) % 4
    index[3] = np.nan
    with pytest.raises(ValueError, match="index: found NaN uids in a float array"):
        compute_tempo_advantage(rewards, mask, index, responses)
    unhashable = np.array(["a"] * len(mask), dtype=object)
    unhashable[2] = [0]
    with pytest.raises(ValueError, match="index: every uid must be hashable"):
        compute_tempo_advantage(rewards, mask, unhashable, responses)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.float16, torch.bfloat16, torch.float64])
def test_mask_dtypes_give_the_same_advantages(dtype):
    rewards, mask, index, responses = _tree_batch(seed=2)
    expected, _ = compute_tempo_advantage(rewards, mask, index, responses)
    assert torch.equal(compute_tempo_advantage(rewards, mask.to(dtype), index, responses)[0], expected)
    assert torch.equal(
        compute_tempo_advantage(rewards, mask.float(), index, responses, response_attention_mask=mask.to(dtype))[0],
        expected,
    )


@pytest.mark.parametrize("bad", [0.5, 1e-30, 1 - 2**-24, float("nan"), -1.0, 1e-45])
def test_float_masks_must_be_exactly_0_or_1(bad):
    rewards, mask, index, responses = _tree_batch(seed=2)
    for name in ("response_mask", "response_attention_mask"):
        broken = mask.float()
        broken[5, 0] = bad
        kwargs = {"response_attention_mask": broken} if name == "response_attention_mask" else {}
        response_mask = mask.float() if kwargs else broken
        with pytest.raises(ValueError, match=rf"{name}: expected a (right-padded )?0/1 mask"):
            compute_tempo_advantage(rewards, response_mask, index, responses, **kwargs)


def test_long_float_masks_are_checked_exactly():
    """Past 2**24 / L the position sums leave float32's exact range: the check still holds."""
    width = 70_000
    lengths = torch.tensor([70_000, 69_999, 3, 0, 40_000])
    mask = (torch.arange(width)[None] < lengths[:, None]).float()
    rewards = torch.zeros(5, width)
    rewards[:, 0] = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    responses = torch.zeros(5, width, dtype=torch.long)
    index = np.zeros(5, dtype=object)
    _, _, forest = tempo_advantage_and_forest(rewards, mask, index, responses)
    assert torch.equal(forest.lengths, lengths)
    holed = mask.clone()
    holed[0, 69_000] = 0
    with pytest.raises(ValueError, match="response_mask: expected a right-padded 0/1 mask"):
        compute_tempo_advantage(rewards, holed, index, responses)


def test_fp16_mask_with_more_than_65504_trained_tokens_keeps_its_branch_fraction():
    bs, width = 40, 2048  # 81920 trained tokens: an fp16 sum is inf
    gen = torch.Generator().manual_seed(0)
    responses = torch.randint(0, 3, (bs, width), generator=gen)
    mask = torch.ones(bs, width, dtype=torch.float16)
    rewards = torch.zeros(bs, width)
    rewards[:, -1] = torch.randint(0, 2, (bs,), generator=gen).float()
    index = np.array([i % 4 for i in range(bs)])
    _, _, forest = tempo_advantage_and_forest(rewards, mask, index, responses)
    frac = tree_metrics(forest, mask)["tempo/branch_token_frac"]
    assert frac == pytest.approx(forest.branch_row.numel() / (bs * width))
    assert frac > 0


def test_a_misspelt_keyword_is_a_type_error():
    rewards, mask, index, responses = _tree_batch()
    with pytest.raises(TypeError, match="td_coeff"):
        compute_tempo_advantage(rewards, mask, index, responses, td_coeff=0.0)


def test_negative_zero_in_a_float_mask_counts_as_zero():
    rewards, mask, index, responses = _tree_batch(seed=2)
    expected, _ = compute_tempo_advantage(rewards, mask, index, responses)
    signed = mask.float().where(mask.bool(), torch.tensor(-0.0))
    assert torch.signbit(signed).any()
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        got, _ = compute_tempo_advantage(rewards, signed.to(dtype), index, responses)
        assert torch.equal(got, expected)
        got, _ = compute_tempo_advantage(
            rewards, signed.to(dtype), index, responses, response_attention_mask=signed.to(dtype)
        )
        assert torch.equal(got, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [0.5, 1 - 2**-8, float("nan"), float("inf"), 2.0, -1.0, "tiny"])
def test_bad_float_values_are_found_in_every_chunk(dtype, bad):
    """Rows wide enough that each chunk of the check holds two rows: a bad value in the last chunk."""
    bs, width = 5, 1 << 19
    lengths = torch.tensor([width, width - 1, 3, 0, 1000])
    mask = (torch.arange(width)[None] < lengths[:, None]).to(dtype)
    rewards = torch.zeros(bs, width)
    rewards[:, 0] = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    responses = torch.zeros(bs, width, dtype=torch.long)
    index = np.zeros(bs, dtype=object)
    _, _, forest = tempo_advantage_and_forest(rewards, mask, index, responses)
    assert torch.equal(forest.lengths, lengths)
    broken = mask.clone()
    broken[4, 7] = torch.finfo(dtype).tiny if bad == "tiny" else bad  # inside the valid part of the last row
    for name in ("response_mask", "response_attention_mask"):
        kwargs = {"response_attention_mask": broken} if name == "response_attention_mask" else {}
        response_mask = mask if kwargs else broken
        with pytest.raises(ValueError, match=rf"{name}: expected a 0/1 mask"):
            compute_tempo_advantage(rewards, response_mask, index, responses, **kwargs)
    with pytest.raises(ValueError, match="response_mask: expected a 0/1 mask"):
        compute_tempo_advantage(rewards, broken, index, responses, response_lengths=lengths)
    holed = mask.clone()
    holed[4, 500] = 0
    with pytest.raises(ValueError, match="response_attention_mask: expected a right-padded 0/1 mask"):
        compute_tempo_advantage(rewards, mask, index, responses, response_attention_mask=holed)


@pytest.mark.parametrize("dtype", [torch.long, torch.bool, torch.float32, torch.float16])
def test_empty_responses_have_length_zero(dtype):
    """Zero-width responses (L = 0): nothing to check or credit, an empty advantage."""
    bs = 3
    adv, _, forest = tempo_advantage_and_forest(
        torch.zeros(bs, 0), torch.zeros(bs, 0, dtype=dtype), np.zeros(bs), torch.zeros(bs, 0, dtype=torch.long)
    )
    assert adv.shape == (bs, 0)
    assert torch.equal(forest.lengths, torch.zeros(bs, dtype=torch.long))
