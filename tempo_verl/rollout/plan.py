"""The branch-point rule: where a group's branches continue their parents (pure python, no verl).

A *point* is a prefix of a parent's response: a branch at depth ``t`` of parent ``p`` keeps
``p.ids[:t]`` and samples its own tokens from position ``t`` on. Candidates are ``1 <= t <= len - 2``
(never the first token: that is an independent sample; never the last: nothing would follow it),
and a prefix is never taken twice (two parents sharing ``ids[:t]`` offer one point, and a branch's
points above its own depth belong to its parent).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Parent", "choose_branch_points"]


@dataclass(frozen=True)
class Parent:
    """A finished response a branch may continue.

    Attributes:
        key: its session id.
        ids: ``(L,)`` response token ids.
        logprobs: ``(L,)`` log-probabilities of those tokens under the policy that sampled them.
        depth: where it branched itself (0 for a root): its points start below that.
    """

    key: int
    ids: Sequence[int]
    logprobs: Sequence[float]
    depth: int = 0


def choose_branch_points(
    parents: Sequence[Parent],
    count: int,
    rule: str = "surprisal",
    taken: set[tuple[int, ...]] | None = None,
    load: dict[int, int] | None = None,
    depth_uses: dict[int, int] | None = None,
    rng: random.Random | None = None,
) -> list[tuple[Parent, int] | None]:
    """Pick ``count`` branch points, one per branch, greedily.

    Each branch goes to the parent with the fewest branches so far (``load``; ties: lower key) that
    still has a free candidate; within it, ``surprisal`` takes the candidate with the highest
    ``-logprob / (1 + depth_uses[t])`` (the least sure token, spread over depths), ``random`` a
    uniform one. ``taken``, ``load`` and ``depth_uses`` are updated in place (a group keeps them
    across rounds).

    Returns:
        one ``(parent, depth)`` per branch, or None where no candidate is left (that branch samples
        independently).
    """
    taken = set() if taken is None else taken
    load = {} if load is None else load
    depth_uses = {} if depth_uses is None else depth_uses
    rng = rng or random.Random(0)
    chosen: list[tuple[Parent, int] | None] = []
    for _ in range(count):
        best: tuple[Parent, int] | None = None
        for parent in sorted(parents, key=lambda p: (load.get(p.key, 0), p.key)):
            free = [
                t for t in range(max(1, parent.depth + 1), len(parent.ids) - 1) if tuple(parent.ids[:t]) not in taken
            ]
            if not free:
                continue
            if rule == "random":
                t = rng.choice(free)
            else:
                t = max(free, key=lambda t: (-parent.logprobs[t] / (1 + depth_uses.get(t, 0)), -t))
            best = (parent, t)
            break
        chosen.append(best)
        if best is not None:
            parent, t = best
            taken.add(tuple(parent.ids[:t]))
            load[parent.key] = load.get(parent.key, 0) + 1
            depth_uses[t] = depth_uses.get(t, 0) + 1
    return chosen
