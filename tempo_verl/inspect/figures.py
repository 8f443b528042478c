"""What one mode's groups show: how responses part, where the trees branch, where TEMPO's credit differs.

Read per mode (independent or tree), from the graded :class:`~tempo_verl.inspect.sampling.Groups`:

- departure depth: how many leading tokens a response shares with its nearest sibling before it goes
  its own way (the prefix forest's ``divergence_depth``);
- branch nodes: the prefixes where the group's responses part (two or more next tokens, or one ends
  there), each with the responses through it, its value ``V`` (their mean score) and its children;
- branch tokens: the first token of each child of a branch node, decoded and counted;
- credit: advantages from verl's registry, ``tempo`` and ``grpo``, and where they differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from verl.trainer.config import AlgoConfig

from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.core.forest import PrefixForest
from tempo_verl.demo.loop import compute_advantages
from tempo_verl.inspect.sampling import Groups

__all__ = ["BranchNode", "Child", "algorithm_config", "branch_nodes", "mode_figures", "quartiles", "token_kind"]


@dataclass(frozen=True)
class Child:
    """A child of a branch node: the responses that continue its prefix with ``token`` (None: that end there)."""

    token: int | None
    rows: tuple[int, ...]
    value: float  # V(s_{t+1}): mean score of ``rows``


@dataclass(frozen=True)
class BranchNode:
    """A prefix ``s_t`` (``depth`` = t response tokens) of a group where its responses part.

    Attributes:
        group: the prompt's index; rows: the responses through ``s_t``; value: ``V(s_t)``, their mean score;
        children: two or more, ordered by their first row.
    """

    group: int
    depth: int
    rows: tuple[int, ...]
    value: float
    children: tuple[Child, ...]

    @property
    def prefix_row(self) -> int:
        """A row whose first ``depth`` tokens are the node's prefix."""
        return self.rows[0]


def algorithm_config(td_coef: float = 1.0) -> DictConfig:
    """verl's ``algorithm`` section (``AlgoConfig`` defaults) with ``tempo.td_coef``, as the trainer passes it."""
    node = OmegaConf.to_container(OmegaConf.structured(AlgoConfig()))
    node.update(adv_estimator="tempo", norm_adv_by_std_in_grpo=True)
    node["tempo"] = {"td_coef": td_coef}
    return OmegaConf.create(node)


def branch_nodes(responses: torch.Tensor, lengths: torch.Tensor, scores: torch.Tensor, n: int) -> list[BranchNode]:
    """Every branch node of every group (rows ``g*n .. g*n+n-1`` form group ``g``), by group then depth.

    A node is a prefix through which two or more responses pass and after which they do not all go on
    with the same token (one may end there). Walks each group's trie one depth at a time.
    """
    ids = responses.tolist()
    lens = lengths.tolist()
    score = scores.double().tolist()
    nodes: list[BranchNode] = []
    for g in range(len(ids) // n):
        frontier = [tuple(range(g * n, (g + 1) * n))]  # row sets sharing a prefix of length `depth`
        depth = 0
        while frontier:
            deeper = []
            for rows in frontier:
                split: dict[int | None, list[int]] = {}
                for r in rows:
                    split.setdefault(ids[r][depth] if lens[r] > depth else None, []).append(r)
                if len(split) > 1:
                    children = tuple(
                        Child(tok, tuple(rs), float(np.mean([score[r] for r in rs])))
                        for tok, rs in sorted(split.items(), key=lambda kv: kv[1][0])
                    )
                    nodes.append(BranchNode(g, depth, rows, float(np.mean([score[r] for r in rows])), children))
                deeper.extend(tuple(rs) for tok, rs in split.items() if tok is not None and len(rs) > 1)
            frontier = deeper
            depth += 1
    return nodes


def token_kind(text: str) -> str:
    """``number`` (holds a digit), ``word`` (holds a letter), else ``format`` (spaces, punctuation, markup)."""
    if any(c.isdigit() for c in text):
        return "number"
    if any(c.isalpha() for c in text):
        return "word"
    return "format"


def quartiles(values: Sequence[float]) -> dict[str, float | None]:
    """``{"median", "q25", "q75", "mean"}`` (None when empty)."""
    if len(values) == 0:
        return {"median": None, "q25": None, "q75": None, "mean": None}
    q25, median, q75 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "mean": float(np.mean(values))}


