"""What ``tempo-verl data`` does once its arguments are parsed: prepare, print the report, give the exit status.

Exit status: 0 when every split has rows written; 1 when a split has no valid row (then no file is
written or changed: the splits of one command are written together or not at all), or on an unexpected
error, said in one line; 2 on bad input (a :class:`PrepareError`: unknown split or set,
missing or unreadable file, unreachable hub), said in one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from tempo_verl.recipes.data.prepare import PrepareError, SplitReport, prepare_eval, prepare_source
from tempo_verl.recipes.data.sources import EVAL_SETS


def _show(reports: list[SplitReport]) -> None:
    table = Table(title="tempo-verl data")
    for column in ("source", "split", "read", "bad rows (left out)", "skipped", "kept"):
        table.add_column(column)
    table.add_column("file", overflow="fold")
    for report in reports:
        bad = ", ".join(f"{reason}: {count}" for reason, count in report.bad.items()) or "0"
        path = str(report.path) if report.path else "(nothing written)"
        table.add_row(
            report.source, report.split, str(report.read), bad, str(report.skipped), str(report.written), path
        )
    console = Console()
    console.print(table)
    # the same in plain lines, unwrapped, for logs
    for report in reports:
        bad = ", ".join(f"{reason}: {count}" for reason, count in report.bad.items())
        wrote = f"wrote {report.written} ({report.path})" if report.path else f"kept {report.written}, wrote nothing"
        detail = f" ({bad})" if bad else ""
        console.print(
            f"{report.source}/{report.split}: read {report.read}, {wrote}; "
            f"bad rows left out: {sum(report.bad.values())}{detail}; skipped {report.skipped}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _error(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)


def run_data_command(
    which: str,
    out_dir: str | os.PathLike[str],
    *,
    local_files: Mapping[str, str],
    max_rows: Mapping[str, int | None] | None = None,
    sets: Sequence[str] | None = None,
    seed: int = 0,
) -> int:
    """Prepare ``which`` (``math``, ``medqa`` or ``eval``), print what was written; the exit status.

    Args:
        which: a training set name, or ``eval`` for the evaluation sets.
        out_dir: files go to ``out_dir/<data_source>/<split>.parquet``.
        local_files: split (or, for ``eval``, set) -> local file replacing the hub.
        max_rows: split -> subset size (for ``eval``: key ``test``, every set).
        sets: for ``eval``, which sets (None: all).
        seed: seed of the subset draw.
    """
    import datasets

    datasets.disable_progress_bars()  # the table says it all
    max_rows = dict(max_rows or {})
    try:
        if which == "eval":
            chosen = list(sets or EVAL_SETS)
            reports = prepare_eval(
                out_dir, sets=chosen, local_files=local_files, max_rows=max_rows.get("test"), seed=seed
            )
        else:
            reports = prepare_source(which, out_dir, local_files=local_files, max_rows=max_rows, seed=seed)
    except PrepareError as exc:
        _error(str(exc))
        return 2
    except Exception as exc:  # never a bare traceback on the command line
        _error(f"unexpected {type(exc).__name__}: {exc}")
        return 1
    _show(reports)
    empty = [f"{r.source}/{r.split}" for r in reports if r.written == 0]  # then no report has a path
    if empty:
        _error(
            f"no valid rows for {', '.join(empty)} (see the bad-row counts above); no file was written or "
            "changed (the splits of one command are written together or not at all)."
        )
        return 1
    return 0
