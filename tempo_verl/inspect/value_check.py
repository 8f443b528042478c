"""Is V right? The tree's prefix values against fresh continuations, beside GRPO's implicit value.

For a seeded sample of a tree's branch nodes, every child prefix ``s_{t+1}`` (and the node's own
prefix ``s_t``) is continued ``M`` times from the same model at temperature 1 and graded: the success
rate ``p_hat`` estimates the prefix's true value (the probability that a response through it is right).
Compared with it:

- TEMPO's ``V(s_{t+1})``: the mean outcome of the tree's responses through the child, and its TD term
  ``V(s_{t+1}) - V(s_t)`` against ``p_hat(s_{t+1}) - p_hat(s_t)``;
- GRPO's implicit value: the outcome ``r_i`` of one response through the child (the first row), and
  its credit at the branch token ``r_i - mean(group)`` (GRPO's baseline is the group mean).

Children that are complete responses (ended, or at the token budget) have a known value and are left
out. Figures: Pearson correlation, mean absolute error, and TD-sign agreement (over pairs whose
continuation TD is non-zero: the share where the estimator's sign is the same), each with a 95 %
percentile bootstrap interval over pairs. ``p_hat`` is itself noisy (binomial, ``M`` draws): its mean
standard error is reported beside the errors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tempo_verl.demo.stats import bootstrap_interval
from tempo_verl.inspect.figures import BranchNode, Child
from tempo_verl.inspect.sampling import sampling_params
from tempo_verl.rollout.loop import session_seed

__all__ = ["agreement", "continuation_values", "live_children", "sample_nodes", "value_check"]


def live_children(node: BranchNode, eos: int, max_new_tokens: int) -> list[Child]:
    """The children whose prefix can still be continued (not ended, not at eos, not at the budget)."""
    if node.depth + 1 >= max_new_tokens:
        return []
    return [ch for ch in node.children if ch.token is not None and ch.token != eos]


def sample_nodes(nodes: Sequence[BranchNode], count: int, seed: int, eos: int, max_new_tokens: int) -> list[BranchNode]:
    """Up to ``count`` nodes with a live child, a seeded uniform draw, in their original order."""
    usable = [i for i, node in enumerate(nodes) if live_children(node, eos, max_new_tokens)]
    chosen = sorted(random.Random(f"tempo-verl inspect nodes/{seed}").sample(usable, min(count, len(usable))))
    return [nodes[i] for i in chosen]


def continuation_values(
    server: Any,
    prompt_ids: Sequence[Sequence[int]],
    prefixes: Sequence[tuple[int, Sequence[int]]],
    m: int,
    max_new_tokens: int,
    seed: int,
    score: Callable[[int, list[int]], float],
    loop: asyncio.AbstractEventLoop,
    batch: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Success rate of ``m`` continuations of each prefix.

    Args:
        server: verl's ``generate`` contract (a :class:`~tempo_verl.rollout.backend.TransformersServer`).
        prompt_ids: per group, its prompt ids; prefixes: ``(group, response prefix ids)``.
        max_new_tokens: the response budget: a continuation gets what the prefix leaves of it.
        score: ``score(group, full response ids)`` -> 0..1.
        batch: requests decoded together (memory: the KV cache of ``batch`` sequences).
        on_batch: called with the number of requests of each finished batch.

    Returns:
        ``(len(prefixes),)`` float64 mean score of each prefix's continuations.
    """
    requests = [(k, j) for k in range(len(prefixes)) for j in range(m)]
    requests.sort(key=lambda kj: len(prefixes[kj[0]][1]))  # similar lengths batch with less padding
    totals = np.zeros(len(prefixes), dtype=np.float64)

    async def one(k: int, j: int) -> tuple[int, float]:
        group, prefix = prefixes[k]
        budget = max_new_tokens - len(prefix)
        if budget <= 0:
            return k, score(group, list(prefix))
        params = sampling_params(session_seed(seed, f"mc/{k}", j), max_tokens=budget)  # the seed of "seed/mc/k/j"
        out = await server.generate(
            f"mc-{k}-{j}", prompt_ids=list(prompt_ids[group]) + list(prefix), sampling_params=params
        )
        return k, score(group, list(prefix) + list(out.token_ids))

    async def run(chunk: list[tuple[int, int]]) -> list[tuple[int, float]]:
        return await asyncio.gather(*(one(k, j) for k, j in chunk))

    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        for k, s in loop.run_until_complete(run(chunk)):
            totals[k] += s
        if on_batch is not None:
            on_batch(len(chunk))
    return totals / max(1, m)


