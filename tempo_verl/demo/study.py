"""``tempo-verl study``: every arm at every lr of a grid, then on fresh paired seeds, with bootstrap intervals.

An *arm* is an estimator from verl's registry and a rollout backend, written ``estimator+rollout``
(``grpo+independent``, ``tempo+tree``, ``rloo+independent``, ...). For each task of the protocol
(:data:`PROTOCOLS`, fixed in docs/study-protocol.md before any v2 comparison run):

1. one shared supervised warm-up (the demo's :func:`~tempo_verl.demo.loop.prepare`);
2. **selection**: every arm trains at every lr of the grid on the selection seeds; its lr is the
   one with the highest mean reward over all steps (:func:`~tempo_verl.demo.stats.selection_score`),
   unless ``--lr`` fixes it;
3. **evaluation**: every arm trains on the evaluation seeds (the same seeds for every arm, disjoint
   from the selection seeds) at its own lr *and* at the lr of every arm it is compared with on the
   same rollouts (:func:`evaluation_lrs`), with the demo's :func:`~tempo_verl.demo.loop.train`;
4. the comparisons (:func:`comparisons`): paired ratios of steps and generated tokens to the
   target with 95 % bootstrap intervals, on each set of 10 evaluation seeds and pooled
   (:mod:`tempo_verl.demo.stats`: censored seeds count at their budget, never dropped), and the
   protocol's decision rule applied to them (:func:`verdicts`).

Outputs (built in a temporary folder that replaces ``--out`` whole when the study ends,
:func:`tempo_verl.outputs.atomic_output_dir`):
``study.json`` (the results and the machine), ``runs.json`` (every run's reward and token curves),
``study.png``, ``study.txt`` (the tables) and ``trees-TASK-ARM.html`` (the prefix trees of the step
of each arm's first evaluation seed whose batch reward is nearest 0.5, where rewards vary within groups).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import subprocess
import sys
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
from tempo_verl.demo.study_report import NOT_A_RESULT, plot, table
from tempo_verl.outputs import OutputFolderError, atomic_output_dir, output_folder

__all__ = [
    "BASELINE",
    "DEFAULT_ARMS",
    "PROTOCOLS",
    "QUICK",
    "Arm",
    "Job",
    "Protocol",
    "comparisons",
    "evaluation_lrs",
    "machine_info",
    "parse_arms",
    "parse_lrs",
    "parse_seeds",
    "run_study",
    "run_task",
    "study_command",
    "train_job",
    "tree_step",
    "verdicts",
]

BASELINE = "grpo+independent"
DEFAULT_ARMS = ("grpo+independent", "tempo+independent", "grpo+tree", "tempo+tree")
FINAL_WINDOW = 5  # final reward: mean batch reward of the last 5 steps
SEED_SET = 10  # evaluation seeds are reported in consecutive sets of 10, and pooled


@dataclass(frozen=True)
class Arm:
    """One arm: an estimator name from verl's registry and a rollout backend."""

    estimator: str
    rollout: str

    @property
    def key(self) -> str:
        return f"{self.estimator}+{self.rollout}"

    @property
    def peer(self) -> Arm:
        """GRPO on the same rollouts: what the estimator alone changes is measured against it."""
        return Arm("grpo", self.rollout)


# ----------------------------------------------------------------------------------------------
# The command's options: arms, seed ranges, fixed learning rates
# ----------------------------------------------------------------------------------------------
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


def parse_seeds(text: str, option: str) -> tuple[int, ...]:
    """``"40-49"`` -> ``(40, ..., 49)``; ``"7"`` -> ``(7,)``.

    Raises:
        ValueError: one line naming ``option``, for anything but ``A-B`` with integers ``0 <= A <= B`` or one integer.
    """
    first, dash, last = text.strip().partition("-")
    try:
        a, b = int(first), int(last if dash else first)
    except ValueError:
        a = b = -1
    if a < 0 or b < a:
        raise ValueError(f"{option}: {text!r} is not a seed range A-B with integers 0 <= A <= B (e.g. 40-49).")
    return tuple(range(a, b + 1))


