"""The `tempo-verl` command: one typer app whose subcommands live beside the code they drive."""

from __future__ import annotations

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
        "directory of them (its latest step is drawn unless --step says otherwise). The format is detected.",
    ),
    out: str = typer.Option(..., "--out", "-o", metavar="OUT.html", help="Where to write the HTML page."),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        metavar="PATH",
        help="Hugging Face tokenizer (a local directory or a hub id) of the run: decodes token ids into text. "
        "Required for verl rollout dumps (their outputs are re-tokenized); without it tree dumps show token ids.",
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
        None, "--step", metavar="N", help="For a directory: draw step N instead of the latest one."
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

    Exit status 0 on success; 2 on a missing or bad input (one line naming the file and line).
    """
    import sys

    from tempo_verl.trees.dump import TreeInputError
    from tempo_verl.trees.render import write_tree_page

    try:
        path, drawn, total, names = write_tree_page(
            input_path, out, tokenizer=tokenizer, groups=groups, uids=uid or (), step=step
        )
    except TreeInputError as err:
        print(f"tempo-verl tree: error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"wrote {path}: {drawn} of {total} groups from {names}")


@app.command("demo")
def demo(
    out: str = typer.Option("tempo_demo", "--out", metavar="DIR", help="Output folder (created if missing)."),
    seeds: int = typer.Option(5, "--seeds", metavar="N", help="Seeds per estimator (0..N-1)."),
    steps: int = typer.Option(80, "--steps", metavar="N", help="RL steps per run."),
    estimators: str = typer.Option(
        "tempo,grpo", "--estimators", metavar="A,B", help="Estimators from verl's registry, comma-separated."
    ),
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda", help="Where the model runs."),
    rollout: str = typer.Option(
        "independent",
        "--rollout",
        metavar="independent|tree",
        help="How each group is sampled: independently, or as a prefix tree (the tempo_tree agent loop).",
    ),
) -> None:
    """TEMPO against verl's GRPO on a small verifiable task, on any machine (about 3 minutes on 2 CPU cores).

    A tiny Qwen3-style LM is warmed up on the task's format, then trained by RL once per estimator
    and seed from the same warm-up weights, with verl's advantage registry and PPO-clip policy
    loss. Writes curves.png, summary.json, tree.html (the prefix trees of one step), metrics.jsonl
    (tempo/* tree metrics per step) and timing.json to --out. See docs/demo.md.
    """
    from tempo_verl.demo.command import demo_command

    status = demo_command(out, seeds, steps, estimators, device, rollout)
    if status:
        raise typer.Exit(status)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
