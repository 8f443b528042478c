"""One group's sessions coordinating inside one worker's event loop: the module-level registry.

verl's v1 ``AgentLoopWorkerTQ._run_prompt`` starts the ``n`` sessions of a prompt as tasks of one
event loop and passes each ``uid`` and ``session_id``. Sessions ``0..roots-1`` are the roots; the
others are branches, split evenly over the rounds. When every parent of a round has finished, the
round's branch points are planned once (:func:`~tempo_verl.rollout.plan.choose_branch_points`) and
its branches released.

Failure and clean-up: a session that raises or is cancelled marks the group failed, which wakes
every waiting branch with :class:`GroupFailed` at once (verl fails the whole group anyway); a
branch that waits longer than ``wait_timeout_s`` samples independently. The registry entry leaves
with the group's last active session, whatever happened. A session id that joins a group twice
means the prompt was issued again (a retry, a resumed run): it starts a fresh entry, so nothing
stale is ever seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tempo_verl.rollout.plan import Parent, choose_branch_points

__all__ = ["GroupFailed", "TreeGroup", "active_groups", "joined"]


class GroupFailed(RuntimeError):
    """A parent of this branch failed or was cancelled: the group fails fast, as verl fails a group."""


@dataclass
class TreeGroup:
    """The shared state of one prompt's ``n`` sessions.

    Attributes:
        uid: the prompt's id.
        n, roots, rounds, rule: the group's shape (see :class:`~tempo_verl.rollout.config.TreeRolloutConfig`).
        deadline: ``time.monotonic()`` past which a waiting branch samples independently.
    """

    uid: str
    n: int
    roots: int
    rounds: int
    rule: str
    deadline: float
    joined: set[int] = field(default_factory=set)
    active: set[int] = field(default_factory=set)
    finished: dict[int, Parent] = field(default_factory=dict)
    plans: dict[int, tuple[Parent, int] | None] = field(default_factory=dict)
    failure: str | None = None
    _events: dict[int, asyncio.Event] = field(default_factory=dict)
    _taken: set[tuple[int, ...]] = field(default_factory=set)
    _load: dict[int, int] = field(default_factory=dict)
    _depth_uses: dict[int, int] = field(default_factory=dict)

    def round_of(self, session: int) -> int:
        """0 for a root (and for a session beyond ``n``: it samples independently), else its round ``1..rounds``."""
        if session < self.roots or session >= self.n:
            return 0
        branches = self.n - self.roots
        return 1 + (session - self.roots) * min(self.rounds, branches) // branches

    def _event(self, round_: int) -> asyncio.Event:
        return self._events.setdefault(round_, asyncio.Event())

    def record(self, session: int, ids: list[int], logprobs: list[float], depth: int) -> None:
        """A session finished: it becomes a parent of later rounds; plan every round now ready."""
        self.finished[session] = Parent(session, list(ids), list(logprobs), depth)
        for round_ in range(1, self.rounds + 1):
            if self._event(round_).is_set():
                continue
            parents = [s for s in range(self.n) if self.round_of(s) < round_]
            if any(s not in self.finished for s in parents):
                break
            branches = [s for s in range(self.n) if self.round_of(s) == round_]
            points = choose_branch_points(
                [self.finished[s] for s in parents],
                len(branches),
                rule=self.rule,
                taken=self._taken,
                load=self._load,
                depth_uses=self._depth_uses,
                rng=random.Random(f"{self.uid}/{round_}"),
            )
            self.plans.update(zip(branches, points, strict=True))
            self._event(round_).set()

    def fail(self, session: int, why: str) -> None:
        """A session failed or was cancelled: release every waiting branch (they raise :class:`GroupFailed`)."""
        if self.failure is None:
            self.failure = f"session {session} of uid {self.uid}: {why}"
        for round_ in range(1, self.rounds + 1):
            self._event(round_).set()

    async def wait_plan(self, session: int) -> tuple[Parent, int] | None:
        """Wait for this branch's point; None means sample independently (timeout, or no point left).

        Raises:
            GroupFailed: a session of the group failed before this branch's round was planned.
        """
        event = self._event(self.round_of(session))
        if not event.is_set():
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):  # one class only from Python 3.11
                await asyncio.wait_for(event.wait(), timeout=max(0.0, self.deadline - time.monotonic()))
        if session in self.plans:
            return self.plans[session]
        if self.failure is not None:
            raise GroupFailed(f"tempo_tree: a parent failed ({self.failure})")
        return None


_groups: dict[str, TreeGroup] = {}


def active_groups() -> dict[str, TreeGroup]:
    """The registry (uid -> group) of this process; empty between steps."""
    return _groups


@contextlib.contextmanager
def joined(uid: str, session: int, n: int, roots: int, rounds: int, rule: str, timeout_s: float) -> Iterator[TreeGroup]:
    """Join (or open) the group of ``uid`` for one session; always leave it, whatever happens inside.

    A session raising inside (cancellation included) marks the group failed before it leaves.
    """
    group = _groups.get(uid)
    if group is None or session in group.joined:
        group = TreeGroup(uid, n, roots, rounds, rule, deadline=time.monotonic() + timeout_s)
        _groups[uid] = group
    group.joined.add(session)
    group.active.add(session)
    try:
        yield group
    except BaseException as err:
        group.fail(session, f"{type(err).__name__}: {err}")
        raise
    finally:
        group.active.discard(session)
        if not group.active and _groups.get(uid) is group:
            del _groups[uid]