def parse_lrs(text: str, arms: tuple[Arm, ...]) -> dict[Arm, float]:
    """``"grpo+independent=5e-4,tempo+tree=1e-3"`` -> the fixed lr of each named arm (selection is skipped for them).

    Raises:
        ValueError: one line, for an entry that is not ``ARM=VALUE``, an arm not in ``arms``, a value that
            is not a positive number, or an arm named twice.
    """
    fixed: dict[Arm, float] = {}
    by_key = {a.key: a for a in arms}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        key, eq, value = (x.strip() for x in item.partition("="))
        if not eq:
            raise ValueError(f"--lr: {item!r} is not ARM=VALUE (e.g. grpo+independent=5e-4).")
        if key not in by_key:
            raise ValueError(f"--lr: {key!r} is not an arm of this study; its arms: {', '.join(by_key)}.")
        try:
            lr = float(value)
        except ValueError:
            lr = float("nan")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"--lr: {key}={value!r} is not a positive learning rate (e.g. {key}=5e-4).")
        if by_key[key] in fixed:
            raise ValueError(f"--lr: {key} is given twice.")
        fixed[by_key[key]] = lr
    return fixed


# ----------------------------------------------------------------------------------------------
# The protocol of one task
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """The fixed protocol of one task (docs/study-protocol.md, v2, 2026-12-07).

    Attributes:
        task: the demo task's name.
        steps: RL steps of every run (the budget a censored seed counts at).
        lr_grid: the learning rates every arm is tried at.
        target: mean reward to reach (trailing ``window``-step mean of the batch reward).
        selection_seeds: seeds that choose each arm's lr.
        eval_seeds: paired seeds every arm is evaluated on (disjoint from the selection seeds),
            reported in consecutive sets of :data:`SEED_SET` and pooled.
        window: steps in the trailing mean.
        arms: the arms the task runs (``estimator+rollout``; ``--arms`` replaces them).
        demo: other :class:`DemoConfig` settings (the demo's defaults otherwise).
    """

    task: str
    steps: int
    lr_grid: tuple[float, ...]
    target: float
    selection_seeds: tuple[int, ...] = (200, 201, 202, 203)
    eval_seeds: tuple[int, ...] = tuple(range(300, 320))
    window: int = 3
    arms: tuple[str, ...] = DEFAULT_ARMS
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

    def eval_sets(self) -> dict[str, tuple[int, ...]]:
        """The evaluation seeds in consecutive sets of :data:`SEED_SET`, named ``"A-B"``, then ``"pooled"``
        (all of them) when there is more than one set."""
        chunks = [self.eval_seeds[i : i + SEED_SET] for i in range(0, len(self.eval_seeds), SEED_SET)]
        sets = {f"{c[0]}-{c[-1]}" if len(c) > 1 else f"{c[0]}": c for c in chunks}
        return {**sets, "pooled": self.eval_seeds} if len(sets) > 1 else sets

    def check(self, needs_selection: bool = True) -> None:
        """Raise ``ValueError`` (one line) on a protocol that breaks its own rules.

        Args:
            needs_selection: some arm's lr is chosen on the selection seeds (not every arm fixed by ``--lr``).
        """
        if not self.eval_seeds:
            raise ValueError(f"{self.task}: give at least one evaluation seed.")
        shared = sorted(set(self.eval_seeds) & set(self.selection_seeds))
        if shared:
            raise ValueError(
                f"--eval-seeds and --selection-seeds overlap (seed {shared[0]}): an lr must be chosen on "
                f"seeds it is not evaluated on; give disjoint ranges."
            )
        if needs_selection and (not self.lr_grid or not self.selection_seeds):
            raise ValueError(f"{self.task}: the lr grid and the selection seeds must not be empty.")


PROTOCOLS: dict[str, Protocol] = {
    "rule": Protocol(task="rule", steps=150, lr_grid=(3e-4, 5e-4, 1e-3, 1.5e-3), target=0.4),
}

# --quick: the same code path in seconds (for tests), NOT A RESULT (said in every output).
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


def evaluation_lrs(arms: tuple[Arm, ...], picks: dict[Arm, float]) -> dict[Arm, tuple[float, ...]]:
    """The lrs each arm is evaluated at: its own pick, and the pick of every arm it meets on the same
    rollouts (a non-GRPO arm and GRPO on its rollouts each run at both picks), so every same-rollout
    comparison is made at each arm's best lr *and* at every lr the two share."""
    lrs: dict[Arm, set[float]] = {a: {picks[a]} for a in arms}
    for arm in arms:
        if arm.estimator != "grpo" and arm.peer in lrs:
            lrs[arm].add(picks[arm.peer])
            lrs[arm.peer].add(picks[arm])
    return {a: tuple(sorted(v)) for a, v in lrs.items()}


