"""How long `tempo-verl study` takes: the step time of every arm of every task, projected onto protocol v2.

    python benchmarks/bench_study_budget.py                 # 10 steps per (task, arm), --jobs 2; a few minutes
    python benchmarks/bench_study_budget.py --steps 5 --jobs 1

For each task of the protocol (tempo-verl study's PROTOCOLS, each with its own arms), this warms up once,
then trains every arm for ``--steps`` steps from the warm-up, ``--jobs`` runs at a time in worker
processes of one torch thread each (as the study does, so the step times include the contention of
parallel workers), and projects the whole protocol:

    selection: arms x lr grid x selection seeds, full length
    evaluation: arms x evaluation seeds, at each arm's own lr ("picks agree": every same-rollout pair
        picked the same lr) or also at its partner's lr ("every pair differs": the most runs)
    tree pages: one rerun per arm, at most a whole run

wall = warm-ups + sum(runs x steps x the arm's mean step time) / jobs. Early steps are timed (the
warm-up's well-formed responses: their length does not change much as the policy learns). Prints
``uptime`` too: on a shared machine the figures grow with the load; the protocol's budget is 90 minutes
on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from tempo_verl.demo.loop import prepare
from tempo_verl.demo.study import PROTOCOLS, Job, parse_arms, train_job

BUDGET_MIN = 90.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps timed per (task, arm)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, as tempo-verl study --jobs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load before: {os.getloadavg()[0]:.1f} (1-min average), {os.cpu_count()} CPUs")
    totals = {"picks agree": 0.0, "every pair differs": 0.0}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, proto in PROTOCOLS.items():
            arms = parse_arms(",".join(proto.arms))
            ready = prepare(proto.config(arms[0], proto.lr_grid[0]))
            short = replace(proto, steps=args.steps)
            jobs = [Job(short, a, proto.lr_grid[1], 0, "bench", ready.warm_state) for a in arms]
            step_s = {}
            for job, (record, _) in zip(jobs, pool.map(train_job, jobs), strict=True):
                step_s[job.arm] = record["wall_s"] / args.steps
            paired = {a for a in arms if a.estimator != "grpo" and a.peer in arms} | {
                a.peer for a in arms if a.estimator != "grpo" and a.peer in arms
            }
            for case in totals:
                core_s = 0.0
                for arm in arms:
                    lrs = 2 if case == "every pair differs" and arm in paired else 1
                    runs = len(proto.lr_grid) * len(proto.selection_seeds) + lrs * len(proto.eval_seeds) + 1
                    core_s += runs * proto.steps * step_s[arm]
                totals[case] += ready.warmup_time_s + core_s / args.jobs
            times = ", ".join(f"{a.key} {1000 * s:.0f} ms" for a, s in step_s.items())
            print(
                f"{name}: warm-up {ready.warmup_time_s:.1f} s; mean step ({args.jobs} workers) {times}; "
                f"{len(arms)} arms x {len(proto.lr_grid)} lrs x {len(proto.selection_seeds)} selection seeds "
                f"+ {len(proto.eval_seeds)} evaluation seeds x {proto.steps} steps"
            )
    for case, wall in totals.items():
        verdict = "within" if wall / 60 <= BUDGET_MIN else "OVER"
        print(
            f"projected protocol v2, --jobs {args.jobs}, {case} case: {wall / 60:.1f} min "
            f"({verdict} the {BUDGET_MIN:.0f}-minute budget on 2 quiet cores)"
        )
    print(f"load after: {os.getloadavg()[0]:.1f} (1-min average)")


if __name__ == "__main__":
    main()
