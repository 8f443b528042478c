"""``tempo-verl study``: each arm at its best learning rate, on fresh paired seeds, with bootstrap intervals.

An *arm* is an estimator from verl's registry and a rollout backend, written ``estimator+rollout``
(``grpo+independent``, ``tempo+tree``, ``rloo+independent``, ...). For each task of the protocol
(:data:`PROTOCOLS`, fixed in docs/demo.md "Study protocol" before any comparison):

1. one shared supervised warm-up (the demo's :func:`~tempo_verl.demo.loop.prepare`);
2. **selection**: every arm trains at every lr of the grid on the selection seeds; its lr is the
   one with the highest mean reward over all steps (:func:`~tempo_verl.demo.stats.selection_score`);
3. **evaluation**: every arm trains at its lr on the evaluation seeds (the same seeds for every arm,
   disjoint from the selection seeds), with the demo's :func:`~tempo_verl.demo.loop.train`;
4. per arm: steps and generated tokens to the target (None where a seed never reached it), final
   reward, and the paired ratios against ``grpo+independent`` with 95 % bootstrap intervals
   (:mod:`tempo_verl.demo.stats`: censored seeds count at their budget, never dropped).

Outputs (built in a temporary folder that replaces ``--out`` whole when the study ends,
:func:`tempo_verl.outputs.atomic_output_dir`):
``study.json`` (the results), ``runs.json`` (every run's reward and token curves), ``study.png``
(reward curves with bands, and the ratios with their intervals), ``study.txt`` (the table) and
``trees-TASK-ARM.html`` (the prefix trees at the middle step of each arm's first evaluation seed).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tempo_verl.demo.config import DemoConfig
from tempo_verl.demo.loop import Prepared, RunResult, check_estimators, prepare, train
from tempo_verl.demo.model import ModelSize, build_tokenizer
from tempo_verl.demo.report import tree_html
from tempo_verl.demo.stats import censored_costs, paired_ratio, selection_score, time_to_target
from tempo_verl.demo.study_report import plot, table
from tempo_verl.outputs import OutputFolderError, atomic_output_dir, output_folder

__all__ = [
    "BASELINE",
    "DEFAULT_ARMS",
    "PROTOCOLS",
    "QUICK",
    "Arm",
    "Job",
    "Protocol",
    "parse_arms",
    "run_study",
    "run_task",
    "study_command",
    "train_job",
]

BASELINE = "grpo+independent"
DEFAULT_ARMS = ("grpo+independent", "tempo+independent", "grpo+tree", "tempo+tree")
FINAL_WINDOW = 5  # final reward: mean batch reward of the last 5 steps


@dataclass(frozen=True)
class Arm:
    """One arm: an estimator name from verl's registry and a rollout backend."""

    estimator: str
    rollout: str

    @property
    def key(self) -> str:
        return f"{self.estimator}+{self.rollout}"


def parse_arms(text: str) -> tuple[Arm, ...]:
    """``"grpo+independent,tempo+tree"`` -> arms, the baseline ``grpo+independent`` first (added when missing).

    Raises:
        ValueError: one line naming the bad entry and the expected ``estimator+rollout`` form.
    """
    arms: list[Arm] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        estimator, plus, rollout = item.partition("+")
        if not plus or not estimator or rollout not in ("independent", "tree"):
            raise ValueError(
                f"--arms: {item!r} is not estimator+rollout with rollout 'independent' or 'tree' "
                f"(e.g. tempo+tree, rloo+independent)."
            )
        if Arm(estimator, rollout) not in arms:
            arms.append(Arm(estimator, rollout))
    base = Arm("grpo", "independent")
    return (base, *(a for a in arms if a != base))