# ----------------------------------------------------------------------------------------------
# The machine a study ran on (float rounding differs across CPUs: results name theirs)
# ----------------------------------------------------------------------------------------------
def cpu_model_and_flags(cpuinfo: str) -> tuple[str | None, dict[str, bool]]:
    """The CPU model name and its vector-extension flags from the text of ``/proc/cpuinfo``."""
    model, flags = None, set()
    for line in cpuinfo.splitlines():
        name, _, value = (x.strip() for x in line.partition(":"))
        if name == "model name" and model is None:
            model = value
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd", "sve")
    return model, {f: f in flags for f in wanted}


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine_info(jobs: int) -> dict[str, Any]:
    """What a study's figures depend on besides its seeds: torch, the CPU, the threads, the code's commit."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    model, flags = cpu_model_and_flags(cpuinfo)
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": model or platform.processor() or None,
        "cpu_flags": flags,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "jobs": jobs,
        "torch_threads": 1,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
    }


# ----------------------------------------------------------------------------------------------
# Summaries and comparisons (pure: records in, numbers out)
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


def _summary(records: list[dict[str, Any]], proto: Protocol) -> dict[str, Any]:
    """steps / tokens to target (None where not reached) and final reward, over the evaluation seeds in order."""
    by_seed = {r["seed"]: r for r in records}
    ordered = [by_seed[s] for s in proto.eval_seeds]
    reached = [time_to_target(r["reward"], r["generated_tokens"], proto.target, proto.window) for r in ordered]
    return {
        "seeds": list(proto.eval_seeds),
        "steps_to_target": [None if x is None else x[0] for x in reached],
        "generated_tokens_to_target": [None if x is None else x[1] for x in reached],
        "final_reward": [float(np.mean(r["reward"][-FINAL_WINDOW:])) for r in ordered],
        "censored": sum(x is None for x in reached),
        "budget_steps": [len(r["reward"]) for r in ordered],
        "budget_tokens": [int(sum(r["generated_tokens"])) for r in ordered],
    }


def _ratios(arm: dict[str, Any], reference: dict[str, Any], sets: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Paired ratios reference / arm of steps and generated tokens to target (censored at the budget),
    on each seed set: ``{SET: {"steps": {"ratio", "low", "high"}, "tokens": {...}, "censored": [ref, arm]}}``."""
    out: dict[str, Any] = {}
    for name, seeds in sets.items():
        idx = [arm["seeds"].index(s) for s in seeds]
        entry: dict[str, Any] = {}
        for metric, key, budget in (
            ("steps", "steps_to_target", "budget_steps"),
            ("tokens", "generated_tokens_to_target", "budget_tokens"),
        ):
            ref = censored_costs([reference[key][i] for i in idx], [reference[budget][i] for i in idx])
            entry[metric] = paired_ratio(ref, censored_costs([arm[key][i] for i in idx], [arm[budget][i] for i in idx]))
        entry["censored"] = [
            sum(reference["steps_to_target"][i] is None for i in idx),
            sum(arm["steps_to_target"][i] is None for i in idx),
        ]
        out[name] = entry
    return out


def comparisons(
    arms: tuple[Arm, ...],
    picks: dict[Arm, float],
    evaluated: dict[str, dict[str, dict[str, Any]]],
    sets: dict[str, tuple[int, ...]],
) -> list[dict[str, Any]]:
    """Every comparison the protocol reports, each as ``reference`` (arm, lr) against ``arm`` (arm, lr)
    with its ratios on every seed set (> 1: ``arm`` needs fewer steps or tokens than ``reference``).

    Kinds: ``vs_baseline`` (each arm at its lr against ``grpo+independent`` at its lr);
    ``same_rollout`` (each non-GRPO arm against GRPO on the same rollouts, both at their own lrs:
    best against best); ``same_rollout_shared_lr`` (the same pair, both at one lr, for each lr either
    of them picked, when their picks differ); ``tree_vs_independent`` (each estimator's tree arm
    against its independent arm, both at their own lrs).
    """
    keyed = {a.key: a for a in arms}
    out: list[dict[str, Any]] = []

    def add(kind: str, ref: Arm, ref_lr: float, arm: Arm, lr: float) -> None:
        ratios = _ratios(evaluated[arm.key][f"{lr:g}"], evaluated[ref.key][f"{ref_lr:g}"], sets)
        out.append({"kind": kind, "reference": ref.key, "reference_lr": ref_lr, "arm": arm.key, "lr": lr, **ratios})

    base = keyed[BASELINE]
    for arm in arms[1:]:
        add("vs_baseline", base, picks[base], arm, picks[arm])
    for arm in arms:
        if arm.estimator != "grpo" and arm.peer in picks:
            add("same_rollout", arm.peer, picks[arm.peer], arm, picks[arm])
            if picks[arm] != picks[arm.peer]:  # (when they agree, best against best is the shared-lr comparison)
                for lr in sorted({picks[arm], picks[arm.peer]}):
                    add("same_rollout_shared_lr", arm.peer, lr, arm, lr)
    for arm in arms:
        independent = Arm(arm.estimator, "independent")
        if arm.rollout == "tree" and independent in picks:
            add("tree_vs_independent", independent, picks[independent], arm, picks[arm])
    return out


