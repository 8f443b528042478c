"""How long `tempo-verl study` takes: per-step wall time of each task and estimator, projected onto the protocol.

    python benchmarks/bench_study_budget.py             # 10 steps per (task, estimator); about 1-2 minutes
    python benchmarks/bench_study_budget.py --steps 5   # shorter

Measures, in this process with one torch thread, the warm-up of each task and the median step time of
`grpo` and `tempo` with independent sampling (both early steps, before the policy has learned anything,
so the response lengths are the warm-up's), then prints the projected wall time of the full protocol
(tempo-verl study's PROTOCOLS, 4 arms) for --jobs 1 and 2, against the 40-minute budget. Tree arms
are projected at the independent arms' step time: their own cost is measured once they exist.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from tempo_verl.demo.loop import prepare, train
from tempo_verl.demo.study import DEFAULT_ARMS, PROTOCOLS, parse_arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps timed per (task, estimator)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    arms = parse_arms(",".join(DEFAULT_ARMS))
    total = 0.0
    for name, proto in PROTOCOLS.items():
        cfg = proto.config(arms[0], proto.lr_grid[0])
        ready = prepare(cfg)
        step_s = {}
        for estimator in ("grpo", "tempo"):
            short = proto.config(arms[0], proto.lr_grid[0])
            short.steps = args.steps
            run = train(estimator, 0, short, ready.warm_state, ready.tokenizer, ready.task)
            step_s[estimator] = statistics.median(log["step_time_s"] for log in run.step_logs)
        runs_per_arm = len(proto.lr_grid) * len(proto.selection_seeds) + len(proto.eval_seeds)
        per_arm = {a.key: runs_per_arm * proto.steps * step_s[a.estimator] for a in arms}
        task_s = ready.warmup_time_s + sum(per_arm.values())
        total += task_s
        print(
            f"{name}: warm-up {ready.warmup_time_s:.1f} s; median step grpo {1000 * step_s['grpo']:.0f} ms, "
            f"tempo {1000 * step_s['tempo']:.0f} ms; {len(arms)} arms x {runs_per_arm} runs x {proto.steps} steps "
            f"-> {task_s / 60:.1f} min with one worker"
        )
    for jobs in (1, 2):
        print(f"projected whole study, --jobs {jobs}: {total / jobs / 60:.1f} min (budget 40 min on 2 CPU cores)")


if __name__ == "__main__":
    main()
