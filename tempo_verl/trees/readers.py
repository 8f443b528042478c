"""Read prefix trees back: our ``tempo-tree/1`` dumps and verl's rollout JSONL, the format detected per file.

Every reader error is a :class:`~tempo_verl.trees.format.TreeInputError` whose message is one line,
``"{file}:{line}: {what is wrong}"``: bad JSON, numbers beyond float64/int64, nesting deeper than
Python's JSON reader allows, wrong types, binary garbage, empty files and folders without dumps
included. Nothing here raises anything else on a bad file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from tempo_verl.core.forest import build_prefix_forest
from tempo_verl.trees.format import TreeInputError, check_record, file_step, is_count, is_number
from tempo_verl.trees.records import records_from_snapshot, snapshot

__all__ = ["input_files", "load_tokenizer", "load_tree_input", "read_file"]

_HUB_PROBE_S = 5.0  # how long `load_tokenizer` waits for the Hugging Face hub before saying it is unreachable


def input_files(path: str | os.PathLike) -> list[tuple[int | None, Path]]:
    """The ``*.jsonl`` files of an input (a file, or a directory of them), as ``(step, path)`` sorted by step.

    The step is the one the file name says (:func:`~tempo_verl.trees.format.file_step`); files of one
    step (several runs' writers) are sorted by name, which starts with the writer's start time.

    Raises:
        TreeInputError: the path does not exist or the directory holds no ``*.jsonl`` file.
    """
    p = Path(path)
    if p.is_dir():
        files = [(file_step(f), f) for f in p.glob("*.jsonl") if f.is_file()]
        if not files:
            raise TreeInputError(
                f"{p}: no *.jsonl files in this directory (expected a tempo-tree or verl rollout dump)"
            )
        return sorted(files, key=lambda sf: (sf[0] is None, sf[0] or 0, sf[1].name))
    if not p.exists():
        raise TreeInputError(f"{p}: no such file or directory")
    return [(file_step(p), p)]


def _parse_line(line: bytes, where: str) -> dict:
    """One JSONL line as a JSON object; every way it can fail is a one-line TreeInputError."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise TreeInputError(f"{where}: not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise TreeInputError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise TreeInputError(f"{where}: invalid JSON (arrays or objects nested deeper than can be read)") from None
    except ValueError as err:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise TreeInputError(f"{where}: invalid JSON (a number too long to read: {err})") from None
    if not isinstance(obj, dict):
        raise TreeInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_lines(path: Path) -> list[tuple[int, dict]]:
    """The JSON objects of a JSONL file with their 1-based line numbers (blank lines skipped)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TreeInputError(f"{path}: cannot read ({err.strerror or err})") from None
    out = [
        (number, _parse_line(line, f"{path}:{number}"))
        for number, line in enumerate(raw.split(b"\n"), start=1)
        if line.strip()
    ]
    if not out:
        raise TreeInputError(f"{path}:1: empty file (no JSON lines)")
    return out


def _prompt_uid(prompt: str) -> str:
    """A short stable id for a prompt text (verl's rollout dump has no group id)."""
    return "p" + hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:10]


def _check_verl_row(obj: dict, where: str) -> None:
    for key in ("input", "output", "score"):
        if key not in obj:
            raise TreeInputError(f"{where}: missing field '{key}' (verl rollout rows have input, output, score)")
    for key in ("input", "output"):
        if not isinstance(obj[key], str):
            raise TreeInputError(f"{where}: {key}: expected a string, got {type(obj[key]).__name__}")
    if not is_number(obj["score"]):
        raise TreeInputError(f"{where}: score: expected a finite number, got {obj['score']!r:.40}")
    if "step" in obj and not is_count(obj["step"]):
        raise TreeInputError(f"{where}: step: expected a non-negative integer below 2**63, got {obj['step']!r:.40}")


def _verl_rows_to_records(path: Path, rows: list[tuple[int, dict]], tokenizer: Any) -> list[dict]:
    """Group verl rollout rows by (step, prompt), re-tokenize the outputs and build their prefix trees.

    Each row's own ``step`` counts (a file may hold several steps); a row without one takes the
    file name's step, else 0. Records come in the order of their first row in the file.
    """
    for number, obj in rows:
        _check_verl_row(obj, f"{path}:{number}")
    if tokenizer is None:
        raise TreeInputError(
            f"{path}:{rows[0][0]}: this is a verl rollout dump (text only): pass --tokenizer (the run's "
            "tokenizer directory or hub id) to re-tokenize 'output'"
        )
    try:
        encoded = tokenizer([obj["output"] for _, obj in rows], add_special_tokens=False)["input_ids"]
    except Exception as err:
        raise TreeInputError(f"{path}:{rows[0][0]}: the tokenizer failed on 'output': {err}") from None
    default_step = file_step(path) or 0
    keys = [(obj.get("step", default_step), obj["input"]) for _, obj in rows]
    group_of: dict[tuple[int, str], int] = {}
    first_line: dict[int, int] = {}
    for (number, _), key in zip(rows, keys, strict=True):
        first_line.setdefault(group_of.setdefault(key, len(group_of)), number)
    lengths = torch.tensor([len(x) for x in encoded], dtype=torch.long)
    width = int(lengths.max()) if lengths.numel() else 0
    responses = torch.zeros((len(rows), width), dtype=torch.long)
    for i, x in enumerate(encoded):
        responses[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    scores = torch.tensor([float(obj["score"]) for _, obj in rows], dtype=torch.float64)
    group_ids = torch.tensor([group_of[key] for key in keys], dtype=torch.long)
    forest = build_prefix_forest(responses, lengths, group_ids, scores)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    records = records_from_snapshot(snapshot(forest, responses, mask, group_ids.tolist(), 0, list(group_of.values())))
    for record, ((step, prompt), g) in zip(records, group_of.items(), strict=True):  # in order of first appearance
        record.update(step=step, uid=_prompt_uid(prompt), prompt=prompt, source=f"{path}:{first_line[g]}")
    return records


def read_file(path: Path, tokenizer: Any = None) -> list[dict]:
    """The records of one ``.jsonl`` file, a ``tempo-tree/1`` or a verl rollout dump (see :func:`load_tree_input`)."""
    rows = _read_lines(path)
    number, first = rows[0]
    if "format" in first:
        records = []
        for number, obj in rows:
            record = check_record(obj, f"{path}:{number}")
            record["source"] = f"{path}:{number}"
            records.append(record)
        return records
    if "input" in first or "output" in first:
        return _verl_rows_to_records(path, rows, tokenizer)
    raise TreeInputError(
        f"{path}:{number}: neither a tempo-tree dump line (no 'format' field) nor a verl rollout row "
        "(no 'input'/'output' fields)"
    )


def load_tree_input(path: str | os.PathLike, tokenizer: Any = None) -> list[dict]:
    """Read a tree dump or a verl rollout dump (a ``.jsonl`` file or a directory of them); format detected.

    - ``tempo-tree/1`` files (our dump): every line is validated, including that its branch tokens
      and prefix values are those of the group's own prefix tree.
    - verl rollout dumps (``trainer.rollout_data_dir``: ``{step}.jsonl``, rows with ``input``,
      ``output``, ``score``, ``step``, ...): ``output`` is re-tokenized with ``tokenizer``, rows are
      grouped by ``(step, input)`` and each group's tree is built as TEMPO would.

    Args:
        path: a file, or a directory whose ``*.jsonl`` files are all read (in step order).
        tokenizer: a Hugging Face tokenizer; needed for verl rollout dumps only.

    Returns:
        ``tempo-tree/1`` records (dicts), each with an extra ``source`` (``"file:line"``); records
        from verl dumps also carry ``prompt`` (the input text) and a ``uid`` made from it.

    Raises:
        TreeInputError: ``"{file}:{line}: {what is wrong}"``.
    """
    records: list[dict] = []
    for _, f in input_files(path):
        records.extend(read_file(f, tokenizer))
    return records


def _offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    flags = (os.environ.get(k, "").strip().lower() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f in ("1", "true", "yes", "on") for f in flags)


def load_tokenizer(name: str) -> Any:
    """A Hugging Face tokenizer from a local directory or a hub id, failing at once (one line) when it cannot.

    A local directory is read without any network access. A hub id is first looked up in the local
    Hugging Face cache; only if it is not there, and ``HF_HUB_OFFLINE`` is not set, is the hub asked,
    after one probe of at most 5 s (the hub client's own retries take a minute on a machine without
    a network).

    Raises:
        TreeInputError: ``"--tokenizer {name}: {why}"``.
    """
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as err:  # pragma: no cover - transformers comes with the verl extra
        raise TreeInputError(f"--tokenizer {name}: transformers is not installed ({err})") from None

    def load(**kwargs: Any) -> Any:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            return AutoTokenizer.from_pretrained(name, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)

    def failure(err: Exception) -> TreeInputError:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return TreeInputError(f"--tokenizer {name}: cannot load a tokenizer ({reason})")

    if Path(name).exists():
        if not Path(name).is_dir():
            raise TreeInputError(f"--tokenizer {name}: expected a tokenizer directory (or a hub id), got a file")
        try:
            return load(local_files_only=True)
        except Exception as err:
            raise failure(err) from None
    try:
        return load(local_files_only=True)  # the Hugging Face cache
    except Exception:
        pass
    if _offline():
        raise TreeInputError(
            f"--tokenizer {name}: not a local directory and not in the Hugging Face cache, and HF_HUB_OFFLINE "
            "is set: pass the tokenizer's directory"
        )
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        get_session().head(f"{endpoint}/api/models/{name}", timeout=_HUB_PROBE_S)
    except Exception as err:
        raise TreeInputError(
            f"--tokenizer {name}: not a local directory and not in the Hugging Face cache, and {endpoint} cannot "
            f"be reached ({type(err).__name__}): pass the tokenizer's directory"
        ) from None
    try:
        return load()
    except Exception as err:
        raise failure(err) from None
