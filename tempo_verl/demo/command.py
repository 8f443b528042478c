"""What ``tempo-verl demo`` does: parse the options, run the demo under a progress bar, print the results."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

__all__ = ["demo_command"]

#: One line per output, as the command lists them (docs/demo.md, "Outputs", says more).
_WHAT = {
    "summary": "settings, steps to target, final rewards, reward curves",
    "curves": "mean reward per step, per estimator and seed",
    "metrics": "one line per estimator, seed and step: reward, loss, tempo/* and rollout_tree/* metrics",
    "timing": "wall time per step and the estimator's share",
    "tree": "the prefix trees of one step's groups (open in a browser)",
    "trees": "the same groups as a tempo-tree/1 dump (tempo-verl tree reads it)",
    "tokenizer": "the task's tokenizer (tempo-verl tree --tokenizer)",
}


def _estimator_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("--estimators: give a comma-separated list of estimator names, e.g. tempo,grpo.")
    return names


def demo_command(
    out: str,
    seeds: int,
    steps: int | None,
    estimators: str,
    device: str,
    rollout: str = "independent",
    task: str = "parity",
) -> int:
    """Run the demo; return the exit status (0 ok, 2 bad options or a failed run: one line on stderr).

    ``steps`` None: the task's (:data:`~tempo_verl.demo.config.TASK_SETTINGS`, as are its lr and target).
    """
    started = time.perf_counter()
    from tempo_verl.outputs import OutputBusyError, OutputFolderError, atomic_output_dir, output_folder

    try:
        output_folder(out)  # ., /, "" or a mount point: refused before anything loads
    except OutputFolderError as err:
        print(f"tempo-verl demo: error: --out {err}", file=sys.stderr)
        return 2
    try:
        names = _estimator_names(estimators)
        # verl, transformers and matplotlib load here, not when the CLI starts.
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from tempo_verl.demo.config import TASK_SETTINGS, DemoConfig
        from tempo_verl.demo.loop import check_estimators, run_demo
        from tempo_verl.demo.report import SHARED_LR_NOTE, write_outputs

        if task not in TASK_SETTINGS:
            raise ValueError(f"--task: unknown task {task!r}; known tasks: {', '.join(TASK_SETTINGS)}.")
        settings = dict(TASK_SETTINGS[task], **({} if steps is None else {"steps": steps}))
        cfg = DemoConfig(
            out=Path(out), seeds=seeds, estimators=names, device=device, rollout=rollout, task=task, **settings
        )
        cfg.check()
        check_estimators(cfg.estimators, cfg.algorithm_config())
    except (ValueError, ImportError) as err:
        print(f"tempo-verl demo: error: {err}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    running: dict[str, str] = dict.fromkeys(cfg.estimators, "-")
    recent: dict[tuple[str, int], list[float]] = {}
    columns = (
        TextColumn("[bold]{task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rewards]}"),
        TimeElapsedColumn(),
    )
    total = cfg.seeds * len(cfg.estimators) * cfg.steps

    def on_step(name: str, seed: int, step: int, reward: float) -> None:
        window = recent.setdefault((name, seed), [])
        window.append(reward)
        running[name] = f"{sum(window[-5:]) / len(window[-5:]):.2f}"
        shown = "  ".join(f"{n} {r}" for n, r in running.items())
        progress.update(
            task_id, advance=1, run=f"seed {seed + 1}/{cfg.seeds} {name}", rewards=f"reward (last 5 steps): {shown}"
        )

    # The outputs are built in a temporary sibling of --out and replace it whole when the run ends: an
    # interrupted run leaves no partial result, and no file of an earlier run is presented as this one's.
    # An --out that cannot be written, that another run is writing, or that holds the user's own files
    # fails before the training (see tempo_verl/outputs.py).
    try:
        with atomic_output_dir(cfg.out) as stage, Progress(*columns, console=console, transient=False) as progress:
            task_id = progress.add_task("demo", total=total, run="warm-up", rewards="")
            result = run_demo(cfg, on_step=on_step)
            report = write_outputs(result, stage)
    except (OutputBusyError, OutputFolderError) as err:  # they name the folder and what to do
        print(f"tempo-verl demo: error: --out {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"tempo-verl demo: error: --out {out}: cannot write there ({err.strerror or err}).", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as err:
        print(f"tempo-verl demo: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2

    title = (
        f"tempo-verl demo: {cfg.task} task, {cfg.seeds} seeds x {cfg.steps} steps, {cfg.rollout} rollout, "
        f"lr {cfg.lr:g}, target {cfg.target:g}"
    )
    table = Table(title=title)
    columns = (
        "estimator",
        "steps to target: median",
        "per seed",
        "final reward",
        "gen. tokens/step",
        "gen. tokens to target",
    )
    for col in (*columns, "ms/step", "estimator ms (share)"):
        table.add_column(col)
    for name in cfg.estimators:
        est = report.summary["estimators"][name]
        med = report.median_steps[name]
        per_seed = ", ".join("-" if s is None else str(s) for s in est["steps_to_target"])
        finals = ", ".join(f"{r:.2f}" for r in est["final_reward"])
        t = report.timing[name]
        per_step = statistics.median(est["generated_tokens_per_step"])
        to_target = ", ".join("-" if g is None else str(g) for g in est["generated_tokens_to_target"])
        table.add_row(
            name,
            "not reached" if med is None else f"{med:g}",
            per_seed,
            finals,
            f"{per_step:.0f}",
            to_target,
            f"{t['step_time_s_median'] * 1000:.0f}",
            f"{t['estimator_time_s_median'] * 1000:.1f} ({100 * t['estimator_share']:.1f}%)",
        )
    Console().print(table)
    ratio = report.summary["grpo_over_tempo_median_steps"]
    if ratio is not None:
        print(f"median steps to target: grpo / tempo = {ratio:.2f}x")
    print(f"learning rate {cfg.lr:g}: {SHARED_LR_NOTE} (see docs/demo.md).")
    print(f"wrote {len(report.files)} outputs to {cfg.out.resolve()}:")
    for key, path in report.files.items():
        print(f"  {(cfg.out / path.name).resolve()}{'/' if key in ('trees', 'tokenizer') else ''}  {_WHAT[key]}")
    if "tree" in report.files:
        tree = (cfg.out / report.files["tree"].name).resolve()
        print(f"next: open {tree} in a browser to see where the policy branches and which branch TEMPO credited;")
        print(f"      redraw it with: tempo-verl tree {cfg.out} --out trees.html (docs/tree.md: your own run's trees)")
    print(f"total time {time.perf_counter() - started:.0f} s (warm-up {result.warmup_time_s:.0f} s)")
    return 0
