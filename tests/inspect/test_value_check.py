"""The V check against brute force on a toy model whose continuation probabilities are known exactly.

The toy policy is a bigram table: the next token's distribution depends only on the last token, so the
probability that a continuation of a prefix succeeds is a finite sum over every continuation within the
budget, enumerated here one sequence at a time.
"""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.inspect.figures import branch_nodes
from tempo_verl.inspect.value_check import agreement, continuation_values, live_children, sample_nodes, value_check
from tempo_verl.rollout.backend import TransformersServer

PAD, EOS, THREE, SEVEN, START = 0, 1, 2, 3, 4
NEVER = float("-inf")
#: Logits of the next token given the last one (rows: last token; columns: pad, eos, "3", "7", start).
TABLE = torch.tensor(
    [
        [NEVER, 0.0, NEVER, NEVER, NEVER],  # after pad (never sampled)
        [NEVER, 0.0, NEVER, NEVER, NEVER],  # after eos (never continued)
        [NEVER, -1.0, 0.9, -0.4, NEVER],  # after "3": end, "3" again, or "7"
        [NEVER, -0.8, 0.5, 0.4, NEVER],  # after "7"
        [NEVER, NEVER, 0.0, 0.2, NEVER],  # after the prompt (its last token is START): "3" or "7"
    ],
    dtype=torch.float64,
)
BUDGET = 5


