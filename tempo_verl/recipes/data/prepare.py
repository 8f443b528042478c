"""Write the TEMPO recipes' data sets in verl's RL parquet format.

Every row has ``data_source``, ``prompt`` (chat messages), ``ability``,
``reward_model: {style: "rule", ground_truth}`` and ``extra_info: {split, index, options}``, with the
same Arrow schema in every file, so that verl can concatenate any of them in ``data.val_files``
(its ``RLHFDataset`` concatenates the files it is given). ``index`` is the row's position in the
source split; ``options`` holds the option texts (letter order: four, or five for five-option MedQA)
of a multiple-choice row (the reward reads the letters offered from them) and is empty for math rows.

The sources and the row conversion are :mod:`tempo_verl.recipes.data.sources`. Bad rows are counted
by reason in the returned :class:`SplitReport` and never written. Files go to
``<out>/<data_source>/<split>.parquet``. One call writes all its splits or none: every split is read,
converted and written to a temporary file beside its target first, and the files are renamed into place
together only when every split has a valid row and every file was written (a rerun into an existing
folder never leaves one run's train split beside another run's test split).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempo_verl.recipes.data.sources import EVAL_SETS, SOURCES, TRAIN_SETS, BadRow, Source


class PrepareError(RuntimeError):
    """A data set could not be read or written; the message says what to do."""


@dataclass
class SplitReport:
    """What preparing one split did.

    Attributes:
        source: the ``data_source``.
        split: ``train`` or ``test``.
        path: the parquet file written (None when nothing was written: this split or another one
            of the same call had no valid row).
        read: rows read from the source.
        written: valid rows kept for the file (in it when ``path`` is set).
        bad: reason -> rows left out for it.
        skipped: valid rows not written: outside the chosen subset (``--max-*``) or filtered out
            (MMLU rows of non-medical subjects in a local file).
    """

    source: str
    split: str
    path: Path | None = None
    read: int = 0
    written: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _parse_json(text: str, where: str) -> Any:
    """One JSON document, or a :class:`PrepareError` naming ``where`` (bad JSON, too deep, a 5000-digit integer)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise PrepareError(f"{where}: JSON nested too deeply to read; the sources' rows are flat.") from None
    except ValueError as exc:  # bad JSON, or an integer of over 4300 digits
        raise PrepareError(f"{where}: not valid JSON ({exc}).") from None


def _read_local(path: Path) -> list[dict[str, Any]]:
    """Rows of a local .json (an array of objects), .jsonl (one object a line) or .parquet file.

    JSON is parsed by Python's json module, which raises a catchable error on deep nesting (pyarrow's
    JSON reader, used by ``datasets``, crashes the process on it); parquet by pyarrow.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:
            raise PrepareError(f"--local-file {path}: could not read it as parquet ({exc}).") from exc
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(f"--local-file {path}: could not read it ({exc}).") from exc
    if suffix == ".json" and text.lstrip().startswith("["):
        rows = _parse_json(text, f"--local-file {path}")
        documents = [(f"--local-file {path} item {i + 1}", row) for i, row in enumerate(rows)]
    else:
        documents = [
            (f"--local-file {path} line {n}", _parse_json(line, f"--local-file {path} line {n}"))
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    for where, row in documents:
        if not isinstance(row, dict):
            raise PrepareError(f"{where}: expected a JSON object (one row), got {type(row).__name__}.")
    return [row for _, row in documents]


def load_records(source: Source, split: str, local_file: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The raw rows of one split: from ``local_file`` (json/jsonl/parquet) or from the hub.

    The hub is read by ``datasets.load_dataset`` (``HF_ENDPOINT``, ``HF_HOME`` and
    ``HF_DATASETS_OFFLINE`` apply as usual).

    Raises:
        PrepareError: missing/unsupported/unreadable local file, or the hub could not be reached.
    """
    if local_file is not None:
        path = Path(local_file).expanduser()
        if path.suffix.lower() not in (".json", ".jsonl", ".parquet"):
            raise PrepareError(
                f"--local-file {path}: unsupported file type {path.suffix!r}; use .json, .jsonl or .parquet."
            )
        if not path.is_file():
            raise PrepareError(f"--local-file {path}: no such file.")
        return _read_local(path)

    import datasets

    if split not in source.splits:
        raise PrepareError(f"{source.name} has no split {split!r}; it has {sorted(source.splits)}.")
    hub_split = source.splits[split]
    rows: list[dict[str, Any]] = []
    for config in source.hub_configs:
        try:
            data = datasets.load_dataset(source.hub_id, config, split=hub_split)
        except Exception as exc:
            label = source.hub_id + (f" ({config})" if config else "")
            raise PrepareError(
                f"could not load {label} split {hub_split!r} from the Hugging Face hub: {exc}. "
                f"Check the network (or HF_ENDPOINT for a mirror), or pass the file yourself with "
                f"--local-file {split if source.name in TRAIN_SETS else source.name}=PATH."
            ) from exc
        rows.extend(dict(row) for row in data)
    return rows