def agreement(
    estimate: np.ndarray, truth: np.ndarray, td_estimate: np.ndarray, td_truth: np.ndarray, resamples: int, seed: int
) -> dict[str, Any]:
    """Correlation, MAE and TD-sign agreement of an estimator against the continuation estimate, with intervals.

    Args:
        estimate, truth: ``(k,)`` values of the child prefixes; td_estimate, td_truth: ``(k,)`` their TD terms.

    Returns:
        ``{"pairs", "correlation", "mae", "td_sign_agreement", "decided_pairs"}``, each figure
        ``{"value", "low", "high"}`` (value None where undefined: constant values, no decided pair).
    """
    k = len(estimate)

    def corr(idx: np.ndarray) -> np.ndarray:
        x, y = estimate[idx], truth[idx]
        xc, yc = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
        den = np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (xc * yc).sum(-1) / np.where(den > 0, den, 1), np.nan)

    decided = td_truth != 0
    same = (np.sign(td_estimate) == np.sign(td_truth)).astype(np.float64)

    def sign(idx: np.ndarray) -> np.ndarray:
        d = decided[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (same[idx] * d).sum(-1) / d.sum(-1)

    def figure(stat: Callable[[np.ndarray], np.ndarray]) -> dict[str, float | None]:
        if k == 0:
            return {"value": None, "low": None, "high": None}
        value = float(stat(np.arange(k)[None, :])[0])
        low, high = bootstrap_interval(stat, k, resamples, seed=seed)
        return {key: (None if np.isnan(v) else v) for key, v in (("value", value), ("low", low), ("high", high))}

    return {
        "pairs": k,
        "correlation": figure(corr),
        "mae": figure(lambda idx: np.abs(estimate[idx] - truth[idx]).mean(-1)),
        "td_sign_agreement": figure(sign) if decided.any() else {"value": None, "low": None, "high": None},
        "decided_pairs": int(decided.sum()),
    }


def value_check(
    server: Any,
    prompt_ids: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    scores: Sequence[float],
    n: int,
    nodes: Sequence[BranchNode],
    eos: int,
    m: int,
    max_new_tokens: int,
    seed: int,
    score: Callable[[int, list[int]], float],
    loop: asyncio.AbstractEventLoop,
    resamples: int = 10_000,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The check on the given (already sampled) nodes; ``responses[r]`` are row ``r``'s valid ids.

    Returns:
        ``inspect.json``'s ``value_check``: counts, ``tempo`` and ``grpo`` agreement figures, the
        continuation estimate's mean standard error, and one row per compared child.
    """
    ids = [list(r) for r in responses]
    live = [live_children(node, eos, max_new_tokens) for node in nodes]
    prefixes: list[tuple[int, list[int]]] = []
    for node, children in zip(nodes, live, strict=True):
        prefixes.append((node.group, ids[node.prefix_row][: node.depth]))
        prefixes.extend((node.group, ids[ch.rows[0]][: node.depth + 1]) for ch in children)
    p_hat = continuation_values(server, prompt_ids, prefixes, m, max_new_tokens, seed, score, loop, on_batch=on_batch)
    rows, at = [], 0
    for node, children in zip(nodes, live, strict=True):
        p_parent = p_hat[at]
        group_mean = float(np.mean(scores[node.group * n : (node.group + 1) * n]))
        for i, ch in enumerate(children):
            first = ch.rows[0]
            rows.append(
                {
                    "group": node.group,
                    "depth": node.depth,
                    "through_parent": len(node.rows),
                    "through_child": len(ch.rows),
                    "token": ch.token,
                    "v_parent": node.value,
                    "v_child": ch.value,
                    "grpo_value": float(scores[first]),
                    "grpo_credit": float(scores[first]) - group_mean,
                    "p_parent": float(p_parent),
                    "p_child": float(p_hat[at + 1 + i]),
                }
            )
        at += 1 + len(children)
    col = {key: np.array([r[key] for r in rows], dtype=np.float64) for key in rows[0]} if rows else {}
    if rows:
        td_truth = col["p_child"] - col["p_parent"]
        tempo = agreement(col["v_child"], col["p_child"], col["v_child"] - col["v_parent"], td_truth, resamples, seed)
        grpo = agreement(col["grpo_value"], col["p_child"], col["grpo_credit"], td_truth, resamples, seed)
        se = float(np.mean(np.sqrt(p_hat * (1 - p_hat) / max(1, m))))
    else:
        empty = agreement(*(np.zeros(0),) * 4, resamples, seed)
        tempo, grpo, se = empty, empty, None
    return {
        "nodes": len(nodes),
        "children": len(rows),
        "prefixes_continued": len(prefixes),
        "continuations": len(prefixes) * m,
        "m": m,
        "continuation_se_mean": se,
        "tempo": tempo,
        "grpo": grpo,
        "pairs": rows,
    }
