"""Write the TEMPO recipes' data sets in verl's RL parquet format.

Every row has ``data_source``, ``prompt`` (chat messages), ``ability``,
``reward_model: {style: "rule", ground_truth}`` and ``extra_info: {split, index, options}``, with the
same Arrow schema in every file, so that verl can concatenate any of them in ``data.val_files``
(its ``RLHFDataset`` concatenates the files it is given). ``index`` is the row's position in the
source split; ``options`` holds the four option texts (A-D order) of a multiple-choice row and is
empty for math rows.

Sources (``data_source`` in brackets; hub ids are the defaults, any local json/jsonl/parquet file
with the same columns can replace them):

* training sets: MATH [``math``] (``DigitalLearningGmbH/MATH-lighteval``: ``problem``, ``solution``)
  and MedQA [``medqa``] (``Neelectric/MedQA-USMLE``: ``question``, ``options`` {A..D},
  ``answer_idx``), each with a ``train`` and a ``test`` split;
* evaluation sets (written as ``test``): GSM-HARD [``gsm_hard``] (``reasoning-machines/gsm-hard``:
  ``input``, ``target``), AMC23 [``amc23``] (``math-ai/amc23``: ``question``, ``answer``), MedMCQA
  [``medmcqa``] (``openlifescienceai/medmcqa`` validation split, as its test split has no answers:
  ``question``, ``opa``..``opd``, ``cop`` 0-3) and MMLU-Medical [``mmlu_medical``] (``cais/mmlu``,
  test split of the six medical subjects: ``question``, ``choices``, ``answer`` 0-3, ``subject``).

Bad rows (empty question, missing answer, options not A-D, ...) are counted by reason in the
returned :class:`SplitReport` and never written. Files go to ``<out>/<data_source>/<split>.parquet``.
The prompt templates are :func:`math_prompt` and :func:`choice_prompt` (quoted in ``docs/data.md``).
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempo_verl.recipes.rewards import CHOICE_LETTERS, extract_boxed

__all__ = [
    "EVAL_SETS",
    "MMLU_MEDICAL_SUBJECTS",
    "RL_SCHEMA_FIELDS",
    "SOURCES",
    "TRAIN_SETS",
    "BadRow",
    "PrepareError",
    "Source",
    "SplitReport",
    "choice_prompt",
    "convert_records",
    "load_records",
    "math_prompt",
    "prepare_amc23",
    "prepare_eval",
    "prepare_gsm_hard",
    "prepare_math",
    "prepare_medmcqa",
    "prepare_medqa",
    "prepare_mmlu_medical",
    "prepare_source",
    "rl_schema",
    "write_rl_parquet",
]

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = (
    "Answer the following multiple-choice question. Think step by step, then give the letter of the "
    "correct option (A, B, C or D) as your final answer within \\boxed{}, for example \\boxed{C}."
)

MMLU_MEDICAL_SUBJECTS: tuple[str, ...] = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)

#: Top-level columns of every file written here.
RL_SCHEMA_FIELDS = ("data_source", "prompt", "ability", "reward_model", "extra_info")


def math_prompt(problem: str) -> str:
    """The user message of a math row: the problem, a blank line, :data:`MATH_INSTRUCTION`."""
    return f"{problem.strip()}\n\n{MATH_INSTRUCTION}"


def choice_prompt(question: str, options: Sequence[str]) -> str:
    """The user message of a multiple-choice row: instruction, question, then ``A. ...`` to ``D. ...``."""
    lines = [f"{letter}. {text.strip()}" for letter, text in zip(CHOICE_LETTERS, options, strict=True)]
    return f"{CHOICE_INSTRUCTION}\n\nQuestion: {question.strip()}\n\n" + "\n".join(lines)


class BadRow(ValueError):
    """A source row that cannot become a training/evaluation row; the message is the reason."""


class PrepareError(RuntimeError):
    """A data set could not be read or written; the message says what to do."""


@dataclass(frozen=True)
class Converted:
    """One source row, converted: the user message, the ground truth and the option texts (or ())."""

    content: str
    ground_truth: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """One data set.

    Attributes:
        name: the ``data_source`` written in its rows (and its folder under the output directory).
        hub_id: the Hugging Face hub id it is loaded from by default.
        splits: our split name -> the hub split read for it.
        ability: the ``ability`` column.
        convert: source row -> :class:`Converted`, or :class:`BadRow`.
        hub_configs: hub configurations to load and concatenate (None: the default one).
        keep: optional filter for rows of a local file (e.g. MMLU's medical subjects); rows it drops
            are counted as ``skipped``, not bad.
    """

    name: str
    hub_id: str
    splits: Mapping[str, str]
    ability: str
    convert: Callable[[Mapping[str, Any]], Converted]
    hub_configs: tuple[str | None, ...] = (None,)
    keep: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass
class SplitReport:
    """What preparing one split did.

    Attributes:
        source: the ``data_source``.
        split: ``train`` or ``test``.
        path: the parquet file written (None when no row was valid).
        read: rows read from the source.
        written: rows written.
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
# Field helpers
# --------------------------------------------------------------------------------------------


def _text(record: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = record.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            text = str(value).strip()
            if text:
                return text
    return ""


def _question(record: Mapping[str, Any], *keys: str) -> str:
    question = _text(record, *keys)
    if not question:
        raise BadRow("empty question")
    return question


def _number_text(value: Any) -> str:
    """A numeric answer as text: ``27`` for 27.0, ``3.3333333333333335`` for 10/3; other text stripped."""
    if isinstance(value, bool) or value is None:
        raise BadRow("missing answer")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadRow("missing answer")
        if float(value).is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(float(value))
    text = str(value).strip()
    if not text:
        raise BadRow("missing answer")
    try:
        return _number_text(float(text.replace(",", "")))
    except ValueError:
        return text


def _four_options(options: Any) -> tuple[str, ...]:
    """Option texts in A-D order from ``{"A": ..}``, ``[{"key": "A", "value": ..}]`` or four strings."""
    if isinstance(options, str) or options is None:
        raise BadRow("options not A-D")
    if isinstance(options, Mapping):
        keyed = {str(k).strip().upper(): v for k, v in options.items() if v is not None}
    else:
        items = list(options)
        if items and all(isinstance(item, Mapping) for item in items):
            keyed = {str(item.get("key", "")).strip().upper(): item.get("value") for item in items}
        elif len(items) == len(CHOICE_LETTERS):
            keyed = dict(zip(CHOICE_LETTERS, items, strict=True))
        else:
            raise BadRow("options not A-D")
    if set(keyed) != set(CHOICE_LETTERS):
        raise BadRow("options not A-D")
    texts = tuple(str(keyed[letter]).strip() if keyed[letter] is not None else "" for letter in CHOICE_LETTERS)
    if not all(texts):
        raise BadRow("options not A-D")
    return texts


def _letter(value: Any, *, zero_based_index: bool) -> str:
    """An answer given as a letter A-D or (``zero_based_index``) as 0-3."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise BadRow("missing answer")
    if zero_based_index and not isinstance(value, str):
        try:
            position = int(value)
        except (TypeError, ValueError):
            raise BadRow("answer not A-D") from None
        if position < 0:
            raise BadRow("missing answer")  # MedMCQA marks unanswered rows with -1
        if position >= len(CHOICE_LETTERS) or position != value:
            raise BadRow("answer not A-D")
        return CHOICE_LETTERS[position]
    letter = str(value).strip().upper()
    if not letter:
        raise BadRow("missing answer")
    if zero_based_index and letter.isdigit():
        return _letter(int(letter), zero_based_index=True)
    if len(letter) != 1 or letter not in CHOICE_LETTERS:
        raise BadRow("answer not A-D")
    return letter


# --------------------------------------------------------------------------------------------
# Per-source row conversion
# --------------------------------------------------------------------------------------------


def _convert_math(record: Mapping[str, Any]) -> Converted:
    problem = _question(record, "problem")
    answer = _text(record, "answer")  # some MATH copies carry it; the lighteval one has only "solution"
    if not answer:
        boxed = extract_boxed(_text(record, "solution"))
        answer = boxed[-1] if boxed else ""
    if not answer:
        raise BadRow("missing answer")
    return Converted(math_prompt(problem), answer)


def _convert_medqa(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question")
    options = _four_options(record.get("options"))
    raw = record.get("answer_idx")
    if raw is None or not str(raw).strip():
        # no letter: accept the answer's text when it is exactly one option
        answer_text = _text(record, "answer")
        if not answer_text:
            raise BadRow("missing answer")
        matches = [letter for letter, text in zip(CHOICE_LETTERS, options, strict=True) if text == answer_text]
        if len(matches) != 1:
            raise BadRow("missing answer")
        raw = matches[0]
    return Converted(choice_prompt(question, options), _letter(raw, zero_based_index=False), options)


def _convert_medmcqa(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question")
    options = _four_options([record.get(key) for key in ("opa", "opb", "opc", "opd")])
    answer = _letter(record.get("cop"), zero_based_index=True)
    return Converted(choice_prompt(question, options), answer, options)


def _convert_mmlu(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question")
    options = _four_options(record.get("choices"))
    answer = _letter(record.get("answer"), zero_based_index=True)
    return Converted(choice_prompt(question, options), answer, options)


def _convert_gsm_hard(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "input")
    target = record.get("target")
    answer = _number_text(target)
    try:
        float(answer)
    except ValueError:
        raise BadRow("answer not a number") from None
    return Converted(math_prompt(question), answer)


def _convert_amc23(record: Mapping[str, Any]) -> Converted:
    question = _question(record, "question", "problem")
    return Converted(math_prompt(question), _number_text(record.get("answer")))


def _is_medical_subject(record: Mapping[str, Any]) -> bool:
    subject = record.get("subject")
    return subject is None or str(subject).strip() in MMLU_MEDICAL_SUBJECTS


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source("math", "DigitalLearningGmbH/MATH-lighteval", {"train": "train", "test": "test"}, "math", _convert_math),
        Source("medqa", "Neelectric/MedQA-USMLE", {"train": "train", "test": "test"}, "medicine", _convert_medqa),
        Source("gsm_hard", "reasoning-machines/gsm-hard", {"test": "train"}, "math", _convert_gsm_hard),
        Source("amc23", "math-ai/amc23", {"test": "test"}, "math", _convert_amc23),
        Source("medmcqa", "openlifescienceai/medmcqa", {"test": "validation"}, "medicine", _convert_medmcqa),
        Source(
            "mmlu_medical",
            "cais/mmlu",
            {"test": "test"},
            "medicine",
            _convert_mmlu,
            hub_configs=MMLU_MEDICAL_SUBJECTS,
            keep=_is_medical_subject,
        ),
    )
}
TRAIN_SETS: tuple[str, ...] = ("math", "medqa")
EVAL_SETS: tuple[str, ...] = ("gsm_hard", "amc23", "medmcqa", "mmlu_medical")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_records(source: Source, split: str, local_file: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The raw rows of one split: from ``local_file`` (json/jsonl/parquet) or from the hub.

    Loading goes through ``datasets.load_dataset`` either way (``HF_ENDPOINT``, ``HF_HOME`` and
    ``HF_DATASETS_OFFLINE`` apply as usual).

    Raises:
        PrepareError: missing/unsupported local file, or the hub could not be reached.
    """
    import datasets

    if local_file is not None:
        path = Path(local_file).expanduser()
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise PrepareError(
                f"--local-file {path}: unsupported file type {path.suffix!r}; use .json, .jsonl or .parquet."
            )
        if not path.is_file():
            raise PrepareError(f"--local-file {path}: no such file.")
        try:
            data = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:
            raise PrepareError(f"--local-file {path}: could not read it as {builder} ({exc}).") from exc
        return [dict(row) for row in data]

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


def write_rl_parquet(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows with :func:`rl_schema` (atomically: a temporary file, then a rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(list(rows), schema=rl_schema())
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise PrepareError(f"could not write {target}: {exc}") from exc
    return target


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

    reports = []
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
        if kept:
            report.path = write_rl_parquet(kept, Path(out_dir).expanduser() / name / f"{split}.parquet")
        reports.append(report)
    return reports


def prepare_math(
    out_dir: str | os.PathLike[str],
    *,
    local_files: Mapping[str, str | os.PathLike[str]] | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> list[SplitReport]:
    """MATH (``DigitalLearningGmbH/MATH-lighteval``) train and test; the answer is the solution's last ``\\boxed{}``.

    ``max_train=1000, max_test=100`` reproduces the paper's subset sizes (with a fixed ``seed``;
    the authors' own draw had none).
    """
    return prepare_source(
        "math", out_dir, local_files=local_files, max_rows={"train": max_train, "test": max_test}, seed=seed
    )


def prepare_medqa(
    out_dir: str | os.PathLike[str],
    *,
    local_files: Mapping[str, str | os.PathLike[str]] | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> list[SplitReport]:
    """MedQA-USMLE, 4 options (``Neelectric/MedQA-USMLE``) train and test; the answer is ``answer_idx``."""
    return prepare_source(
        "medqa", out_dir, local_files=local_files, max_rows={"train": max_train, "test": max_test}, seed=seed
    )


def _prepare_eval_set(
    name: str,
    out_dir: str | os.PathLike[str],
    local_file: str | os.PathLike[str] | None,
    max_rows: int | None,
    seed: int,
) -> SplitReport:
    local = {"test": local_file} if local_file is not None else None
    return prepare_source(name, out_dir, splits=["test"], local_files=local, max_rows={"test": max_rows}, seed=seed)[0]


def prepare_gsm_hard(
    out_dir: str | os.PathLike[str],
    *,
    local_file: str | os.PathLike[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> SplitReport:
    """GSM-HARD (``reasoning-machines/gsm-hard``, its only split): ``input`` and the float ``target``."""
    return _prepare_eval_set("gsm_hard", out_dir, local_file, max_rows, seed)


def prepare_amc23(
    out_dir: str | os.PathLike[str],
    *,
    local_file: str | os.PathLike[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> SplitReport:
    """AMC23 (``math-ai/amc23`` test): ``question`` (or ``problem``) and ``answer``."""
    return _prepare_eval_set("amc23", out_dir, local_file, max_rows, seed)


def prepare_medmcqa(
    out_dir: str | os.PathLike[str],
    *,
    local_file: str | os.PathLike[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> SplitReport:
    """MedMCQA (``openlifescienceai/medmcqa`` validation split): ``opa``..``opd``, ``cop`` 0-3."""
    return _prepare_eval_set("medmcqa", out_dir, local_file, max_rows, seed)


def prepare_mmlu_medical(
    out_dir: str | os.PathLike[str],
    *,
    local_file: str | os.PathLike[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> SplitReport:
    """MMLU's six medical subjects (``cais/mmlu`` test): ``choices`` and ``answer`` 0-3.

    A local file may hold other subjects too: rows whose ``subject`` is not medical are skipped.
    """
    return _prepare_eval_set("mmlu_medical", out_dir, local_file, max_rows, seed)


_EVAL_PREPARERS: dict[str, Callable[..., SplitReport]] = {
    "gsm_hard": prepare_gsm_hard,
    "amc23": prepare_amc23,
    "medmcqa": prepare_medmcqa,
    "mmlu_medical": prepare_mmlu_medical,
}


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
        local_files: set name -> local file replacing the hub for it.
        max_rows: keep a seeded random subset of this many rows of each set (None: all).
        seed: seed of that draw.
    """
    local_files = dict(local_files or {})
    unknown = sorted({*sets, *local_files} - set(EVAL_SETS))
    if unknown:
        raise PrepareError(f"unknown evaluation set(s) {unknown}; choose from {list(EVAL_SETS)}.")
    return [
        _EVAL_PREPARERS[name](out_dir, local_file=local_files.get(name), max_rows=max_rows, seed=seed) for name in sets
    ]
