"""The rollout-time simulator's clock against hand-computed cases, and the schedules of TreePlan it drives."""

from __future__ import annotations

import pytest

from tempo_verl.rollout.plan import TreePlan
from tempo_verl.rollout.sim import Profile, Response, Workload, simulate

UNIT = Profile("unit", step_s=1.0, seq_s=0.5, context_s=0.0, prefill_s=0.0, kv_tokens=10**9, max_seqs=10**6)


def _fixed(lengths: dict[int, int], n: int, prompt: int = 4, groups: int = 1) -> Workload:
    """Session ``s`` answers ``lengths[s]`` tokens; its surprisal peaks at token 1; a branch keeps that length."""

    def root(g: int, s: int) -> Response:
        k = lengths[s]
        return Response([100 * s + i for i in range(k)], [-3.0 if i == 1 else -0.1 for i in range(k)])

    def branch(g: int, s: int, parent: Response, depth: int) -> Response:
        extra = max(1, lengths[s] - depth)
        return Response(
            parent.ids[:depth] + [1000 * s + i for i in range(extra)], parent.logprobs[:depth] + [-0.1] * extra
        )

    return Workload(groups, n, prompt, 64, root, branch)


def test_continuous_batching_clock() -> None:
    # two independent sessions of 2 and 4 tokens: steps 1-2 run both (1 + 2 x 0.5), steps 3-4 one (1 + 0.5)
    result = simulate(_fixed({0: 2, 1: 4}, n=2), UNIT, roots=2)
    assert result.wall_s == pytest.approx(2 * 2.0 + 2 * 1.5)
    assert result.generated_tokens == result.response_tokens == 6


def test_static_batches_shrink_as_rows_finish_and_answer_together() -> None:
    static = Profile("static", 1.0, 0.5, 0.0, 0.25, 10**9, 10**6, prefix_cache=False, continuous=False, request_s=0.1)
    result = simulate(_fixed({0: 2, 1: 4}, n=2), static, roots=2)
    # 2 requests of loop time, prefill 2 rows x 4 tokens x 0.25, 2 steps of both rows, 2 steps of the longer one
    assert result.wall_s == pytest.approx(2 * 0.1 + 2 * 4 * 0.25 + 2 * 2.0 + 2 * 1.5)


def test_kv_capacity_queues_and_preempts() -> None:
    tight = Profile("tight", 1.0, 0.0, 0.0, 0.0, kv_tokens=10, max_seqs=10)
    # prompts of 4 + 4 tokens each: the second waits for room; nothing is lost
    result = simulate(_fixed({0: 4, 1: 4}, n=2), tight, roots=2)
    assert result.generated_tokens == 8 and result.wall_s > 4.0


def test_schedules_set_when_branches_start() -> None:
    lengths = {0: 4, 1: 40, 2: 10, 3: 3}  # root 0 is short, root 1 long; branch 2 continues root 0
    work = _fixed(lengths, n=4)
    rounds = simulate(work, UNIT, roots=2, schedule="rounds")
    eager = simulate(work, UNIT, roots=2, schedule="eager")
    segments = simulate(work, UNIT, roots=2, schedule="segments", segment=5)
    # rounds: branches wait for the 40-token root; eager: branch 2 overlaps it
    assert eager.wall_s < rounds.wall_s
    assert segments.requests > eager.requests == rounds.requests == 4  # the long root in segments of 5
    assert eager.generated_tokens == rounds.generated_tokens  # same points (the peak at token 1)


def test_eager_and_segment_plans() -> None:
    plan = TreePlan("u", n=6, roots=2, rounds=1, rule="surprisal", schedule="eager")
    assert [plan.parent_of(b) for b in range(2, 6)] == [0, 1, 0, 1]
    assert plan.update(1, [1, 2, 3, 4, 5], [-0.1, -2.0, -0.1, -1.0, -0.1], 0) == [3, 5]  # root 1's own branches
    assert {plan.plans[3][1], plan.plans[5][1]} == {1, 3}
    seg = TreePlan("u", n=4, roots=1, rounds=1, rule="surprisal", schedule="segments")
    assert seg.segmented(0) and not seg.segmented(1)
    assert seg.update(0, [1, 2, 3], [-0.1, -2.0, -0.1], 0, done=False) == [1]  # one branch per finished segment
    assert seg.plans[1][1] == 1
    assert seg.update(0, [1, 2, 3, 4, 5, 6], [-0.1, -2.0, -0.1, -0.5, -0.1, -0.1], 0) == [2, 3]  # the rest at the end