@dataclass(frozen=True)
class Protocol:
    """The fixed protocol of one task (docs/demo.md, "Study protocol", 2026-11-25).

    Attributes:
        task: the demo task's name.
        steps: RL steps of every run (the budget a censored seed counts at).
        lr_grid: the learning rates every arm is tried at.
        selection_seeds: seeds that choose each arm's lr.
        eval_seeds: paired seeds every arm is evaluated on (disjoint from the selection seeds).
        target: mean reward to reach (trailing ``window``-step mean of the batch reward).
        window: steps in the trailing mean.
        demo: other :class:`DemoConfig` settings (the demo's defaults otherwise).
    """

    task: str
    steps: int
    lr_grid: tuple[float, ...]
    target: float
    selection_seeds: tuple[int, ...] = (100, 101)
    eval_seeds: tuple[int, ...] = tuple(range(10))
    window: int = 3
    demo: tuple[tuple[str, Any], ...] = ()

    def config(self, arm: Arm, lr: float) -> DemoConfig:
        """The demo settings of one run of ``arm`` at ``lr``."""
        return DemoConfig(
            task=self.task,
            steps=self.steps,
            lr=lr,
            estimators=(arm.estimator,),
            rollout=arm.rollout,
            target=self.target,
            target_window=self.window,
            **dict(self.demo),
        )

    def check(self) -> None:
        """Raise ``ValueError`` (one line) on a protocol that breaks its own rules."""
        if len(self.eval_seeds) < 1 or set(self.eval_seeds) & set(self.selection_seeds):
            raise ValueError(f"{self.task}: evaluation seeds must be given and disjoint from the selection seeds.")
        if not self.lr_grid or not self.selection_seeds:
            raise ValueError(f"{self.task}: the lr grid and the selection seeds must not be empty.")


PROTOCOLS: dict[str, Protocol] = {
    "parity": Protocol(task="parity", steps=50, lr_grid=(5e-4, 1e-3, 2e-3), target=0.8),
    "rule": Protocol(task="rule", steps=150, lr_grid=(5e-4, 1e-3, 1.5e-3), target=0.4),
}

# --quick: the same code path in seconds (for tests), not a result.
QUICK: dict[str, Any] = {
    "steps": 3,
    "lr_grid": (1e-3, 3e-3),
    "selection_seeds": (100,),
    "eval_seeds": (0, 1),
    "demo": (
        ("prompts_per_step", 4),
        ("group_size", 4),
        ("warmup_steps", 40),
        ("warmup_batch", 16),
        ("model", ModelSize(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)),
    ),
}


# ----------------------------------------------------------------------------------------------
# Running the protocol of one task
# ----------------------------------------------------------------------------------------------
def _run_record(run: RunResult, arm: Arm, lr: float, phase: str) -> dict[str, Any]:
    return {
        "arm": arm.key,
        "lr": lr,
        "seed": run.seed,
        "phase": phase,
        "reward": [round(r, 6) for r in run.rewards],
        "generated_tokens": list(run.generated_tokens),
        "wall_s": round(sum(log["step_time_s"] for log in run.step_logs), 3),
    }


def _arm_summary(records: list[dict[str, Any]], proto: Protocol) -> dict[str, Any]:
    """steps / tokens to target (None where not reached) and final reward over the evaluation seeds."""
    reached = [time_to_target(r["reward"], r["generated_tokens"], proto.target, proto.window) for r in records]
    return {
        "steps_to_target": [None if x is None else x[0] for x in reached],
        "generated_tokens_to_target": [None if x is None else x[1] for x in reached],
        "final_reward": [float(np.mean(r["reward"][-FINAL_WINDOW:])) for r in records],
        "censored": sum(x is None for x in reached),
        "budget_steps": [len(r["reward"]) for r in records],
        "budget_tokens": [int(sum(r["generated_tokens"])) for r in records],
    }


