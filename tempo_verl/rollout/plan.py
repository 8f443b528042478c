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

__all__ = ["SCHEDULES", "Parent", "TreePlan", "choose_branch_points"]


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
        taken_lengths = {len(prefix) for prefix in taken}  # only a prefix of a taken length can be taken
        for parent in sorted(parents, key=lambda p: (load.get(p.key, 0), p.key)):
            free = [
                t
                for t in range(max(1, parent.depth + 1), len(parent.ids) - 1)
                if t not in taken_lengths or tuple(parent.ids[:t]) not in taken
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


#: When a group's branches start. ``rounds``: a round's branches wait until every parent of the
#: round has finished. ``eager``: each branch has its own parent from the start and starts as soon
#: as that parent ends. ``segments``: as ``eager``, but the roots decode in segments of
#: ``segment_tokens`` and a root's branches start one per finished segment, at a point inside that
#: segment (so a branch starts at most one segment after its point); the rest when the root ends.
SCHEDULES = ("rounds", "eager", "segments")


class TreePlan:
    """Which branch continues which prefix, and when: one group's plan, driven by its sessions' progress.

    Pure python and synchronous: :class:`~tempo_verl.rollout.group.TreeGroup` drives it from the
    agent loop, the rollout simulator (:mod:`~tempo_verl.rollout.sim`) from its event clock, so both
    make the same choices.

    Sessions ``0..roots-1`` are the roots; the others are branches, split evenly over ``rounds``
    (round ``r`` may continue any session of rounds ``< r``). A session ``>= n`` is an independent
    sample.
    """

    def __init__(self, uid: str, n: int, roots: int, rounds: int, rule: str, schedule: str = "rounds") -> None:
        self.uid, self.n, self.roots, self.rounds, self.rule, self.schedule = uid, n, roots, rounds, rule, schedule
        self.finished: dict[int, Parent] = {}
        self.plans: dict[int, tuple[Parent, int] | None] = {}
        self._taken: set[tuple[int, ...]] = set()
        self._load: dict[int, int] = {}
        self._depth_uses: dict[int, int] = {}
        self._released_rounds: set[int] = set()
        self._segments_seen: dict[int, int] = {}

    def round_of(self, session: int) -> int:
        """0 for a root (and for a session beyond ``n``: it samples independently), else its round ``1..rounds``."""
        if session < self.roots or session >= self.n:
            return 0
        branches = self.n - self.roots
        return 1 + (session - self.roots) * min(self.rounds, branches) // branches

    def parent_of(self, session: int) -> int:
        """``eager``/``segments``: the session a branch continues, fixed from the start (earlier rounds in turn)."""
        round_ = self.round_of(session)
        earlier = [s for s in range(self.n) if self.round_of(s) < round_]
        same = [s for s in range(self.n) if self.round_of(s) == round_]
        return earlier[same.index(session) % len(earlier)]

    def segmented(self, session: int) -> bool:
        """Whether this session decodes in segments (the roots of a ``segments`` plan)."""
        return self.schedule == "segments" and session < self.roots

    def _choose(self, parents: list[Parent], count: int, salt: str) -> list[tuple[Parent, int] | None]:
        return choose_branch_points(
            parents,
            count,
            rule=self.rule,
            taken=self._taken,
            load=self._load,
            depth_uses=self._depth_uses,
            rng=random.Random(f"{self.uid}/{salt}"),
        )

    def update(
        self, session: int, ids: Sequence[int], logprobs: Sequence[float], depth: int, done: bool = True
    ) -> list[int]:
        """A session ended (``done``) or finished a segment: plan what is ready now.

        Returns:
            the branches planned by this call (their points in :attr:`plans`; None: sample independently).
        """
        parent = Parent(session, list(ids), list(logprobs), depth)
        if done:
            self.finished[session] = parent
        if self.schedule == "rounds":
            return self._release_rounds() if done else []
        waiting = [b for b in range(self.n) if self.round_of(b) > 0 and b not in self.plans]
        mine = [b for b in waiting if self.parent_of(b) == session]
        if not done:  # a finished segment: one branch, at a point inside it if one is free
            start = self._segments_seen.get(session, 0)
            self._segments_seen[session] = len(ids)
            latest = Parent(session, parent.ids, parent.logprobs, max(depth, start - 1))  # points from `start` on
            (point,) = self._choose([latest], 1, f"{session}/{len(ids)}") if mine else (None,)
            if point is None:
                return []
            point = (parent, point[1])
            mine = mine[:1]
            self.plans[mine[0]] = point
            return mine
        self.plans.update(zip(mine, self._choose([parent], len(mine), f"{session}/end"), strict=True))
        return mine

    def _release_rounds(self) -> list[int]:
        released = []
        for round_ in range(1, self.rounds + 1):
            if round_ in self._released_rounds:
                continue
            parents = [s for s in range(self.n) if self.round_of(s) < round_]
            if any(s not in self.finished for s in parents):
                break
            branches = [s for s in range(self.n) if self.round_of(s) == round_]
            points = self._choose([self.finished[s] for s in parents], len(branches), str(round_))
            self.plans.update(zip(branches, points, strict=True))
            self._released_rounds.add(round_)
            released += branches
        return released
