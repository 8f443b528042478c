"""The study's report: the plain-text table and the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot", "table"]


def _fmt_ratio(r: dict[str, float]) -> str:
    return f"{r['ratio']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]"


def _median_reached(values: list[int | None]) -> str:
    """Median with never-reached seeds counted as later than any reached one ('>budget' when the median is one)."""
    big = float("inf")
    med = float(np.median([big if v is None else float(v) for v in values]))
    return ">budget" if med == big else f"{med:g}"


def table(study: dict[str, Any]) -> str:
    """The plain-text table: one block per task, one row per arm."""
    lines = []
    header = (
        f"{'arm':<20} {'lr':>7} {'reached':>8} {'steps med':>9} {'tokens med':>10} {'final':>6}  "
        f"{'steps ratio [95% CI]':<24} {'tokens ratio [95% CI]':<24} {'steps vs grpo, same rollout':<24}"
    )
    for name, entry in study["tasks"].items():
        n = len(entry["seeds"]["evaluation"])
        lines.append(
            f"task {name}: {n} paired evaluation seeds, {entry['steps']} steps, target {entry['target']:g} "
            f"(trailing {entry['target_window']}-step mean); ratios = {entry['baseline']} / arm, > 1 = fewer"
        )
        lines.append(header)
        for key, arm in entry["arms"].items():
            reached = f"{n - arm['censored']}/{n}"
            lines.append(
                f"{key:<20} {arm['lr']:>7g} {reached:>8} {_median_reached(arm['steps_to_target']):>9} "
                f"{_median_reached(arm['generated_tokens_to_target']):>10} {np.mean(arm['final_reward']):>6.2f}  "
                f"{_fmt_ratio(arm['vs_baseline']['steps']):<24} {_fmt_ratio(arm['vs_baseline']['tokens']):<24} "
                f"{_fmt_ratio(arm['vs_grpo_same_rollout']['steps']) if 'vs_grpo_same_rollout' in arm else '-':<24}"
            )
        lines.append("")
    lines.append("never-reaching seeds count at their budget (all steps / all tokens) in the ratios; see docs/demo.md")
    return "\n".join(lines) + "\n"


def plot(study: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """One row per task: mean reward per step with a 25-75 % band per arm (evaluation runs), then the ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#444444", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    tasks = list(study["tasks"])
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.2 * len(tasks)), dpi=110, squeeze=False)
    for row, name in enumerate(tasks):
        entry = study["tasks"][name]
        ax, bx = axes[row]
        keys = list(entry["arms"])
        for i, key in enumerate(keys):
            curves = np.array(
                [r["reward"] for r in records if r["task"] == name and r["arm"] == key and r["phase"] == "evaluation"]
            )
            steps = np.arange(1, curves.shape[1] + 1)
            low, mid, high = np.percentile(curves, [25, 50, 75], axis=0)
            colour = colours[i % len(colours)]
            ax.fill_between(steps, low, high, color=colour, alpha=0.18, lw=0)
            ax.plot(steps, mid, color=colour, lw=2, label=f"{key} (lr {entry['arms'][key]['lr']:g})")
        ax.axhline(entry["target"], color="black", ls="--", lw=1)
        ax.set(xlabel="RL step", ylabel="batch reward: median, 25-75 % band", ylim=(-0.02, 1.02))
        n = len(entry["seeds"]["evaluation"])
        ax.set_title(f"{name}: {n} paired seeds, each arm at its selected lr", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        for j, metric in enumerate(("steps", "tokens")):
            for i, key in enumerate(keys):
                r = entry["arms"][key]["vs_baseline"][metric]
                y = i + (0.18 if metric == "steps" else -0.18)
                bx.errorbar(
                    r["ratio"],
                    y,
                    xerr=[[r["ratio"] - r["low"]], [r["high"] - r["ratio"]]],
                    fmt="o s"[j * 2],
                    color=colours[i % len(colours)],
                    capsize=3,
                )
                bx.annotate(_fmt_ratio(r), (r["ratio"], y), textcoords="offset points", xytext=(0, 5), fontsize=7)
        bx.axvline(1.0, color="black", lw=1)
        bx.set_yticks(range(len(keys)), keys, fontsize=8)
        bx.set(xlabel=f"{entry['baseline']} / arm (> 1: fewer than the baseline), 95 % bootstrap CI")
        bx.set_title("o: steps to target, s: generated tokens to target", fontsize=10)
        bx.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
