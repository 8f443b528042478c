"""The `tempo-verl` command: one typer app whose subcommands live beside the code they drive."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from tempo_verl.recipes.data.cli import app as data_app

app = typer.Typer(
    name="tempo-verl",
    help="TEMPO tree-structured credit assignment for verl: demo, tree pictures, data preparation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


@app.command("tree")
def tree(
    input_path: str = typer.Argument(
        ...,
        metavar="INPUT",
        show_default=False,
        help="A tree dump (tempo_trees_step{N}.jsonl, written by +algorithm.tempo.dump.dir=...) or a verl "
        "rollout dump (trainer.rollout_data_dir: {step}.jsonl with input/output/score rows): a file, or a "
        "directory of them (its latest step is drawn unless --step says otherwise; files of that step from several "
        "runs are drawn together). The format is detected.",
    ),
    out: str = typer.Option(
        ..., "--out", "-o", metavar="OUT.html", help="Where to write the HTML page (never one of the inputs)."
    ),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        metavar="PATH",
        help="Hugging Face tokenizer (a local directory or a hub id) of the run: decodes token ids into text. "
        "Required for verl rollout dumps (their outputs are re-tokenized); without it tree dumps show token ids. "
        "A hub id is looked up in the local cache first; offline (HF_HUB_OFFLINE=1, or the hub unreachable "
        "within 5 s) it fails at once.",
    ),
    groups: int = typer.Option(8, "--groups", min=1, metavar="K", help="Draw at most K groups (prompts)."),
    uid: list[str] | None = typer.Option(  # noqa: B008 (typer declares options as defaults)
        None,
        "--uid",
        metavar="UID",
        help="Draw only the group with this uid (repeatable). verl rollout dumps have no uid: each prompt "
        "gets one (p + 10 hex digits) shown on the page.",
    ),
    step: int | None = typer.Option(
        None,
        "--step",
        metavar="N",
        help="Draw the groups of step N only (for a directory: instead of its latest step; verl rows say "
        "their own step).",
    ),
) -> None:
    """Draw the prefix trees of sampled responses as one self-contained HTML page.

    Each group (the responses to one prompt) becomes a compressed prefix tree: runs of tokens no
    response leaves are one edge labelled with their text; a node shows how many responses pass
    through the prefix and its value V (their mean score); the edge leaving a branch point starts
    with the branch token and is coloured by TEMPO's TD credit V(after) - V(before) (blue positive,
    red negative); leaves show the scores. A header summarises the branch-token share, the
    first-divergence depths and how many groups share a prefix. Long edges are elided; hover for
    the full text. The page needs no network.

    Exit status 0 on success; 2 on a missing or bad input (one line naming the file and line), an
    output that is one of the inputs, or a tokenizer that cannot be loaded.
    """
    import sys

    from tempo_verl.trees.format import TreeInputError

    try:
        path, drawn, total, names = _tree_page(Path(input_path), Path(out), tokenizer, groups, uid or (), step)
    except TreeInputError as err:
        print(f"tempo-verl tree: error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"wrote {path}: {drawn} of {total} groups from {names}")


def _tree_page(
    source: Path, out: Path, tokenizer: str | None, groups: int, uids: Sequence[str], step: int | None
) -> tuple[Path, int, int, str]:
    """What `tempo-verl tree` does: pick the files, refuse to overwrite one, read, pick the groups, write the page.

    Returns:
        ``(out, groups drawn, groups selected, the names of the files read)``.

    Raises:
        TreeInputError: one line, naming the file (and line) or the option.
    """
    from tempo_verl.outputs import atomic_write_text
    from tempo_verl.trees.format import TreeInputError
    from tempo_verl.trees.readers import input_files, load_tokenizer, read_file
    from tempo_verl.trees.render import render_html

    every_file = input_files(source)
    _refuse_an_output_that_is_an_input(out, source, [f for _, f in every_file])
    files = _files_of_step(source, every_file, step)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    records = [record for f in files for record in read_file(f, tok)]
    if step is not None:
        records = [r for r in records if r["step"] == step]
        if not records:
            raise TreeInputError(f"{source}: no group of step {step}")
    if uids:
        wanted = {str(u) for u in uids}
        missing = wanted - {str(r["uid"]) for r in records}
        if missing:
            raise TreeInputError(
                f"{files[0]}: uid {sorted(missing)[0]!r} not found (uids here: "
                f"{_short_list([r['uid'] for r in records])})"
            )
        records = [r for r in records if str(r["uid"]) in wanted]
    names = ", ".join(f.name for f in files)
    page = render_html(records, tokenizer=tok, title=f"TEMPO prefix trees · {names}", max_groups=groups)
    try:
        atomic_write_text(out, page)
    except OSError as err:
        raise TreeInputError(f"{out}: cannot write the page ({err.strerror or err})") from None
    return out, min(len(records), groups), len(records), names


def _files_of_step(source: Path, files: list[tuple[int | None, Path]], step: int | None) -> list[Path]:
    """The files to read: for a directory, those of ``step`` (by file name), else of its latest step.

    Files of one step from several runs (``tempo_trees_step{N}.{writer}.jsonl``) are all read; so are
    files whose name says no step (their rows say it: they are filtered by ``step`` after reading).
    """
    from tempo_verl.trees.format import TreeInputError

    if not source.is_dir():
        return [f for _, f in files]
    steps = sorted({s for s, _ in files if s is not None})
    if step is None and steps:
        step_files = [f for s, f in files if s == steps[-1]]
    else:
        step_files = [f for s, f in files if s is None or s == step]
    if not step_files:
        raise TreeInputError(f"{source}: no file for step {step} (steps here: {_short_list(steps)})")
    return step_files


def _refuse_an_output_that_is_an_input(out: Path, source: Path, inputs: list[Path]) -> None:
    """Never write the page over an input: the same path, a link to it, or a ``*.jsonl`` in an input folder."""
    from tempo_verl.trees.format import TreeInputError

    target = out.resolve()
    same = any(f.resolve() == target or (out.exists() and os.path.samefile(out, f)) for f in inputs)
    if same or (source.is_dir() and target.parent == source.resolve() and target.suffix == ".jsonl"):
        raise TreeInputError(f"{out}: is an input of this command (it would be overwritten); choose another --out")


def _short_list(items: Sequence[Any], limit: int = 8) -> str:
    """``a, b, c, … (n in all)`` or ``none``."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "") if items else "none"


@app.command("demo")
def demo(
    out: str = typer.Option("tempo_demo", "--out", metavar="DIR", help="Output folder (created if missing)."),
    seeds: int = typer.Option(5, "--seeds", metavar="N", help="Seeds per estimator (0..N-1)."),
    steps: int = typer.Option(80, "--steps", metavar="N", help="RL steps per run."),
    estimators: str = typer.Option(
        "tempo,grpo", "--estimators", metavar="A,B", help="Estimators from verl's registry, comma-separated."
    ),
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda", help="Where the model runs."),
) -> None:
    """TEMPO against verl's GRPO on a small verifiable task, on any machine (about 3 minutes on 2 CPU cores).

    A tiny Qwen3-style LM is warmed up on the task's format, then trained by RL once per estimator
    and seed from the same warm-up weights, with verl's advantage registry and PPO-clip policy
    loss. Writes curves.png, summary.json, tree.html (the prefix trees of one step), metrics.jsonl
    (tempo/* tree metrics per step) and timing.json to --out. See docs/demo.md.
    """
    from tempo_verl.demo.command import demo_command

    status = demo_command(out, seeds, steps, estimators, device)
    if status:
        raise typer.Exit(status)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