def _credit(groups: Groups, algorithm: DictConfig) -> tuple[dict[str, float], PrefixForest]:
    """verl's ``tempo`` and ``grpo`` advantages of the groups, and where they differ."""
    bs, width = groups.responses.shape
    mask = (torch.arange(width)[None, :] < groups.lengths[:, None]).float()  # (bs, L)
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(bs), (groups.lengths - 1).clamp(min=0)] = groups.scores
    args = (rewards, mask, groups.uids, groups.responses, groups.lengths, algorithm)
    tempo, _ = compute_advantages("tempo", *args)
    grpo, _ = compute_advantages("grpo", *args)
    _, _, forest = tempo_advantage_and_forest(
        rewards, mask, groups.uids, groups.responses, response_lengths=groups.lengths
    )
    on = mask.bool()
    differ = on & ((tempo - grpo).abs() > 1e-6)
    tempo_mass = float(tempo[on].abs().sum())
    return {
        "tokens": int(on.sum()),
        "differ_tokens": int(differ.sum()),
        "differ_token_share": float(differ.sum()) / max(1, int(on.sum())),
        "differ_mass_share": float((tempo - grpo)[on].abs().sum()) / tempo_mass if tempo_mass > 0 else 0.0,
        "tempo_abs_mean": tempo_mass / max(1, int(on.sum())),
        "grpo_abs_mean": float(grpo[on].abs().sum()) / max(1, int(on.sum())),
    }, forest


def mode_figures(
    groups: Groups, n: int, max_new_tokens: int, tokenizer: Any, algorithm: DictConfig
) -> tuple[dict[str, Any], list[BranchNode], PrefixForest]:
    """Every figure of one mode (the ``modes.<mode>`` entry of ``inspect.json``), its branch nodes and forest."""
    credit, forest = _credit(groups, algorithm)
    nodes = branch_nodes(groups.responses, groups.lengths, groups.scores, n)
    prompts = len(groups.prompt_ids)
    scores = groups.scores.double()
    per_group = scores.view(prompts, n)
    mixed = int(((per_group.max(1).values - per_group.min(1).values) > 0).sum())
    tokens = [ch.token for node in nodes for ch in node.children if ch.token is not None]
    decoded = Counter(tokenizer.decode([t]) for t in tokens)
    kinds = Counter(token_kind(text) for text in (tokenizer.decode([t]) for t in tokens))
    lengths = groups.lengths.tolist()
    figures = {
        "prompts": prompts,
        "responses": len(lengths),
        "accuracy": float(scores.mean()),
        "groups_with_mixed_outcomes": mixed,
        "generated_tokens": groups.generated_tokens,
        "response_tokens": int(sum(lengths)),
        "response_length": {
            **quartiles(lengths),
            "max": max(lengths),
            "at_budget": sum(x >= max_new_tokens for x in lengths),
        },
        "wall_s": dict(groups.phases),
        "departure_depth": {**quartiles(forest.divergence_depth.tolist()), "values": forest.divergence_depth.tolist()},
        "branch_nodes": {
            "count": len(nodes),
            "per_group": len(nodes) / max(1, prompts),
            "depth": quartiles([node.depth for node in nodes]),
            "responses_through": quartiles([len(node.rows) for node in nodes]),
            "children": quartiles([len(node.children) for node in nodes]),
        },
        "branch_tokens": {
            "count": len(tokens),
            "kinds": {k: kinds.get(k, 0) for k in ("number", "word", "format")},
            "most_frequent": [[text, count] for text, count in decoded.most_common(12)],
        },
        "credit": credit,
    }
    return figures, nodes, forest
