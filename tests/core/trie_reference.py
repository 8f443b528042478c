"""A plain, per-token reference of TEMPO written straight from docs/estimator.md with a dictionary trie.

It is the oracle of the property tests and the "straightforward Python implementation" of the
benchmark: one Python dict per trie node, a loop over groups, rows and tokens. Slow on purpose.
"""

from __future__ import annotations

from collections import defaultdict

import torch


class _Node:
    """One trie node: the responses through this prefix (their score sum and count) and its children."""

    __slots__ = ("children", "count", "total")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.total = 0.0
        self.count = 0

    @property
    def value(self) -> float:
        return self.total / self.count


def _build_trie(group: list[tuple[list[int], float]]) -> _Node:
    """The prefix tree of one group; every node holds V(p), the mean score of the responses through p."""
    root = _Node()
    for tokens, score in group:
        node = root
        node.total += score
        node.count += 1
        for tok in tokens:
            node = node.children.setdefault(tok, _Node())
            node.total += score
            node.count += 1
    return root


def reference_tempo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index,
    responses: torch.Tensor,
    lengths: list[int],
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    td_coef: float = 1.0,
) -> torch.Tensor:
    """TEMPO advantages ``(bs, L)`` float64, computed token by token.

    ``lengths[i]`` is the valid length ``n_i`` of row ``i`` (the sum of its attention mask). The GRPO
    part ``(r_i - mu) / (sd + eps)`` is computed as verl's ``grpo`` computes it (``torch.mean`` and
    ``torch.std`` of the group's scores, in their dtype): the spec says ``td_coef = 0`` is exactly verl's
    GRPO, and in a group whose scores nearly agree (``sd`` far below ``eps``) the rounding of ``mu``
    is what the result is made of. The TD term is added in float64.
    """
    bs, L = token_level_rewards.shape
    summed = token_level_rewards.sum(-1)  # summed in the input dtype, as verl does
    scores = summed.double().tolist()
    ids = responses.tolist()
    mask = response_mask.double().tolist()
    rows_of: dict = defaultdict(list)
    for i in range(bs):
        rows_of[index[i]].append(i)

    adv = [[0.0] * L for _ in range(bs)]
    for rows in rows_of.values():
        group_scores = torch.stack([summed[i] for i in rows])
        if len(rows) == 1:
            mu, sd = torch.tensor(0.0), torch.tensor(1.0)
        else:
            mu, sd = group_scores.mean(), group_scores.std()
        root = _build_trie([(ids[i][: lengths[i]], scores[i]) for i in rows])
        for i in rows:
            node = root
            for t in range(L):
                # Beyond the valid length there is no state: GRPO's value (times the mask) as in verl.
                td = 0.0
                if t < lengths[i]:
                    child = node.children[ids[i][t]]
                    td = child.value - node.value
                    node = child
                if norm_adv_by_std_in_grpo:
                    a = float((summed[i] - mu) / (sd + epsilon)) + td_coef * td / float(sd + epsilon)
                else:
                    a = float(summed[i] - mu) + td_coef * td
                adv[i][t] = a * mask[i][t]
    return torch.tensor(adv, dtype=torch.float64).reshape(bs, L)


def reference_prefix_values(
    index, responses: torch.Tensor, lengths: list[int], scores: list[float]
) -> list[list[float]]:
    """``V(y_i[:t])`` for ``t = 0..n_i`` of every row, read off the dictionary trie of its group."""
    ids = responses.tolist()
    rows_of: dict = defaultdict(list)
    for i in range(len(ids)):
        rows_of[index[i]].append(i)
    values: list[list[float]] = [[] for _ in ids]
    for rows in rows_of.values():
        root = _build_trie([(ids[i][: lengths[i]], scores[i]) for i in rows])
        for i in rows:
            node = root
            values[i].append(node.value)
            for tok in ids[i][: lengths[i]]:
                node = node.children[tok]
                values[i].append(node.value)
    return values
