"""``tempo-verl data``: write the recipes' parquet files (MATH, MedQA and the evaluation sets).

Examples::

    tempo-verl data math --out ~/data/tempo                       # full MATH train/test from the hub
    tempo-verl data medqa --out ~/data/tempo --max-train 1000 --max-test 100 --seed 0   # paper-sized subsets
    tempo-verl data eval --out ~/data/tempo                       # GSM-HARD, AMC23, MedMCQA, MMLU-Medical
    tempo-verl data math --out DIR --local-file train=math_train.jsonl --local-file test=math_test.jsonl
    tempo-verl data eval --out DIR --set gsm_hard --local-file gsm_hard=gsmhardv2.jsonl
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tempo_verl.recipes.data.prepare import (
    EVAL_SETS,
    PrepareError,
    SplitReport,
    prepare_eval,
    prepare_math,
    prepare_medqa,
)

app = typer.Typer(
    name="data",
    help="Write verl RL parquet files for the TEMPO recipes (MATH, MedQA, GSM-HARD, AMC23, MedMCQA, MMLU-Medical).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OUT_HELP = "Output folder: files go to OUT/<data_source>/<split>.parquet."
SEED_HELP = "Seed of the --max-* subset draw (the same seed gives the same rows)."


def _parse_local_files(values: list[str] | None, allowed: tuple[str, ...], option: str = "--local-file") -> dict:
    """``["train=a.jsonl", ...]`` -> ``{"train": "a.jsonl"}``, checking the keys against ``allowed``."""
    parsed: dict[str, str] = {}
    for value in values or []:
        key, sep, path = value.partition("=")
        key = key.strip()
        if not sep or not key or not path.strip():
            raise typer.BadParameter(f"{value!r}: expected KEY=PATH with KEY one of {', '.join(allowed)}.")
        if key not in allowed:
            raise typer.BadParameter(f"{value!r}: unknown key {key!r}; expected one of {', '.join(allowed)}.")
        if key in parsed:
            raise typer.BadParameter(f"{value!r}: {key} given twice.")
        parsed[key] = path.strip()
    return parsed


def _show(reports: list[SplitReport]) -> None:
    table = Table(title="tempo-verl data")
    for column in ("source", "split", "read", "bad rows (left out)", "skipped", "written"):
        table.add_column(column)
    table.add_column("file", overflow="fold")
    for report in reports:
        bad = ", ".join(f"{reason}: {count}" for reason, count in report.bad.items()) or "0"
        table.add_row(
            report.source,
            report.split,
            str(report.read),
            bad,
            str(report.skipped),
            str(report.written),
            str(report.path) if report.path else "(nothing written)",
        )
    Console().print(table)
    # the same in plain lines, unwrapped, for logs
    for report in reports:
        bad = ", ".join(f"{reason}: {count}" for reason, count in report.bad.items())
        where = report.path if report.path else "nothing written"
        detail = f" ({bad})" if bad else ""
        typer.echo(
            f"{report.source}/{report.split}: read {report.read}, wrote {report.written} ({where}); "
            f"bad rows left out: {sum(report.bad.values())}{detail}; skipped {report.skipped}"
        )


def _finish(reports: list[SplitReport]) -> None:
    _show(reports)
    empty = [f"{r.source}/{r.split}" for r in reports if r.written == 0]
    if empty:
        Console(stderr=True).print(
            f"[red]error:[/red] no valid rows for {', '.join(empty)} (see the bad-row counts above)."
        )
        raise typer.Exit(1)


def _quiet_datasets() -> None:
    """No per-file progress bars from ``datasets`` in the command's output (the table says it all)."""
    import datasets

    datasets.disable_progress_bars()


def _fail(exc: Exception) -> None:
    message = str(exc) if isinstance(exc, PrepareError) else f"unexpected {type(exc).__name__}: {exc}"
    Console(stderr=True).print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(1)


def _training_set(
    which: str,
    out: Path,
    local_file: list[str] | None,
    max_train: int | None,
    max_test: int | None,
    seed: int,
) -> None:
    local = _parse_local_files(local_file, ("train", "test"))
    prepare = prepare_math if which == "math" else prepare_medqa
    _quiet_datasets()
    try:
        reports = prepare(out, local_files=local, max_train=max_train, max_test=max_test, seed=seed)
    except Exception as exc:  # never a bare traceback on the command line
        _fail(exc)
    _finish(reports)


_OUT = typer.Option(Path("~/data/tempo"), "--out", "-o", envvar="DATA_DIR", help=OUT_HELP)
_LOCAL_TRAIN = typer.Option(
    None,
    "--local-file",
    help="SPLIT=PATH (SPLIT: train or test; json, jsonl or parquet with the hub's columns) instead of the hub. "
    "Repeatable; with it, only the splits given are written.",
)
_MAX_TRAIN = typer.Option(None, "--max-train", min=1, help="Keep a random subset of this many train rows.")
_MAX_TEST = typer.Option(None, "--max-test", min=1, help="Keep a random subset of this many test rows.")
_SEED = typer.Option(0, "--seed", help=SEED_HELP)
_SETS = typer.Option(None, "--set", help=f"Evaluation set to write (repeatable; default all): {', '.join(EVAL_SETS)}.")
_LOCAL_EVAL = typer.Option(
    None, "--local-file", help="SET=PATH (json, jsonl or parquet with the hub's columns) instead of the hub."
)
_MAX_ROWS = typer.Option(None, "--max-rows", min=1, help="Keep a random subset of this many rows of each set.")


@app.command("math")
def math_command(
    out: Path = _OUT,
    local_file: list[str] | None = _LOCAL_TRAIN,
    max_train: int | None = _MAX_TRAIN,
    max_test: int | None = _MAX_TEST,
    seed: int = _SEED,
) -> None:
    """MATH (DigitalLearningGmbH/MATH-lighteval): data_source 'math', answers from the solutions' last \\boxed{}."""
    _training_set("math", out, local_file, max_train, max_test, seed)


@app.command("medqa")
def medqa_command(
    out: Path = _OUT,
    local_file: list[str] | None = _LOCAL_TRAIN,
    max_train: int | None = _MAX_TRAIN,
    max_test: int | None = _MAX_TEST,
    seed: int = _SEED,
) -> None:
    """MedQA-USMLE, 4 options (Neelectric/MedQA-USMLE): data_source 'medqa', answer letter A-D."""
    _training_set("medqa", out, local_file, max_train, max_test, seed)


@app.command("eval")
def eval_command(
    out: Path = _OUT,
    sets: list[str] | None = _SETS,
    local_file: list[str] | None = _LOCAL_EVAL,
    max_rows: int | None = _MAX_ROWS,
    seed: int = _SEED,
) -> None:
    """Evaluation sets: GSM-HARD, AMC23, MedMCQA (validation split), MMLU-Medical (6 subjects), as test.parquet."""
    chosen = list(sets) if sets else list(EVAL_SETS)
    unknown = [name for name in chosen if name not in EVAL_SETS]
    if unknown:
        raise typer.BadParameter(f"unknown set(s) {unknown}; choose from {', '.join(EVAL_SETS)}.", param_hint="--set")
    local = _parse_local_files(local_file, EVAL_SETS)
    missing = sorted(set(local) - set(chosen))
    if missing:
        raise typer.BadParameter(f"--local-file given for {missing}, which --set does not include.")
    _quiet_datasets()
    try:
        reports = prepare_eval(out, sets=chosen, local_files=local, max_rows=max_rows, seed=seed)
    except Exception as exc:
        _fail(exc)
    _finish(reports)
