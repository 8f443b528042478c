"""The tree rollout's ``rollout_tree/*`` metrics of one step.

Each response of the loop carries its statistics in ``AgentLoopOutput.extra_fields[STATS_KEY]``,
which verl's v1 worker stores in TransferQueue with the sample. verl 0.9.1 does not aggregate
agent-loop fields into the step's metrics, so the plugin's wrapper of ``PPOTrainer._compute_metrics``
(:mod:`tempo_verl.plugin.tree`) calls :func:`read_step_metrics` in a ``tempo_tree`` run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tempo_verl.rollout import STATS_KEY

__all__ = ["read_step_metrics", "sample_uid", "tree_rollout_metrics"]


def sample_uid(key: str) -> str:
    """The prompt uid of a v1 sample key ``{uid}_{session_id}_{index}`` (a uid may hold ``_``), as verl splits it."""
    return key.rsplit("_", 2)[0]


def tree_rollout_metrics(stats: Sequence[dict[str, float] | None], uids: Sequence[str]) -> dict[str, float]:
    """Aggregate per-response statistics of one step.

    Args:
        stats: ``(bs,)`` each response's ``extra_fields[STATS_KEY]`` (None for a response of
            another loop or a validation rollout: skipped).
        uids: ``(bs,)`` each response's prompt id.

    Returns:
        ``rollout_tree/generated_tokens`` and ``response_tokens`` (sums), ``saved_token_frac``
        (1 - generated / response tokens), ``branch_depth/mean|max`` (over branches),
        ``branches_per_group``, ``fallback_frac`` (branches sampled independently),
        ``wait_s/mean|max``, and ``prefix_cache_hit_frac`` (cached / input tokens of the requests
        whose server reported ``num_cached_tokens``) when any did. Empty without any statistics.
    """
    rows = [(s, u) for s, u in zip(stats, uids, strict=True) if isinstance(s, dict) and "generated_tokens" in s]
    if not rows:
        return {}
    generated = sum(s["generated_tokens"] for s, _ in rows)
    total = sum(s["response_tokens"] for s, _ in rows)
    branches = [s for s, _ in rows if s["branch"]]
    per_group: dict[str, int] = defaultdict(int)
    for s, u in rows:
        per_group[u] += int(s["branch"] and not s["fallback"])
    depths = [s["depth"] for s in branches if not s["fallback"]]
    waits = [s["wait_s"] for s, _ in rows]
    out = {
        "rollout_tree/generated_tokens": float(generated),
        "rollout_tree/response_tokens": float(total),
        "rollout_tree/saved_token_frac": 1.0 - generated / total if total else 0.0,
        "rollout_tree/branch_depth/mean": sum(depths) / len(depths) if depths else 0.0,
        "rollout_tree/branch_depth/max": max(depths) if depths else 0.0,
        "rollout_tree/branches_per_group": sum(per_group.values()) / len(per_group),
        "rollout_tree/fallback_frac": sum(s["fallback"] for s in branches) / len(branches) if branches else 0.0,
        "rollout_tree/wait_s/mean": sum(waits) / len(waits),
        "rollout_tree/wait_s/max": max(waits),
    }
    cached = [(s["cached_tokens"], s["input_tokens"]) for s, _ in rows if s.get("cached_tokens", -1) >= 0]
    if cached:
        inputs = sum(i for _, i in cached)
        out["rollout_tree/prefix_cache_hit_frac"] = sum(c for c, _ in cached) / inputs if inputs else 0.0
    return out


def read_step_metrics(tq: Any, batch: Any) -> dict[str, float]:
    """``rollout_tree/*`` of a step's ``KVBatchMeta`` (keys ``{uid}_{session}_{index}``), read from TransferQueue."""
    keys = [k for k, tag in zip(batch.keys, batch.tags, strict=True) if not tag.get("is_padding", False)]
    if not keys:
        return {}
    extra = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    fields = extra.pop("extra_fields").tolist()
    stats = [getattr(f, "data", f).get(STATS_KEY) if isinstance(getattr(f, "data", f), dict) else None for f in fields]
    return tree_rollout_metrics(stats, [sample_uid(k) for k in keys])
