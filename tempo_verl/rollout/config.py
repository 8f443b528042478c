"""The tree rollout's knobs under ``actor_rollout_ref.rollout.custom.tree`` and its start-up check.

verl 0.9.1's ``RolloutConfig`` has a free-form ``custom`` dict (its extension point), so the knobs
need no schema change; ``rollout.agent.tree`` would not do: verl converts ``rollout.agent`` to a
dataclass in every agent-loop worker and rejects unknown keys there. On the command line::

    actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree
    +actor_rollout_ref.rollout.custom.tree.roots=2 +actor_rollout_ref.rollout.custom.tree.rounds=2
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any

from tempo_verl.knobs import check_keys, get, keys, number
from tempo_verl.rollout import AGENT_LOOP_NAME
from tempo_verl.rollout.plan import SCHEDULES

__all__ = ["BRANCH_RULES", "TREE_PATH", "TreeRolloutConfig", "check_tree_run", "read_tree_config", "selects_tree"]

TREE_PATH = "actor_rollout_ref.rollout.custom.tree"
#: ``surprisal``: highest ``-log p`` of the sampled token; ``random``: uniform over the candidates.
BRANCH_RULES = ("surprisal", "random")


@dataclass(frozen=True)
class TreeRolloutConfig:
    """``actor_rollout_ref.rollout.custom.tree``: how a group of ``n`` responses is sampled as a tree.

    Attributes:
        roots: sessions that sample from the prompt alone (``None``: ``max(1, n // 4)``); ``roots = n``
            is independent sampling.
        rule: branch-point rule, one of :data:`BRANCH_RULES`. ``surprisal`` ranks the parents'
            generated tokens by ``-log p / (1 + branches already at that depth)``, so the branches
            go where the policy was least sure and spread over depths; never the first or the last
            token of a parent, never the same prefix twice, parents in turn.
        rounds: branching rounds; round ``r`` branches from every response of rounds ``< r`` (2:
            branches of branches). The branches are split evenly over the rounds.
        wait_timeout_s: longest a branch waits for its parents; past it, it samples independently.
        schedule: when branches start, one of :data:`~tempo_verl.rollout.plan.SCHEDULES`.
        segment_tokens: ``schedule=segments``: tokens per root segment (``None``: ``response_length // 4``).
    """

    roots: int | None = None
    rule: str = "surprisal"
    rounds: int = 1
    wait_timeout_s: float = 600.0
    schedule: str = "rounds"
    segment_tokens: int | None = None

    def num_roots(self, n: int) -> int:
        """Roots of a group of ``n`` (at most ``n``)."""
        return min(n, self.roots if self.roots is not None else max(1, n // 4))

    def segment_length(self, response_length: int) -> int:
        """Tokens per root segment under ``schedule=segments``."""
        return self.segment_tokens if self.segment_tokens is not None else max(1, response_length // 4)


def read_tree_config(rollout: Any) -> TreeRolloutConfig:
    """Read and check the knobs from verl's ``actor_rollout_ref.rollout`` node (DictConfig, dict or dataclass).

    Raises:
        ValueError: naming the bad key and the valid ones, or the bad value and what was expected.
    """
    custom = get(rollout, "custom", None)
    if custom is not None and not hasattr(custom, "get"):
        raise ValueError(f"actor_rollout_ref.rollout.custom: expected a mapping, got {custom!r}.")
    node = get(custom, "tree", None)
    check_keys(TREE_PATH, node, TreeRolloutConfig)
    roots = get(node, "roots", None)
    rule = get(node, "rule", TreeRolloutConfig.rule)
    if rule not in BRANCH_RULES:
        raise ValueError(f"{TREE_PATH}.rule: expected one of {list(BRANCH_RULES)}, got {rule!r}.")
    schedule = get(node, "schedule", TreeRolloutConfig.schedule)
    if schedule not in SCHEDULES:
        raise ValueError(f"{TREE_PATH}.schedule: expected one of {list(SCHEDULES)}, got {schedule!r}.")
    segment_tokens = get(node, "segment_tokens", None)
    return TreeRolloutConfig(
        roots=None if roots is None else number(f"{TREE_PATH}.roots", roots, int, minimum=1),
        rule=str(rule),
        rounds=number(f"{TREE_PATH}.rounds", get(node, "rounds", TreeRolloutConfig.rounds), int, minimum=1),
        wait_timeout_s=number(
            f"{TREE_PATH}.wait_timeout_s", get(node, "wait_timeout_s", TreeRolloutConfig.wait_timeout_s), float, 0.0
        ),
        schedule=str(schedule),
        segment_tokens=None
        if segment_tokens is None
        else number(f"{TREE_PATH}.segment_tokens", segment_tokens, int, minimum=1),
    )


def selects_tree(config: Any) -> bool:
    """Whether a verl run config selects the ``tempo_tree`` loop as its default agent loop."""
    rollout = get(get(config, "actor_rollout_ref", None), "rollout", None)
    return get(get(rollout, "agent", None), "default_agent_loop", None) == AGENT_LOOP_NAME


def _misplaced_tree_knobs(rollout: Any, tree_run: bool) -> list[str]:
    """Keys under ``actor_rollout_ref.rollout`` that look like tree knobs outside :data:`TREE_PATH`.

    ``rollout.tree`` and ``rollout.agent.tree`` always (verl rejects them later, in the workers, with
    Hydra's error); in a ``tempo_tree`` run also a tree knob or a near miss of ``tree`` one level off
    under ``rollout.custom`` (``custom.roots``, ``custom.trees``), which the loop would never read.
    ``custom`` is verl's free-form extension point, so other runs keep its other keys.
    """
    found = [f"actor_rollout_ref.rollout.{key}" for key in ("tree", "agent.tree") if _has(rollout, key)]
    if tree_run:
        custom = get(rollout, "custom", None)
        knobs = {f.name for f in fields(TreeRolloutConfig)}
        for key in keys("actor_rollout_ref.rollout.custom", custom if hasattr(custom, "keys") else None):
            if key != "tree" and (key in knobs or difflib.get_close_matches(key.lower(), ["tree"], n=1, cutoff=0.6)):
                found.append(f"actor_rollout_ref.rollout.custom.{key}")
    return found


def _has(node: Any, dotted: str) -> bool:
    for key in dotted.split("."):
        node = get(node, key, None)
        if node is None:
            return False
    return True


def check_tree_run(config: Any) -> None:
    """Start-up check of any verl run config: the tree knobs where the loop reads them, and a run it supports.

    Raises:
        ValueError: one line naming the key and the right place: a tree knob out of place, tree knobs
            without the ``tempo_tree`` loop selected, the legacy trainer or an asynchronous trainer mode
            with the loop, or a bad ``custom.tree`` knob.
    """
    rollout = get(get(config, "actor_rollout_ref", None), "rollout", None)
    tree_run = selects_tree(config)
    misplaced = _misplaced_tree_knobs(rollout, tree_run)
    if misplaced:
        raise ValueError(
            f"{misplaced[0]}: the tempo_tree loop never reads it; its knobs go under {TREE_PATH}.<knob> "
            f"(knobs: {[f.name for f in fields(TreeRolloutConfig)]}; on verl's command line: +{TREE_PATH}.roots=...)."
        )
    if not tree_run:
        if _has(rollout, "custom.tree"):
            raise ValueError(
                f"{TREE_PATH} is set but the tempo_tree loop is not selected, so it would be ignored: add "
                f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_LOOP_NAME} (or drop {TREE_PATH})."
            )
        return
    trainer = get(config, "trainer", None)
    if not get(trainer, "use_v1", True):
        raise ValueError(
            f"default_agent_loop={AGENT_LOOP_NAME} needs verl's v1 trainer (trainer.use_v1=True): the legacy "
            "trainer gives agent loops no session_id and may split a group across workers."
        )
    mode = get(get(trainer, "v1", None), "trainer_mode", "sync")
    if mode != "sync":
        raise ValueError(
            f"default_agent_loop={AGENT_LOOP_NAME} needs trainer.v1.trainer_mode=sync, got {mode!r}: in an "
            "asynchronous mode a branch continues a prefix sampled by older weights while verl records only "
            "the branch's own weight version, so its staleness would be under-reported."
        )
    tree = read_tree_config(rollout)
    if tree.roots is not None and tree.roots > int(get(rollout, "n", 1)):
        raise ValueError(f"{TREE_PATH}.roots: expected at most rollout.n={get(rollout, 'n', 1)}, got {tree.roots}.")
