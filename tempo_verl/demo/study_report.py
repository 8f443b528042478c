"""The study's report: the plain-text tables and the figure."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NOT_A_RESULT", "plot", "table", "title"]

#: What every output of ``--quick`` says first: it checks the machinery, its numbers mean nothing.
NOT_A_RESULT = (
    "NOT A RESULT: --quick checks the machinery (a 1-layer model, 4 prompts x 4 responses, 3 steps); "
    "its rewards stay near 0 and its ratios mean nothing. Run without --quick for the protocol."
)

KINDS = {
    "vs_baseline": "against the baseline",
    "same_rollout": "GRPO vs the estimator on the same rollouts, each at its own lr",
    "same_rollout_shared_lr": "GRPO vs the estimator on the same rollouts, both at one lr",
    "tree_vs_independent": "tree vs independent rollouts, same estimator",
}


SHORT = {
    "vs_baseline": "vs baseline",
    "same_rollout": "estimator, own lrs",
    "same_rollout_shared_lr": "estimator, one lr",
    "tree_vs_independent": "tree vs independent",
}


def _fmt_ratio(r: dict[str, float]) -> str:
    return f"{r['ratio']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]"


def _median_reached(values: list[int | None]) -> str:
    """Median with never-reached seeds counted as later than any reached one ('>budget' when the median is one)."""
    big = float("inf")
    med = float(np.median([big if v is None else float(v) for v in values]))
    return ">budget" if med == big else f"{med:g}"


def _label(c: dict[str, Any]) -> str:
    """``reference@lr / arm@lr``: what a comparison divides."""
    return f"{c['reference']}@{c['reference_lr']:g} / {c['arm']}@{c['lr']:g}"


def title(study: dict[str, Any]) -> str:
    """The study's headline: what it is, and for --quick that it is not a result."""
    head = f"tempo-verl study: {', '.join(study['tasks'])}"
    return f"{NOT_A_RESULT}\n{head}" if study.get("quick") else head


def table(study: dict[str, Any]) -> str:
    """The plain-text tables: per task, the selection grid, each evaluated (arm, lr), then every comparison
    on each seed set and pooled."""
    lines = [title(study), ""]
    for name, entry in study["tasks"].items():
        sets = list(entry["seed_sets"])
        n = len(entry["seeds"]["evaluation"])
        lines.append(
            f"task {name}: {n} paired evaluation seeds (sets: {', '.join(sets)}), {entry['steps']} steps, "
            f"target {entry['target']:g} (trailing {entry['target_window']}-step mean)"
        )
        if entry["selection"]:
            k = len(entry["seeds"]["selection"])
            lines.append(f"selection: mean reward over all steps, mean [min, max] over {k} selection seeds")
            grid = entry["lr_grid"]
            lines.append(f"{'arm':<20} " + " ".join(f"{lr:>18g}" for lr in grid) + "   pick")
            for key, scores in entry["selection"].items():
                per_seed = entry["selection_per_seed"][key]
                cells = [
                    f"{scores[f'{lr:g}']:.3f} [{min(per_seed[f'{lr:g}']):.2f}, {max(per_seed[f'{lr:g}']):.2f}]"
                    for lr in grid
                ]
                lines.append(f"{key:<20} " + " ".join(f"{c:>18}" for c in cells) + f"   {entry['arms'][key]['lr']:g}")
        for key, lr in entry["lr_fixed"].items():
            lines.append(f"{key}: lr {lr:g} fixed by --lr (no selection)")
        lines.append(f"evaluation, over all {n} seeds:")
        lines.append(f"{'arm':<20} {'lr':>7} {'reached':>8} {'steps med':>9} {'tokens med':>10} {'final':>6}")
        for key, runs in entry["evaluated"].items():
            for lr, arm in runs.items():
                mark = "*" if float(lr) == entry["arms"][key]["lr"] else " "
                reached = f"{n - arm['censored']}/{n}"
                lines.append(
                    f"{key:<20} {lr:>6}{mark} {reached:>8} "
                    f"{_median_reached(arm['steps_to_target']):>9} "
                    f"{_median_reached(arm['generated_tokens_to_target']):>10} {np.mean(arm['final_reward']):>6.2f}"
                )
        lines.append("(* = the arm's own lr)")
        lines.append("comparisons: reference / arm, > 1 = the arm needs fewer; 95 % paired bootstrap intervals")
        lines.append(f"{'comparison':<52} {'':<6} " + " ".join(f"{s:>24}" for s in sets))
        for kind, words in KINDS.items():
            rows = [c for c in entry["comparisons"] if c["kind"] == kind]
            if rows:
                lines.append(f"- {words}")
            for c in rows:
                for metric in ("steps", "tokens"):
                    cells = " ".join(f"{_fmt_ratio(c[s][metric]):>24}" for s in sets)
                    lines.append(f"  {_label(c) if metric == 'steps' else '':<50} {metric:<6} {cells}")
        for key, verdict in entry["verdicts"].items():
            lines.append(
                f"decision rule (docs/study-protocol.md), {key} against GRPO on the same rollouts: "
                + ("established" if verdict["established"] else "NOT established: " + "; ".join(verdict["failed"]))
            )
        lines.append("")
    lines.append("never-reaching seeds count at their budget (all steps / all tokens) in the ratios; see docs/demo.md")
    return "\n".join(lines) + "\n"