def verdicts(found: list[dict[str, Any]], sets: dict[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    """The protocol's decision rule (docs/study-protocol.md), per non-GRPO arm: its credit helps only if
    it needs fewer steps than GRPO on the same rollouts with the 95 % interval above 1 on *every* seed
    set best against best, and with the pooled interval above 1 at every shared lr.

    Returns:
        ``{ARM: {"established": bool, "failed": [why, ...]}}`` for every arm with a ``same_rollout`` comparison.
    """
    own = [s for s in sets if s != "pooled"]
    pooled = "pooled" if "pooled" in sets else own[0]
    out: dict[str, dict[str, Any]] = {}
    for best in (c for c in found if c["kind"] == "same_rollout"):
        failed = [
            f"best against best on seeds {s}: lower bound {best[s]['steps']['low']:.2f}"
            for s in own
            if best[s]["steps"]["low"] <= 1.0
        ]
        failed += [
            f"both at lr {c['lr']:g}, seeds {pooled}: lower bound {c[pooled]['steps']['low']:.2f}"
            for c in found
            if c["kind"] == "same_rollout_shared_lr" and c["arm"] == best["arm"] and c[pooled]["steps"]["low"] <= 1.0
        ]
        out[best["arm"]] = {"established": not failed, "failed": failed}
    return out


def tree_step(rewards: list[float]) -> int:
    """The step whose tree page to draw: the one whose batch reward is nearest 0.5, where the rewards of a
    group vary most (TEMPO's credit is visible only there); the earliest such step; the middle step when
    every batch scored all 0 or all 1."""
    r = np.asarray(rewards, dtype=np.float64)
    mixed = np.flatnonzero((r > 0) & (r < 1))
    if mixed.size == 0:
        return max(1, len(r) // 2)
    return int(mixed[np.argmin(np.abs(r[mixed] - 0.5))]) + 1


# ----------------------------------------------------------------------------------------------
# Running the protocol of one task
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One run of the study: what a worker process needs to train it."""

    proto: Protocol
    arm: Arm
    lr: float
    seed: int
    phase: str  # "selection", "evaluation", or "tree" (a rerun up to the step its page shows)
    warm_state: dict[str, torch.Tensor]
    tree_step: int | None = None  # draw this step's prefix trees (and stop there)


def train_job(job: Job) -> tuple[dict[str, Any], str | None]:
    """Train one run with the demo's :func:`~tempo_verl.demo.loop.train` (one torch thread).

    A job with a ``tree_step`` trains up to that step only (a seed fixes every step, so the first steps
    of a run are those of its full-length twin) and returns that step's tree page.

    Returns:
        the run's record, and the tree page (HTML) when one was asked for.
    """
    torch.set_num_threads(1)
    proto = job.proto if job.tree_step is None else replace(job.proto, steps=job.tree_step)
    cfg = proto.config(job.arm, job.lr)
    task = cfg.make_task()
    tokenizer = build_tokenizer(task)
    result = train(job.arm.estimator, job.seed, cfg, job.warm_state, tokenizer, task, keep_tree_at=job.tree_step)
    page = None
    if result.tree is not None:
        reward = result.rewards[job.tree_step - 1]
        title = (
            f"tempo-verl study: {job.proto.task}, {job.arm.key} (lr {job.lr:g}, seed {job.seed}), "
            f"step {job.tree_step} (batch reward {reward:.2f})"
        )
        page = tree_html(result.tree, tokenizer, title)
    return _run_record(result, job.arm, job.lr, job.phase), page


def run_task(
    proto: Protocol,
    arms: tuple[Arm, ...],
    fixed: dict[Arm, float] | None = None,
    pool: Executor | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """Run one task's protocol for ``arms`` (settings already checked by :func:`run_study`); return its
    ``study.json`` entry, every run's record, and per arm its tree page (HTML).

    Args:
        fixed: arms whose lr is given (``--lr``): no selection runs for them.
        pool: runs go to these worker processes when given (every run is seeded on its own, so the
            results do not depend on how many workers there are); in this process otherwise.
    """
    fixed = {a: lr for a, lr in (fixed or {}).items() if a in arms}
    ready: Prepared = prepare(proto.config(arms[0], (proto.lr_grid or (*fixed.values(),))[0]))
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

    # 1. Selection: every arm without a fixed lr, at every lr of the grid, on every selection seed.
    chosen = [a for a in arms if a not in fixed]
    selected = run(
        [
            Job(proto, a, lr, s, "selection", ready.warm_state)
            for a in chosen
            for lr in proto.lr_grid
            for s in proto.selection_seeds
        ]
    )
    selection: dict[str, dict[str, float]] = {}
    selection_per_seed: dict[str, dict[str, list[float]]] = {}
    picks: dict[Arm, float] = dict(fixed)
    for arm in chosen:
        curves = {lr: [r for r in selected if r["arm"] == arm.key and r["lr"] == lr] for lr in proto.lr_grid}
        scores = {lr: selection_score([r["reward"] for r in rs]) for lr, rs in curves.items()}
        selection[arm.key] = {f"{lr:g}": score for lr, score in scores.items()}
        selection_per_seed[arm.key] = {
            f"{lr:g}": [selection_score([r["reward"]]) for r in rs] for lr, rs in curves.items()
        }
        picks[arm] = max(proto.lr_grid, key=lambda lr: (scores[lr], -lr))  # ties: the smaller lr

    # 2. Evaluation: every arm at its own lr and at its same-rollout partners' lrs, on every evaluation seed.
    lrs = evaluation_lrs(arms, picks)
    evaluated_runs = run(
        [Job(proto, a, lr, s, "evaluation", ready.warm_state) for a in arms for lr in lrs[a] for s in proto.eval_seeds]
    )
    evaluated = {
        a.key: {
            f"{lr:g}": _summary([r for r in evaluated_runs if r["arm"] == a.key and r["lr"] == lr], proto)
            for lr in lrs[a]
        }
        for a in arms
    }

    # 3. Tree pages: each arm's first evaluation seed at its lr, at the step where rewards vary most.
    pick_of = {a.key: picks[a] for a in arms}
    first = {
        r["arm"]: r["reward"]
        for r in evaluated_runs
        if r["seed"] == proto.eval_seeds[0] and r["lr"] == pick_of[r["arm"]]
    }
    seed = proto.eval_seeds[0]
    run([Job(proto, a, picks[a], seed, "tree", ready.warm_state, tree_step(first[a.key])) for a in arms])

    sets = proto.eval_sets()
    found = comparisons(arms, picks, evaluated, sets)
    entry = {
        "task": proto.task,
        "seeds": {"selection": list(proto.selection_seeds) if chosen else [], "evaluation": list(proto.eval_seeds)},
        "seed_sets": {name: list(seeds) for name, seeds in sets.items()},
        "lr_grid": list(proto.lr_grid),
        "steps": proto.steps,
        "target": proto.target,
        "target_window": proto.window,
        "baseline": BASELINE,
        "selection": selection,
        "selection_per_seed": selection_per_seed,
        "lr_fixed": {a.key: lr for a, lr in fixed.items()},
        "arms": {a.key: {"lr": picks[a], **evaluated[a.key][f"{picks[a]:g}"]} for a in arms},
        "evaluated": evaluated,
        "comparisons": found,
        "verdicts": verdicts(found, sets),
        "warmup_time_s": ready.warmup_time_s,
    }
    return entry, records, pages


def run_study(
    tasks: tuple[str, ...],
    out: Path,
    arms: tuple[Arm, ...] | None = None,
    quick: bool = False,
    jobs: int = 1,
    log: Callable[[str], None] = print,
    eval_seeds: tuple[int, ...] | None = None,
    selection_seeds: tuple[int, ...] | None = None,
    fixed: dict[Arm, float] | None = None,
) -> dict[str, Any]:
    """Run the protocol of every task in ``tasks``; write study.json, runs.json, study.png and study.txt.

    Args:
        arms: the arms of every task (``--arms``); None: each task's protocol arms.
        jobs: worker processes (one torch thread each); 1 runs everything in this process.
        eval_seeds, selection_seeds: replace every task's protocol seeds (``--eval-seeds``, ``--selection-seeds``).
        fixed: arms whose lr is given (``--lr``), not selected.

    Raises:
        ValueError: one line, before any training, for an unknown task, arm or estimator, an arm
            whose rollout this build lacks, overlapping seed sets, an ``out`` another study is writing
            to, or a folder of the user's.
    """
    unknown = [t for t in tasks if t not in PROTOCOLS]
    if unknown:
        raise ValueError(f"--task: unknown task {unknown[0]!r}; the study's tasks: {', '.join(PROTOCOLS)}.")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}.")
    fixed = fixed or {}
    override = {k: v for k, v in (("eval_seeds", eval_seeds), ("selection_seeds", selection_seeds)) if v is not None}
    protocols = [replace(PROTOCOLS[t], **{**(QUICK if quick else {}), **override}) for t in tasks]
    task_arms = {p.task: arms or parse_arms(",".join(p.arms)) for p in protocols}
    unused = [a.key for a in fixed if not any(a in task_arms[p.task] for p in protocols)]
    if unused:
        raise ValueError(f"--lr: {unused[0]!r} is not an arm of this study (see --arms and the protocol's arms).")
    for proto in protocols:  # every setting of every task and arm, before anything runs
        proto.check(needs_selection=any(a not in fixed for a in task_arms[proto.task]))
        for arm in task_arms[proto.task]:
            cfg = proto.config(arm, fixed.get(arm, (proto.lr_grid or (1e-3,))[0]))
            cfg.check()
            check_estimators(cfg.estimators, cfg.algorithm_config())
    if quick:
        log(NOT_A_RESULT)
    started = time.perf_counter()
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    with atomic_output_dir(out) as stage:
        study: dict[str, Any] = {"tasks": {}, "quick": quick}
        if quick:
            study["not_a_result"] = NOT_A_RESULT
        every_run: list[dict[str, Any]] = []
        try:
            for proto in protocols:
                entry, records, pages = run_task(proto, task_arms[proto.task], fixed, pool, log)
                study["tasks"][proto.task] = entry
                every_run += [{"task": proto.task, **r} for r in records]
                for key, page in pages.items():
                    (stage / f"trees-{proto.task}-{key}.html").write_text(page, encoding="utf-8")
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        study["wall_time_s"] = time.perf_counter() - started
        study["machine"] = machine_info(jobs)
        text = table(study)
        (stage / "study.txt").write_text(text, encoding="utf-8")
        (stage / "runs.json").write_text(json.dumps(every_run) + "\n", encoding="utf-8")
        plot(study, every_run, stage / "study.png")
        # One task: its entry at the top level (task, seeds, lr_grid, arms, ...); several: under "tasks".
        payload = study if len(protocols) > 1 else {**study.pop("tasks")[protocols[0].task], **study}
        (stage / "study.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    log(text)
    return study


def study_command(
    task: str,
    out: str,
    arms: str | None,
    quick: bool,
    jobs: int,
    eval_seeds: str | None = None,
    selection_seeds: str | None = None,
    lrs: str | None = None,
) -> int:
    """``tempo-verl study``: run, print the tables. Returns 0, or 2 after one line on stderr (bad option, failure)."""
    try:
        tasks = tuple(PROTOCOLS) if task == "all" else (task,)
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        parsed = parse_arms(arms) if arms else None
        every = dict.fromkeys(a for t in tasks if t in PROTOCOLS for a in parse_arms(",".join(PROTOCOLS[t].arms)))
        run_study(
            tasks,
            output_folder(out),
            parsed,
            quick=quick,
            jobs=jobs,
            log=log,
            eval_seeds=None if eval_seeds is None else parse_seeds(eval_seeds, "--eval-seeds"),
            selection_seeds=None if selection_seeds is None else parse_seeds(selection_seeds, "--selection-seeds"),
            fixed=parse_lrs(lrs or "", parsed or tuple(every)),
        )
    except OutputFolderError as err:  # ., /, "" or a mount point: before any work
        print(f"tempo-verl study: error: --out {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as err:
        print(f"tempo-verl study: error: {err}", file=sys.stderr)
        return 2
    return 0