# --------------------------------------------------------------------------------------------
# Conversion and writing
# --------------------------------------------------------------------------------------------


def rl_schema() -> Any:
    """The Arrow schema of every file written here (``pyarrow.Schema``)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(message)),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct([("split", pa.string()), ("index", pa.int64()), ("options", pa.list_(pa.string()))]),
            ),
        ]
    )


def convert_records(
    source: Source, split: str, records: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], Counter[str], int]:
    """Source rows -> verl rows.

    Returns:
        ``(rows, bad, skipped)``: the valid rows in source order (``extra_info.index`` is the
        row's position in ``records``), bad rows counted by reason, rows the source's ``keep``
        filter dropped.
    """
    rows: list[dict[str, Any]] = []
    bad: Counter[str] = Counter()
    skipped = 0
    for index, record in enumerate(records):
        if source.keep is not None and not source.keep(record):
            skipped += 1
            continue
        try:
            converted = source.convert(record)
        except BadRow as reason:
            bad[str(reason)] += 1
            continue
        except RecursionError:  # a field nested too deeply to turn into text
            bad["field nested too deeply"] += 1
            continue
        rows.append(
            {
                "data_source": source.name,
                "prompt": [{"role": "user", "content": converted.content}],
                "ability": source.ability,
                "reward_model": {"style": "rule", "ground_truth": converted.ground_truth},
                "extra_info": {"split": split, "index": index, "options": list(converted.options)},
            }
        )
    return rows, bad, skipped


def _write_beside(rows: Sequence[Mapping[str, Any]], target: Path) -> Path:
    """Write rows with :func:`rl_schema` to a new hidden file beside ``target``, read back whole; its path.

    Raises:
        OSError: the folder or the file cannot be written, or the file does not read back whole.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows), schema=rl_schema())
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        pq.write_table(table, tmp)
        if pq.read_metadata(tmp).num_rows != len(rows):
            raise OSError(f"{tmp}: the file does not read back whole")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_rl_parquet(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows with :func:`rl_schema` (atomically: a temporary file, then a rename)."""
    return _publish([(Path(path).expanduser(), rows)])[0]


def _publish(files: Sequence[tuple[Path, Sequence[Mapping[str, Any]]]]) -> list[Path]:
    """Write every ``(target, rows)`` to a temporary file beside its target, then rename them all into place.

    A failed write leaves every target as it was (the temporaries are removed).

    Raises:
        PrepareError: a file could not be written, naming it.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, rows in files:
            try:
                staged.append((_write_beside(rows, target), target))
            except OSError as exc:
                raise PrepareError(f"could not write {target}: {exc}; no file was changed.") from exc
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)  # only those a failure left behind
    return [target for target, _ in files]


def _subset(rows: list[dict[str, Any]], max_rows: int | None, seed: int) -> list[dict[str, Any]]:
    if max_rows is None or max_rows >= len(rows):
        return rows
    picked = sorted(random.Random(seed).sample(range(len(rows)), max_rows))
    return [rows[i] for i in picked]