class Bigram(torch.nn.Module):
    """``logits[b, t] = TABLE[input_ids[b, t]]``: the last token alone decides the next (no cache needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(TABLE.float(), requires_grad=False)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids], past_key_values=None)


def success(ids: list[int]) -> float:
    """Right when the response says "7" at least twice (so a longer budget would raise every value)."""
    return float(list(ids).count(SEVEN) >= 2)


def exact_value(prefix: list[int], budget: int = BUDGET) -> float:
    """P(success) of a response that starts with ``prefix``: every continuation within the budget, enumerated."""
    probs = torch.softmax(TABLE, -1).numpy()
    left = budget - len(prefix)
    if left <= 0 or (prefix and prefix[-1] == EOS):
        return success(prefix)
    total = 0.0
    for length in range(1, left + 1):
        for seq in itertools.product([EOS, THREE, SEVEN], repeat=length):
            if EOS in seq[:-1] or (length < left and seq[-1] != EOS):
                continue  # ends at its first eos; only budget-long sequences may end without one
            p, last = 1.0, prefix[-1] if prefix else START
            for tok in seq:
                p, last = p * probs[last, tok], tok
            total += p * success(prefix + list(seq))
    return total


def toy_server() -> TransformersServer:
    return TransformersServer(Bigram(), EOS, PAD, BUDGET)


def test_the_enumeration_is_a_distribution() -> None:
    # With success always 1 the enumeration must sum to 1: every continuation counted once.
    probs = torch.softmax(TABLE, -1).numpy()
    total = 0.0
    for length in range(1, BUDGET + 1):
        for seq in itertools.product([EOS, THREE, SEVEN], repeat=length):
            if EOS in seq[:-1] or (length < BUDGET and seq[-1] != EOS):
                continue
            p, last = 1.0, START
            for tok in seq:
                p, last = p * probs[last, tok], tok
            total += p
    assert total == pytest.approx(1.0, abs=1e-9)


def test_continuation_estimates_match_the_exact_values() -> None:
    prefixes = [[], [THREE], [SEVEN], [THREE, SEVEN], [SEVEN, THREE, THREE]]
    m = 1000
    loop = asyncio.new_event_loop()
    try:
        p_hat = continuation_values(
            toy_server(), [[START]], [(0, p) for p in prefixes], m, BUDGET, 0, lambda g, ids: success(ids), loop, 1000
        )
    finally:
        loop.close()
    exact = np.array([exact_value(p) for p in prefixes])
    se = np.sqrt(exact * (1 - exact) / m)
    assert np.all(np.abs(p_hat - exact) <= 4.5 * se), (p_hat, exact)
    pooled = np.sqrt((se**2).sum()) / len(prefixes)  # s.e. of the mean deviation
    assert abs(np.mean(p_hat - exact)) <= 4 * pooled, (p_hat, exact)
    assert len(set(np.round(exact, 3))) == len(prefixes)  # the prefixes really differ in value
    # the test tells the budget apart: one token more or less moves the values far beyond the tolerance
    for budget in (BUDGET - 1, BUDGET + 1):
        other = np.array([exact_value(p, budget) for p in prefixes])
        assert abs(np.mean(other - exact)) > 6 * pooled


# A hand-made group of 6 responses (row: ids); its trie is written out in the test below.
RESPONSES = [
    [THREE, THREE, SEVEN, EOS],
    [THREE, THREE, THREE, EOS],
    [THREE, SEVEN, EOS],
    [SEVEN, SEVEN, SEVEN, SEVEN, SEVEN],
    [SEVEN, THREE, EOS],
    [THREE, THREE, SEVEN, SEVEN, EOS],
]


def _batch():
    lengths = torch.tensor([len(r) for r in RESPONSES])
    ids = torch.full((len(RESPONSES), BUDGET), PAD)
    for i, r in enumerate(RESPONSES):
        ids[i, : len(r)] = torch.tensor(r)
    scores = torch.tensor([success(r) for r in RESPONSES], dtype=torch.float32)
    return ids, lengths, scores


def test_branch_nodes_match_a_brute_force_trie_and_the_estimators_forest() -> None:
    ids, lengths, scores = _batch()
    nodes = branch_nodes(ids, lengths, scores, n=len(RESPONSES))
    # Brute force: every prefix of every response; a node where the rows through it continue in 2+ ways.
    expected = {}
    for r in RESPONSES:
        for t in range(len(r) + 1):
            through = [j for j, q in enumerate(RESPONSES) if q[:t] == r[:t] and len(q) >= t]
            nexts = {RESPONSES[j][t] if len(RESPONSES[j]) > t else None for j in through}
            if len(nexts) > 1:
                expected[tuple(r[:t])] = (through, float(np.mean([success(RESPONSES[j]) for j in through])))
    got = {tuple(RESPONSES[node.prefix_row][: node.depth]): (list(node.rows), node.value) for node in nodes}
    assert got.keys() == expected.keys()
    for key, (rows, value) in expected.items():
        assert got[key][0] == rows and got[key][1] == pytest.approx(value)
    # The estimator's forest: V(s_t) and V(s_{t+1}) at every branch token are the nodes' and children's values.
    mask = (torch.arange(BUDGET)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(RESPONSES)), lengths - 1] = scores
    _, _, forest = tempo_advantage_and_forest(rewards, mask, ["g"] * len(RESPONSES), ids, response_lengths=lengths)
    child_value = {(node.depth, r): ch.value for node in nodes for ch in node.children for r in ch.rows}
    node_value = {(node.depth, r): node.value for node in nodes for r in node.rows}
    entries = (forest.branch_row, forest.branch_pos, forest.value_before, forest.value_after)
    for row, t, before, after in zip(*(e.tolist() for e in entries), strict=True):
        assert node_value[(t, row)] == pytest.approx(before)
        assert child_value[(t, row)] == pytest.approx(after)


def test_value_check_on_the_toy_model_against_brute_force() -> None:
    ids, lengths, scores = _batch()
    nodes = branch_nodes(ids, lengths, scores, n=len(RESPONSES))
    chosen = sample_nodes(nodes, 10, seed=0, eos=EOS, max_new_tokens=BUDGET)
    assert len(chosen) == sum(1 for node in nodes if live_children(node, EOS, BUDGET))
    m = 400
    loop = asyncio.new_event_loop()
    try:
        report = value_check(
            toy_server(), [[START]], RESPONSES, scores.tolist(), len(RESPONSES), chosen, EOS, m, BUDGET, 0,
            lambda g, x: success(x), loop, resamples=2000,
        )  # fmt: skip
    finally:
        loop.close()
    pairs = report["pairs"]
    live = [(node, ch) for node in chosen for ch in live_children(node, EOS, BUDGET)]
    assert report["nodes"] == len(chosen) and report["children"] == len(live) == len(pairs)
    assert report["prefixes_continued"] == len(chosen) + len(live) and report["continuations"] == m * (
        len(chosen) + len(live)
    )
    group_mean = float(scores.mean())
    for pair, (node, ch) in zip(pairs, live, strict=True):
        child_prefix = RESPONSES[ch.rows[0]][: node.depth + 1]
        parent_prefix = RESPONSES[node.prefix_row][: node.depth]
        # the continuation estimates against the exact values (binomial error of m draws)
        for key, prefix in (("p_child", child_prefix), ("p_parent", parent_prefix)):
            exact = exact_value(prefix)
            assert abs(pair[key] - exact) <= 4.5 * np.sqrt(exact * (1 - exact) / m) + 1e-9, (key, prefix)
        # the tree's values against a brute-force mean over the responses through the prefix
        through = [success(r) for r in RESPONSES if r[: node.depth + 1] == child_prefix]
        assert pair["v_child"] == pytest.approx(np.mean(through))
        assert pair["grpo_value"] == success(RESPONSES[ch.rows[0]])
        assert pair["grpo_credit"] == pytest.approx(success(RESPONSES[ch.rows[0]]) - group_mean)
    # the summary figures against a plain recomputation from the pairs
    col = {k: np.array([p[k] for p in pairs]) for k in pairs[0]}
    td_truth = col["p_child"] - col["p_parent"]
    for name, value, td in (
        ("tempo", col["v_child"], col["v_child"] - col["v_parent"]),
        ("grpo", col["grpo_value"], col["grpo_credit"]),
    ):
        figures = report[name]
        assert figures["mae"]["value"] == pytest.approx(np.mean(np.abs(value - col["p_child"])))
        if np.std(value) > 0:
            assert figures["correlation"]["value"] == pytest.approx(np.corrcoef(value, col["p_child"])[0, 1])
        decided = td_truth != 0
        agree = [np.sign(a) == np.sign(b) for a, b, d in zip(td, td_truth, decided, strict=True) if d]
        assert figures["decided_pairs"] == len(agree)
        assert figures["td_sign_agreement"]["value"] == pytest.approx(np.mean(agree))
        assert figures["mae"]["low"] <= figures["mae"]["value"] <= figures["mae"]["high"]


def test_agreement_on_known_inputs() -> None:
    truth = np.array([0.1, 0.4, 0.5, 0.9, 0.2])
    td = np.array([0.1, -0.2, 0.0, 0.3, -0.1])
    same = agreement(truth, truth, td, td, resamples=500, seed=0)
    assert same["correlation"]["value"] == pytest.approx(1.0) and same["mae"]["value"] == 0.0
    assert same["td_sign_agreement"]["value"] == 1.0 and same["decided_pairs"] == 4
    flipped = agreement(1 - truth, truth, -td, td, resamples=500, seed=0)
    assert flipped["correlation"]["value"] == pytest.approx(-1.0)
    assert flipped["td_sign_agreement"]["value"] == 0.0
    constant = agreement(np.full(5, 0.5), truth, np.zeros(5), td, resamples=500, seed=0)
    assert constant["correlation"]["value"] is None  # undefined, not a number
    assert constant["td_sign_agreement"]["value"] == 0.0  # a zero TD never agrees with a non-zero one
