"""A plain, per-token reference of TEMPO written straight from SPEC-tempo.md with a dictionary trie.

It is the oracle of the property tests and the "straightforward Python implementation" of the
benchmark: one Python dict per trie node, a loop over groups, rows and tokens. Slow on purpose.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch


def _trie_values(group: list[tuple[list[int], float]]) -> dict[tuple[int, ...], float]:
    """V(p) for every prefix p of the group's responses: the mean score of the responses through p."""
    total: dict[tuple[int, ...], float] = defaultdict(float)
    count: dict[tuple[int, ...], int] = defaultdict(int)
    for tokens, score in group:
        node: tuple[int, ...] = ()
        total[node] += score
        count[node] += 1
        for tok in tokens:
            node = (*node, tok)
            total[node] += score
            count[node] += 1
    return {p: total[p] / count[p] for p in total}


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

    ``lengths[i]`` is the valid length ``n_i`` of row ``i`` (the sum of its attention mask).
    """
    bs, L = token_level_rewards.shape
    scores = token_level_rewards.double().sum(-1).tolist()
    ids = responses.tolist()
    mask = response_mask.double().tolist()
    rows_of: dict = defaultdict(list)
    for i in range(bs):
        rows_of[index[i]].append(i)

    adv = [[0.0] * L for _ in range(bs)]
    for rows in rows_of.values():
        r = [scores[i] for i in rows]
        if len(rows) == 1:
            mu, sd = 0.0, 1.0
        else:
            mu = sum(r) / len(r)
            sd = math.sqrt(sum((x - mu) ** 2 for x in r) / (len(r) - 1))
        values = _trie_values([(ids[i][: lengths[i]], scores[i]) for i in rows])
        for i in rows:
            path = tuple(ids[i][: lengths[i]])
            for t in range(L):
                # Beyond the valid length there is no state: GRPO's value (times the mask) as in verl.
                td = values[path[: t + 1]] - values[path[:t]] if t < lengths[i] else 0.0
                a = (scores[i] - mu) + td_coef * td
                if norm_adv_by_std_in_grpo:
                    a /= sd + epsilon
                adv[i][t] = a * mask[i][t]
    return torch.tensor(adv, dtype=torch.float64).reshape(bs, L)
