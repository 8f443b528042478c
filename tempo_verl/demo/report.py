"""The demo's outputs: ``summary.json``, ``curves.png``, ``tree.html`` (with its dump ``trees/`` and the
``tokenizer/`` that decodes it), ``metrics.jsonl``, ``timing.json``."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tempo_verl.demo.loop import DemoResult, RunResult, TreeSnapshot

__all__ = [
    "SHARED_LR_NOTE",
    "DemoReport",
    "steps_to_target",
    "summarize",
    "tree_html",
    "tree_records",
    "write_outputs",
    "write_trees",
]


def steps_to_target(curve: list[float], target: float, window: int) -> int | None:
    """The first step ``s`` (1-based) whose trailing mean reward over steps ``s-window+1..s`` reaches ``target``.

    The first ``window - 1`` steps average what there is. None when the curve never gets there.
    """
    for s in range(1, len(curve) + 1):
        recent = curve[max(0, s - window) : s]
        if sum(recent) / len(recent) >= target:
            return s
    return None


#: What summary.json and the console say about the learning rate.
SHARED_LR_NOTE = (
    "one learning rate shared by every estimator, which favours the one with the larger effective step; "
    "`tempo-verl study` gives each arm its own best learning rate"
)


def summarize(result: DemoResult) -> dict[str, Any]:
    """``summary.json``: the run's settings (task, rollout, target, steps, the one shared learning rate),
    the median steps to target per estimator and the ratio ``grpo / tempo`` of those medians, and, per
    estimator, seeds, steps to target (None where a seed never reached it), final reward, the reward
    curves, the mean tokens generated per step and the tokens generated up to the target step (None
    where not reached). docs/demo.md ("Outputs") lists every field."""
    cfg = result.cfg
    estimators: dict[str, Any] = {}
    for name in cfg.estimators:
        runs = [r for r in result.runs if r.estimator == name]
        reached = [steps_to_target(r.rewards, cfg.target, cfg.target_window) for r in runs]
        estimators[name] = {
            "seeds": [r.seed for r in runs],
            "steps_to_target": reached,
            "final_reward": [r.rewards[-1] for r in runs],
            "reward_curve": [list(r.rewards) for r in runs],
            "generated_tokens_per_step": [statistics.fmean(r.generated_tokens) for r in runs],
            "generated_tokens_to_target": [
                None if s is None else int(sum(r.generated_tokens[:s])) for r, s in zip(runs, reached, strict=True)
            ],
        }
    median_steps = {name: _median_or_none(est["steps_to_target"]) for name, est in estimators.items()}
    tempo, grpo = median_steps.get("tempo"), median_steps.get("grpo")
    return {
        "task": cfg.task,
        "rollout": cfg.rollout,
        "target": float(cfg.target),
        "target_window": int(cfg.target_window),
        "steps": int(cfg.steps),
        "lr": float(cfg.lr),
        "lr_note": SHARED_LR_NOTE,
        "median_steps_to_target": median_steps,
        "grpo_over_tempo_median_steps": None if tempo is None or grpo is None else grpo / tempo,
        "estimators": estimators,
    }


def _median_or_none(values: list[int | None]) -> float | None:
    """Median steps to target, counting a seed that never got there as later than any that did;
    None when the median itself is such a seed."""
    big = float("inf")
    med = statistics.median([big if v is None else float(v) for v in values])
    return None if med == big else med


def timing(runs: list[RunResult]) -> dict[str, float]:
    """Median wall time per step, median estimator time per step and the estimator's share of the step."""
    steps = [log["step_time_s"] for r in runs for log in r.step_logs]
    est = [log["estimator_time_s"] for r in runs for log in r.step_logs]
    return {
        "step_time_s_median": statistics.median(steps),
        "estimator_time_s_median": statistics.median(est),
        "estimator_share": sum(est) / sum(steps),
    }


@dataclass
class DemoReport:
    """What the command prints and the docs quote."""

    summary: dict[str, Any]
    median_steps: dict[str, float | None]
    timing: dict[str, dict[str, float]]
    files: dict[str, Path]