def _ratios(arm: dict[str, Any], reference: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Paired ratios reference / arm of steps and generated tokens to target (censored at the budget)."""
    out = {}
    for name, key, budget in (
        ("steps", "steps_to_target", "budget_steps"),
        ("tokens", "generated_tokens_to_target", "budget_tokens"),
    ):
        ref = censored_costs(reference[key], reference[budget])
        out[name] = paired_ratio(ref, censored_costs(arm[key], arm[budget]))
    return out


@dataclass(frozen=True)
class Job:
    """One run of the study: what a worker process needs to train it."""

    proto: Protocol
    arm: Arm
    lr: float
    seed: int
    phase: str  # "selection" or "evaluation"
    warm_state: dict[str, torch.Tensor]
    tree_step: int | None = None  # draw this step's prefix trees


def train_job(job: Job) -> tuple[dict[str, Any], str | None]:
    """Train one run with the demo's :func:`~tempo_verl.demo.loop.train` (one torch thread).

    Returns:
        the run's record, and the tree page of ``job.tree_step`` (HTML) when one was asked for.
    """
    torch.set_num_threads(1)
    cfg = job.proto.config(job.arm, job.lr)
    task = cfg.make_task()
    tokenizer = build_tokenizer(task)
    result = train(job.arm.estimator, job.seed, cfg, job.warm_state, tokenizer, task, keep_tree_at=job.tree_step)
    page = None
    if result.tree is not None:
        title = (
            f"tempo-verl study: {job.proto.task}, {job.arm.key} (lr {job.lr:g}, seed {job.seed}), step {job.tree_step}"
        )
        page = tree_html(result.tree, tokenizer, title)
    return _run_record(result, job.arm, job.lr, job.phase), page


def run_task(
    proto: Protocol,
    arms: tuple[Arm, ...],
    pool: Executor | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """Run one task's protocol for ``arms`` (settings already checked by :func:`run_study`); return its
    ``study.json`` entry, every run's record, and per arm the tree page (HTML) of the middle step of
    its first evaluation seed.

    Args:
        pool: runs go to these worker processes when given (every run is seeded on its own, so the
            results do not depend on how many workers there are); in this process otherwise.
    """
    ready: Prepared = prepare(proto.config(arms[0], proto.lr_grid[0]))
    log(f"[{proto.task}] warm-up {ready.warmup_time_s:.0f} s")
    records: list[dict[str, Any]] = []
    pages: dict[str, str] = {}

    def run(jobs: list[Job]) -> list[dict[str, Any]]:
        done = []
        for record, page in pool.map(train_job, jobs) if pool is not None else map(train_job, jobs):
            if page is not None:
                pages[record["arm"]] = page
            log(
                f"[{proto.task}] {record['phase']} {record['arm']} lr={record['lr']:g} seed={record['seed']}: "
                f"final reward {np.mean(record['reward'][-FINAL_WINDOW:]):.2f} ({record['wall_s']:.0f} s)"
            )
            done.append(record)
        records.extend(done)
        return done

    picks = [(a, lr, s) for a in arms for lr in proto.lr_grid for s in proto.selection_seeds]
    selected = run([Job(proto, a, lr, s, "selection", ready.warm_state) for a, lr, s in picks])
    selection: dict[str, dict[str, float]] = {}
    chosen: dict[Arm, float] = {}
    for arm in arms:
        scores = {
            lr: selection_score([r["reward"] for r in selected if r["arm"] == arm.key and r["lr"] == lr])
            for lr in proto.lr_grid
        }
        selection[arm.key] = {f"{lr:g}": score for lr, score in scores.items()}
        chosen[arm] = max(proto.lr_grid, key=lambda lr: (scores[lr], -lr))  # ties: the smaller lr
    middle = max(1, proto.steps // 2)
    evaluated = run(
        [
            Job(proto, a, chosen[a], s, "evaluation", ready.warm_state, middle if s == proto.eval_seeds[0] else None)
            for a in arms
            for s in proto.eval_seeds
        ]
    )
    summaries = {
        arm.key: {"lr": chosen[arm], **_arm_summary([r for r in evaluated if r["arm"] == arm.key], proto)}
        for arm in arms
    }
    for key, summary in summaries.items():
        summary["vs_baseline"] = _ratios(summary, summaries[BASELINE])
        estimator, _, rollout = key.partition("+")
        peer = f"grpo+{rollout}"  # the same rollouts, GRPO's credit: what the estimator alone changes
        if estimator != "grpo" and peer in summaries:
            summary["vs_grpo_same_rollout"] = _ratios(summary, summaries[peer])
    entry = {
        "task": proto.task,
        "seeds": {"selection": list(proto.selection_seeds), "evaluation": list(proto.eval_seeds)},
        "lr_grid": list(proto.lr_grid),
        "steps": proto.steps,
        "target": proto.target,
        "target_window": proto.window,
        "baseline": BASELINE,
        "selection": selection,
        "arms": summaries,
        "warmup_time_s": ready.warmup_time_s,
    }
    return entry, records, pages


def run_study(
    tasks: tuple[str, ...],
    out: Path,
    arms: tuple[Arm, ...] = tuple(parse_arms(",".join(DEFAULT_ARMS))),
    quick: bool = False,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the protocol of every task in ``tasks``; write study.json, runs.json, study.png and study.txt.

    Args:
        jobs: worker processes (one torch thread each); 1 runs everything in this process.

    Raises:
        ValueError: one line, before any training, for an unknown task, arm or estimator, an arm
            whose rollout this build lacks, an ``out`` another study is writing to, or a folder of the user's.
    """
    unknown = [t for t in tasks if t not in PROTOCOLS]
    if unknown:
        raise ValueError(f"--task: unknown task {unknown[0]!r}; the study's tasks: {', '.join(PROTOCOLS)}.")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}.")
    protocols = [replace(PROTOCOLS[t], **QUICK) if quick else PROTOCOLS[t] for t in tasks]
    for proto in protocols:  # every setting of every task and arm, before anything runs
        proto.check()
        for arm in arms:
            cfg = proto.config(arm, proto.lr_grid[0])
            cfg.check()
            check_estimators(cfg.estimators, cfg.algorithm_config())
    started = time.perf_counter()
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    with atomic_output_dir(out) as stage:
        study: dict[str, Any] = {"tasks": {}, "quick": quick}
        every_run: list[dict[str, Any]] = []
        try:
            for proto in protocols:
                entry, records, pages = run_task(proto, arms, pool, log)
                study["tasks"][proto.task] = entry
                every_run += [{"task": proto.task, **r} for r in records]
                for key, page in pages.items():
                    (stage / f"trees-{proto.task}-{key}.html").write_text(page, encoding="utf-8")
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        study["wall_time_s"] = time.perf_counter() - started
        study["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "jobs": jobs, "torch_threads": 1}
        text = table(study)
        (stage / "study.txt").write_text(text, encoding="utf-8")
        (stage / "runs.json").write_text(json.dumps(every_run) + "\n", encoding="utf-8")
        plot(study, every_run, stage / "study.png")
        # One task: its entry at the top level (task, seeds, lr_grid, arms, ...); several: under "tasks".
        payload = study if len(protocols) > 1 else {**study.pop("tasks")[protocols[0].task], **study}
        (stage / "study.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    log(text)
    return study


def study_command(task: str, out: str, arms: str, quick: bool, jobs: int) -> int:
    """``tempo-verl study``: run and print the table. Returns 0, or 2 after one line on stderr (bad option, failure)."""
    import sys

    try:
        tasks = tuple(PROTOCOLS) if task == "all" else (task,)
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        run_study(tasks, output_folder(out), parse_arms(arms), quick=quick, jobs=jobs, log=log)
    except OutputFolderError as err:  # ., /, "" or a mount point: before any work
        print(f"tempo-verl study: error: --out {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as err:
        print(f"tempo-verl study: error: {err}", file=sys.stderr)
        return 2
    return 0
