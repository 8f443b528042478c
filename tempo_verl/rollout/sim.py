"""A rollout-time simulator: groups sampled as trees (or independently) on one generation server.

The server is a step clock. Continuous batching (vLLM): each step admits queued requests while the
KV cache has room (and fewer than ``max_seqs`` run), prefills their uncached input tokens, then
decodes one token for every running sequence; a finished sequence leaves at once; when the running
contexts outgrow the cache, the newest sequence is preempted and recomputed later. Static batching
(the CPU backend, :class:`~tempo_verl.rollout.backend.TransformersServer`): the requests waiting
when a batch ends form the next batch; a row that finishes leaves it (the rest decode at the cost of
what is left), and its answer comes back when the batch's last row ends.

The groups are planned by the loop's own :class:`~tempo_verl.rollout.plan.TreePlan` (the branch-
point rule, rounds, schedules): a root or segment finishing on the clock is reported to the plan,
and the branches it releases are submitted at that moment. Response lengths and token surprisals
come from a :class:`Workload` (measured responses replayed, or a named distribution).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tempo_verl.rollout.plan import TreePlan

__all__ = ["Profile", "Response", "Result", "Workload", "lognormal_workload", "replay_workload", "simulate"]


@dataclass(frozen=True)
class Profile:
    """A generation server's costs, in seconds.

    Attributes:
        step_s: fixed cost of one decode step (scheduling, kernel launches, weights read once).
        seq_s: per running sequence and step (sampling, per-row work).
        context_s: per token of running context and step (the KV cache read by attention).
        prefill_s: per uncached input token prefilled.
        kv_tokens: KV-cache capacity in tokens (the running sequences' contexts).
        max_seqs: most sequences running at once.
        prefix_cache: whether input tokens the server has seen (the group's prompt, a parent's
            prefix, a segmented root's tokens so far) are served from cache.
        continuous: continuous batching; False: static batches (the CPU backend).
        request_s: serial client time per request (the agent loop's own work where it shares
            the server's thread, as in-process on CPU; 0 where it overlaps decoding).
    """

    name: str
    step_s: float
    seq_s: float
    context_s: float
    prefill_s: float
    kv_tokens: int
    max_seqs: int
    prefix_cache: bool = True
    continuous: bool = True
    request_s: float = 0.0


@dataclass
class Response:
    """One session's planned response: ``(L,)`` token ids and their log-probabilities."""

    ids: list[int]
    logprobs: list[float]


@dataclass
class Workload:
    """Where responses come from.

    Attributes:
        groups, n, prompt_tokens, response_length: the step's shape.
        root: ``(group, session) -> Response`` of a session sampled from the prompt.
        branch: ``(group, session, parent, depth) -> Response`` continuing ``parent``'s first
            ``depth`` tokens (the returned response starts with them; ``parent`` is the parent's whole
            planned response, even while only a segment of it is decoded).
    """

    groups: int
    n: int
    prompt_tokens: int
    response_length: int
    root: Callable[[int, int], Response]
    branch: Callable[[int, int, Response, int], Response]


@dataclass
class Result:
    """One simulated rollout step."""

    wall_s: float
    generated_tokens: int
    response_tokens: int
    requests: int
    preemptions: int


@dataclass
class _Request:
    group: int
    session: int
    inputs: int  # prompt + prefix tokens sent
    cached: int  # of which served from the prefix cache
    target: int  # tokens to generate
    done: Callable[[float], None]
    generated: int = 0


@dataclass
class _Server:
    profile: Profile
    queue: deque = field(default_factory=deque)
    running: list = field(default_factory=list)
    preemptions: int = 0

    def _admit(self) -> list[_Request]:
        p, admitted = self.profile, []
        if not p.continuous:
            if self.running:
                return []
            while self.queue and len(admitted) < p.max_seqs:
                admitted.append(self.queue.popleft())
        else:
            used = sum(r.inputs + r.generated for r in self.running)
            while self.queue and len(self.running) + len(admitted) < p.max_seqs:
                need = self.queue[0].inputs + self.queue[0].generated + 1
                if used + need > p.kv_tokens and (self.running or admitted):
                    break
                used += need
                admitted.append(self.queue.popleft())
        self.running += admitted
        return admitted

    def step(self, now: float) -> float:
        """Run the steps from ``now`` to the next finish (or cache overflow); return when they end.

        Nothing is admitted between finishes: the queue only grows when a request finishes, and the
        cache only fills while none does. A step's cost is ``step_s + seq_s * rows + context_s * context``.
        """
        p = self.profile
        admitted = self._admit()
        if p.continuous:
            prefill = sum(r.inputs + r.generated - (r.cached if p.prefix_cache else 0) for r in admitted)
            live = self.running
            context = sum(r.inputs + r.generated for r in live)
            steps = min(r.target - r.generated for r in live)
            steps = min(steps, max(1, (p.kv_tokens - context) // len(live)))
        else:  # one padded batch: a finished row leaves it, nothing joins until its last row ends
            width = max(r.inputs for r in self.running)
            prefill = width * len(admitted)
            live = [r for r in self.running if r.generated < r.target]
            context = len(live) * (width + max(r.generated for r in live))
            steps = min(r.target - r.generated for r in live)
        rows = len(live)  # the rows each decode step computes
        decode = steps * (p.step_s + p.seq_s * rows) + p.context_s * (steps * context + rows * steps * (steps - 1) / 2)
        end = now + prefill * p.prefill_s + decode
        for r in live:
            r.generated += steps
        if p.continuous:
            used = context + rows * steps
            while used > p.kv_tokens and len(self.running) > 1:
                victim = self.running.pop()  # vLLM preempts the newest; it is recomputed (prefilled) later
                used -= victim.inputs + victim.generated
                victim.cached = 0
                self.queue.appendleft(victim)
                self.preemptions += 1
        finished = [r for r in self.running if r.generated >= r.target]
        if p.continuous or len(finished) == len(self.running):
            self.running = [r for r in self.running if r.generated < r.target]
            for r in finished:
                r.done(end)
        return end


def simulate(
    workload: Workload,
    profile: Profile,
    roots: int,
    schedule: str = "rounds",
    rounds: int = 1,
    rule: str = "surprisal",
    segment: int = 0,
) -> Result:
    """Simulate one rollout step: every group's ``n`` sessions planned by :class:`TreePlan`.

    ``roots = n`` is independent sampling. ``segment``: tokens per root request under
    ``schedule="segments"``.
    """
    server = _Server(profile)
    clock = [0.0]
    totals = {"generated": 0, "response": 0, "requests": 0}
    plans = [TreePlan(f"g{g}", workload.n, roots, rounds, rule, schedule) for g in range(workload.groups)]
    seen: set[int] = set()  # groups whose prompt the server has seen
    planned: dict[tuple[int, int], Response] = {}  # every session's whole response

    def submit(group: int, session: int, response: Response, start: int, depth: int) -> None:
        """Request the tokens ``response.ids[start:]`` (or the next segment of a segmented root)."""
        plan = plans[group]
        planned[group, session] = response
        total = len(response.ids)
        stop = min(total, start + segment) if plan.segmented(session) and segment > 0 else total
        # the group's prompt once any of its requests ran; a prefix is a finished request's tokens
        cached = workload.prompt_tokens + start if group in seen else 0
        seen.add(group)

        def done(at: float) -> None:
            clock[0] = max(clock[0], at)
            totals["generated"] += stop - start
            ended = stop >= total
            for branch in plan.update(session, response.ids[:stop], response.logprobs[:stop], depth, ended):
                start_branch(group, branch)
            if not ended:
                submit(group, session, response, stop, depth)
            else:
                totals["response"] += total

        totals["requests"] += 1
        clock[0] += profile.request_s
        request = _Request(group, session, workload.prompt_tokens + start, cached, max(1, stop - start), done)
        server.queue.append(request)

    def start_branch(group: int, session: int) -> None:
        point = plans[group].plans[session]
        if point is None:
            submit(group, session, workload.root(group, session), 0, 0)
            return
        parent, depth = point
        submit(group, session, workload.branch(group, session, planned[group, parent.key], depth), depth, depth)

    for g in range(workload.groups):
        for s in range(workload.n):
            if plans[g].round_of(s) == 0:
                submit(g, s, workload.root(g, s), 0, 0)
    now = clock[0]
    while server.queue or server.running:
        now = server.step(max(now, clock[0]))
    return Result(max(now, clock[0]), totals["generated"], totals["response"], totals["requests"], server.preemptions)


def lognormal_workload(
    groups: int,
    n: int,
    prompt_tokens: int,
    response_length: int,
    median: float,
    sigma: float,
    branch_sigma: float | None = 0.5,
    seed: int = 0,
) -> Workload:
    """Response lengths ``min(response_length, lognormal(log median, sigma))``, token surprisals Exp(1).

    A branch at depth ``t`` of a parent of length ``L``: with ``branch_sigma``, it continues for
    ``(L - t) * lognormal(0, branch_sigma)`` tokens (a branch of a long response tends to be long);
    with None, its length is a fresh draw given that it exceeds ``t`` (no memory of the parent).
    Each session draws from its own stream, so every schedule sees the same numbers. Token ids are
    unique per response: prefixes are shared only where the tree shares them.
    """
    counter = iter(range(1, 1 << 62))

    def draws(group: int, session: int) -> random.Random:
        return random.Random(f"{seed}/{group}/{session}")

    def length(rng: random.Random) -> int:
        return max(2, min(response_length, int(math.exp(rng.gauss(math.log(median), sigma)))))

    def fresh(rng: random.Random, k: int) -> tuple[list[int], list[float]]:
        return [next(counter) for _ in range(k)], [-rng.expovariate(1.0) for _ in range(k)]

    def root(group: int, session: int) -> Response:
        rng = draws(group, session)
        return Response(*fresh(rng, length(rng)))

    def branch(group: int, session: int, parent: Response, depth: int) -> Response:
        rng = draws(group, session)
        if branch_sigma is not None:
            rest = (len(parent.ids) - depth) * math.exp(rng.gauss(0.0, branch_sigma))
            total = depth + max(1, min(response_length - depth, int(rest)))
        else:
            total = next((k for k in (length(rng) for _ in range(100)) if k > depth), depth + 1)
        ids, lps = fresh(rng, total - depth)
        return Response(parent.ids[:depth] + ids, parent.logprobs[:depth] + lps)

    return Workload(groups, n, prompt_tokens, response_length, root, branch)


def replay_workload(
    prompt_tokens: Sequence[int],
    groups: Sequence[Sequence[Response]],
    response_length: int,
) -> Workload:
    """Measured responses replayed: session ``s`` of group ``g`` as a root is ``groups[g][s]``; as a
    branch at depth ``t`` it keeps its measured length (at least ``t + 1``), its tokens past the
    prefix its own. ``prompt_tokens``: the mean prompt length."""
    counter = iter(range(1 << 40, 1 << 62))

    def root(group: int, session: int) -> Response:
        return groups[group][session]

    def branch(group: int, session: int, parent: Response, depth: int) -> Response:
        extra = max(1, len(groups[group][session].ids) - depth)
        return Response(
            parent.ids[:depth] + [next(counter) for _ in range(extra)], parent.logprobs[:depth] + [-1.0] * extra
        )

    mean_prompt = round(sum(prompt_tokens) / len(prompt_tokens))
    return Workload(len(groups), len(groups[0]), mean_prompt, response_length, root, branch)