def plot_curves(summary: dict[str, Any], path: Path, window: int) -> None:
    """Mean reward per step for each estimator: one thin line per seed, the median bold, the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, (name, est) in enumerate(summary["estimators"].items()):
        colour = colours[i % len(colours)]
        curves = est["reward_curve"]
        steps = range(1, len(curves[0]) + 1)
        for curve in curves:
            ax.plot(steps, curve, color=colour, lw=0.7, alpha=0.35)
        median = [statistics.median(c[t] for c in curves) for t in range(len(curves[0]))]
        med_steps = _median_or_none(est["steps_to_target"])
        reached = "not reached" if med_steps is None else f"{med_steps:g}"
        label = f"{name}: median of {len(curves)} seeds (steps to target: {reached})"
        ax.plot(steps, median, color=colour, lw=2.4, label=label)
    ax.axhline(summary["target"], color="black", ls="--", lw=1.0, label=f"target {summary['target']:g}")
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean reward of the step's batch")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(1, summary["steps"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"tempo-verl demo: {summary['task']} task, one lr ({summary['lr']:g}) for every estimator "
        f"(steps to target: trailing {window}-step mean)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def tree_records(snap: TreeSnapshot, max_groups: int = 8) -> list[dict[str, Any]]:
    """The ``tempo-tree/1`` records of a kept step's groups, each with its prompt (``"prompt"``)."""
    from tempo_verl.trees.records import group_records

    records = group_records(snap.forest, snap.responses, snap.response_mask, snap.uids, snap.step, max_groups)
    for record in records:
        record["prompt"] = snap.prompts.get(str(record["uid"]), "")
    return records


def tree_html(snap: TreeSnapshot, tokenizer: Any, title: str, max_groups: int = 8) -> str:
    """The tree page of a kept step's groups (the tree command's renderer), with each group's prompt."""
    from tempo_verl.trees.render import render_html

    return render_html(tree_records(snap, max_groups), tokenizer=tokenizer, title=title)


def write_trees(result: DemoResult, out: Path, max_groups: int = 8) -> dict[str, Path]:
    """The kept step's groups three ways: ``tree.html``, the same groups as a ``tempo-tree/1`` dump in
    ``trees/`` (what ``tempo-verl tree`` reads, with each group's prompt) and the task's tokenizer in
    ``tokenizer/`` (its ``--tokenizer``). Empty when no step was kept."""
    from tempo_verl.trees.format import dump_file_name
    from tempo_verl.trees.render import render_html
    from tempo_verl.trees.writer import write_records

    run = next((r for r in result.runs if r.tree is not None), None)
    if run is None or run.tree is None:
        return {}
    snap = run.tree
    records = tree_records(snap, max_groups)
    title = f"tempo-verl demo: prefix trees at step {snap.step} ({run.estimator}, seed {run.seed})"
    files = {"tree": out / "tree.html", "trees": out / "trees", "tokenizer": out / "tokenizer"}
    files["tree"].write_text(render_html(records, tokenizer=result.tokenizer, title=title), encoding="utf-8")
    write_records(files["trees"], dump_file_name(snap.step), records)
    result.tokenizer.save_pretrained(files["tokenizer"])
    return files


def write_outputs(result: DemoResult, out: Path) -> DemoReport:
    """Write every output into ``out`` and return what the command prints."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = result.cfg
    summary = summarize(result)
    files = {
        "summary": out / "summary.json",
        "curves": out / "curves.png",
        "metrics": out / "metrics.jsonl",
        "timing": out / "timing.json",
    }
    files["summary"].write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot_curves(summary, files["curves"], cfg.target_window)
    files.update(write_trees(result, out))
    with files["metrics"].open("w", encoding="utf-8") as fh:
        for run in result.runs:
            for log in run.step_logs:
                fh.write(json.dumps({"estimator": run.estimator, "seed": run.seed, **log}) + "\n")
    times = {name: timing([r for r in result.runs if r.estimator == name]) for name in cfg.estimators}
    times_out = {"warmup_time_s": result.warmup_time_s, "device": cfg.device, "estimators": times}
    files["timing"].write_text(json.dumps(times_out, indent=1) + "\n", encoding="utf-8")
    return DemoReport(summary, summary["median_steps_to_target"], times, files)
