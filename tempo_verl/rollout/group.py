"""One group's sessions coordinating inside one worker's event loop: the module-level registry.

verl's v1 ``AgentLoopWorkerTQ._run_prompt`` starts the ``n`` sessions of a prompt as tasks of one
event loop and passes each ``uid`` and ``session_id``. Sessions ``0..roots-1`` are the roots; the
others are branches. The group's :class:`~tempo_verl.rollout.plan.TreePlan` decides when a branch's
point is chosen (its schedule: when every parent of its round has finished, when its own parent has,
or inside a root's finished segment); the branch waits on its own event until then.

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
import time
from collections.abc import Iterator

from tempo_verl.rollout.plan import Parent, TreePlan

__all__ = ["GroupFailed", "TreeGroup", "active_groups", "joined"]


class GroupFailed(RuntimeError):
    """A parent of this branch failed or was cancelled: the group fails fast, as verl fails a group."""


class TreeGroup:
    """The shared state of one prompt's ``n`` sessions: a :class:`~tempo_verl.rollout.plan.TreePlan` and
    one event per branch, set when its point is planned (or the group fails).

    Attributes:
        uid: the prompt's id.
        plan: who continues what, and when (``n``, ``roots``, ``rounds``, ``rule``, ``schedule``).
        deadline: ``time.monotonic()`` past which a waiting branch samples independently.
    """

    def __init__(self, uid: str, plan: TreePlan, deadline: float) -> None:
        self.uid, self.plan, self.deadline = uid, plan, deadline
        self.joined: set[int] = set()
        self.active: set[int] = set()
        self.failure: str | None = None
        self._events: dict[int, asyncio.Event] = {}

    def round_of(self, session: int) -> int:
        """0 for a root (and for a session beyond ``n``), else its round ``1..rounds``."""
        return self.plan.round_of(session)

    def _event(self, session: int) -> asyncio.Event:
        return self._events.setdefault(session, asyncio.Event())

    def record(self, session: int, ids: list[int], logprobs: list[float], depth: int, done: bool = True) -> None:
        """A session ended (or a segmented root finished a segment): release the branches now planned."""
        for branch in self.plan.update(session, ids, logprobs, depth, done):
            self._event(branch).set()

    def fail(self, session: int, why: str) -> None:
        """A session failed or was cancelled: release every waiting branch (they raise :class:`GroupFailed`)."""
        if self.failure is None:
            self.failure = f"session {session} of uid {self.uid}: {why}"
        for branch in range(self.plan.n):
            self._event(branch).set()

    async def wait_plan(self, session: int) -> tuple[Parent, int] | None:
        """Wait for this branch's point; None means sample independently (timeout, or no point left).

        Raises:
            GroupFailed: a session of the group failed before this branch was planned.
        """
        event = self._event(session)
        if not event.is_set():
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):  # one class only from Python 3.11
                await asyncio.wait_for(event.wait(), timeout=max(0.0, self.deadline - time.monotonic()))
        if session in self.plan.plans:
            return self.plan.plans[session]
        if self.failure is not None:
            raise GroupFailed(f"tempo_tree: a parent failed ({self.failure})")
        return None


_groups: dict[str, TreeGroup] = {}


def active_groups() -> dict[str, TreeGroup]:
    """The registry (uid -> group) of this process; empty between steps."""
    return _groups


@contextlib.contextmanager
def joined(
    uid: str, session: int, n: int, roots: int, rounds: int, rule: str, timeout_s: float, schedule: str = "rounds"
) -> Iterator[TreeGroup]:
    """Join (or open) the group of ``uid`` for one session; always leave it, whatever happens inside.

    A session raising inside (cancellation included) marks the group failed before it leaves.
    """
    group = _groups.get(uid)
    if group is None or session in group.joined:
        group = TreeGroup(uid, TreePlan(uid, n, roots, rounds, rule, schedule), deadline=time.monotonic() + timeout_s)
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