def plot(study: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """Two rows per task: per rollout, the reward curves of its arms (median and 25-75 % band over the
    evaluation seeds, each arm at its own lr: two arms a panel, readable after the rise); then the steps
    and the tokens ratios of every distinct comparison, one marker per seed set and a diamond pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#444444", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    tasks = list(study["tasks"])
    fig, axes = plt.subplots(2 * len(tasks), 2, figsize=(16, 10.5 * len(tasks)), dpi=100, squeeze=False)
    for t, name in enumerate(tasks):
        entry = study["tasks"][name]
        keys = list(entry["arms"])
        colour = {key: colours[i % len(colours)] for i, key in enumerate(keys)}
        n = len(entry["seeds"]["evaluation"])
        for ax, rollout in zip(axes[2 * t], ("independent", "tree"), strict=True):
            if not any(k.endswith(f"+{rollout}") for k in keys):
                ax.set_axis_off()
                ax.set_title(f"{name}: no arm with {rollout} rollouts", fontsize=10)
                continue
            for key in (k for k in keys if k.endswith(f"+{rollout}")):
                lr = entry["arms"][key]["lr"]
                curves = np.array(
                    [
                        r["reward"]
                        for r in records
                        if r["task"] == name and r["arm"] == key and r["phase"] == "evaluation" and r["lr"] == lr
                    ]
                )
                steps = np.arange(1, curves.shape[1] + 1)
                low, mid, high = np.percentile(curves, [25, 50, 75], axis=0)
                ax.fill_between(steps, low, high, color=colour[key], alpha=0.18, lw=0)
                ax.plot(steps, mid, color=colour[key], lw=2, label=f"{key} (lr {lr:g})")
            ax.axhline(entry["target"], color="black", ls="--", lw=1)
            ax.set(xlabel="RL step", ylabel="batch reward: median, 25-75 % band", ylim=(-0.02, 1.02))
            ax.set_title(f"{name}, {rollout} rollouts: {n} paired seeds, each arm at its lr", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
        sets = list(entry["seed_sets"])
        rows: dict[str, list[str]] = {}  # one row per distinct comparison, with every kind it answers
        for c in entry["comparisons"]:
            rows.setdefault(_label(c), []).append(c["kind"])
        first = {_label(c): c for c in reversed(entry["comparisons"])}
        for bx, metric in zip(axes[2 * t + 1], ("steps", "tokens"), strict=True):
            for i, label in enumerate(rows):
                for j, s in enumerate(sets):
                    r = first[label][s][metric]
                    pooled = s == "pooled"
                    bx.errorbar(
                        r["ratio"],
                        i + 0.22 * (j - (len(sets) - 1) / 2),
                        xerr=[[r["ratio"] - r["low"]], [r["high"] - r["ratio"]]],
                        fmt="D" if pooled else "o",
                        color="black" if pooled else colours[(j + 1) % len(colours)],
                        capsize=2,
                        ms=4,
                        label=f"seeds {s}" if i == 0 else None,
                    )
            bx.axvline(1.0, color="black", lw=1)
            ticks = [f"{label}\n({', '.join(SHORT[k] for k in kinds)})" for label, kinds in rows.items()]
            bx.set_yticks(range(len(rows)), ticks, fontsize=7)
            bx.invert_yaxis()
            bx.set(xlabel="reference / arm (> 1: the arm needs fewer), 95 % paired bootstrap CI")
            bx.set_title(f"{name}: {metric} to target, per seed set and pooled", fontsize=10)
            bx.grid(alpha=0.3, axis="x")
            bx.legend(fontsize=7, loc="best")
    headline = title(study)
    wrapped = "\n".join(textwrap.fill(line, 130) for line in headline.splitlines())
    fig.suptitle(wrapped, fontsize=12, color="red" if study.get("quick") else "black")
    fig.tight_layout()
    fig.savefig(path, metadata={"Title": headline.replace("\n", " ")})
    plt.close(fig)