def prepare_source(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    splits: Sequence[str] | None = None,
    local_files: Mapping[str, str | os.PathLike[str]] | None = None,
    max_rows: Mapping[str, int | None] | None = None,
    seed: int = 0,
) -> list[SplitReport]:
    """Load, convert and write the splits of one source (see the module docstring).

    Args:
        name: a key of :data:`SOURCES`.
        out_dir: files go to ``out_dir/<name>/<split>.parquet``.
        splits: which splits (default: all of the source's; with ``local_files``: those given).
        local_files: split -> local json/jsonl/parquet file replacing the hub for that split.
        max_rows: split -> keep a random subset of this many valid rows (seeded by ``seed``;
            None: all rows).
        seed: seed of the subset draw (the same seed gives the same rows).

    Raises:
        PrepareError: unknown source/split, bad ``max_rows``, unreadable input, unwritable output.
    """
    return _write_all(out_dir, _convert_source(name, splits, local_files, max_rows, seed))


def _convert_source(
    name: str,
    splits: Sequence[str] | None,
    local_files: Mapping[str, str | os.PathLike[str]] | None,
    max_rows: Mapping[str, int | None] | None,
    seed: int,
) -> list[tuple[SplitReport, list[dict[str, Any]]]]:
    """Check the arguments, then load and convert each split of one source: its report and its kept rows."""
    if name not in SOURCES:
        raise PrepareError(f"unknown source {name!r}; choose from {sorted(SOURCES)}.")
    source = SOURCES[name]
    local_files = dict(local_files or {})
    max_rows = dict(max_rows or {})
    chosen = list(splits) if splits is not None else (list(local_files) if local_files else list(source.splits))
    for split in [*chosen, *local_files, *max_rows]:
        if split not in source.splits:
            raise PrepareError(f"{name} has no split {split!r}; it has {sorted(source.splits)}.")
    for split, limit in max_rows.items():
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise PrepareError(f"max rows for {name} {split}: expected a positive integer, got {limit!r}.")

    converted = []
    for split in chosen:
        records = load_records(source, split, local_files.get(split))
        rows, bad, skipped = convert_records(source, split, records)
        kept = _subset(rows, max_rows.get(split), seed)
        report = SplitReport(
            source=name,
            split=split,
            read=len(records),
            written=len(kept),
            bad=dict(sorted(bad.items())),
            skipped=skipped + len(rows) - len(kept),
        )
        converted.append((report, kept))
    return converted


def _write_all(out_dir: str | os.PathLike[str], converted: list[tuple[SplitReport, list[dict[str, Any]]]]):
    """Publish every split's file together, or none when a split has no valid row; the reports."""
    reports = [report for report, _ in converted]
    if all(rows for _, rows in converted):
        out = Path(out_dir).expanduser()
        paths = _publish([(out / r.source / f"{r.split}.parquet", rows) for r, rows in converted])
        for report, path in zip(reports, paths, strict=True):
            report.path = path
    return reports


def prepare_eval(
    out_dir: str | os.PathLike[str],
    *,
    sets: Sequence[str] = EVAL_SETS,
    local_files: Mapping[str, str | os.PathLike[str]] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> list[SplitReport]:
    """The evaluation sets (default: all of :data:`EVAL_SETS`), each to ``out_dir/<set>/test.parquet``.

    Args:
        sets: which of :data:`EVAL_SETS`.
        local_files: set name -> local file replacing the hub for it (only sets in ``sets``).
        max_rows: keep a seeded random subset of this many rows of each set (None: all).
        seed: seed of that draw.

    Raises:
        PrepareError: an unknown set name, a local file for a set not chosen, or what
            :func:`prepare_source` raises.
    """
    local_files = dict(local_files or {})
    unknown = sorted({*sets, *local_files} - set(EVAL_SETS))
    if unknown:
        raise PrepareError(f"unknown evaluation set(s) {unknown}; choose from {list(EVAL_SETS)}.")
    unused = sorted(set(local_files) - set(sets))
    if unused:
        raise PrepareError(f"a local file is given for {unused}, which the chosen sets {list(sets)} do not include.")
    converted = []
    for name in sets:
        local = {"test": local_files[name]} if name in local_files else None
        converted += _convert_source(name, ["test"], local, {"test": max_rows}, seed)
    return _write_all(out_dir, converted)
