"""What a second run, a hostile file or an offline machine does to the tree tools: never a lost or torn
file, never an overwritten input, never a traceback, never a long silent wait."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tempo_verl.cli import app
from tempo_verl.core import tempo_advantage_and_forest
from tempo_verl.trees import TreeDumpWriter, TreeInputError, group_records, load_tree_input

REPO = Path(__file__).resolve().parents[2]

# A run that dumps steps 1..STEPS of a batch whose uids start with its name (argv: directory, name).
_DUMPING_RUN = """
import sys, torch
from tempo_verl.core import tempo_advantage_and_forest
from tempo_verl.trees import TreeDumpWriter

directory, name = sys.argv[1], sys.argv[2]
g = torch.Generator().manual_seed(sum(map(ord, name)))
responses = torch.randint(1, 4, (9, 12), generator=g)
mask = torch.ones_like(responses)
rewards = torch.zeros(9, 12)
rewards[:, -1] = torch.randint(0, 2, (9,), generator=g).float()
uids = [f"{name}-{k // 3}" for k in range(9)]
_, _, forest = tempo_advantage_and_forest(rewards, mask, index=uids, responses=responses, response_attention_mask=mask)
writer = TreeDumpWriter(directory, every=1, groups=3, max_pending=32)
for step in range(1, 21):
    assert writer.maybe_dump(step, forest, responses, mask, uids)
writer.close(timeout=60)
assert writer.failures == 0 and len(writer.written) == 20, (writer.failures, writer.written)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_two_processes_dumping_into_one_directory_keep_every_group_whole(tmp_path):
    runs = [
        subprocess.Popen([sys.executable, "-c", _DUMPING_RUN, str(tmp_path), name], env=_env(), stderr=subprocess.PIPE)
        for name in ("alpha", "beta")
    ]
    for run in runs:
        assert run.wait(timeout=240) == 0, run.stderr.read().decode()
    records = load_tree_input(tmp_path)  # every file parses and validates: none is torn
    by_step: dict[int, set[str]] = {}
    for record in records:
        by_step.setdefault(record["step"], set()).add(record["uid"])
    expected = {f"{name}-{k}" for name in ("alpha", "beta") for k in range(3)}
    assert by_step == {step: expected for step in range(1, 21)}
    assert len(list(tmp_path.glob("*.jsonl"))) == 40
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".jsonl")]  # no temporary file left


def _batch(prefix: str):
    g = torch.Generator().manual_seed(len(prefix))
    responses = torch.randint(1, 4, (6, 8), generator=g)
    mask = torch.ones_like(responses)
    rewards = torch.zeros(6, 8)
    rewards[:, -1] = torch.arange(6) % 2
    uids = [f"{prefix}-{k // 3}" for k in range(6)]
    _, _, forest = tempo_advantage_and_forest(
        rewards, mask, index=uids, responses=responses, response_attention_mask=mask
    )
    return forest, responses, mask, uids


def test_two_writers_of_one_process_into_one_directory_keep_both(tmp_path):
    first, second = TreeDumpWriter(tmp_path, every=1), TreeDumpWriter(tmp_path, every=1)
    assert first.maybe_dump(7, *_batch("one"))
    assert second.maybe_dump(7, *_batch("two"))
    first.close()
    second.close()
    assert len(set(first.written + second.written)) == 2
    uids = sorted(r["uid"] for r in load_tree_input(tmp_path))
    assert uids == ["one-0", "one-1", "two-0", "two-1"]
    # Drawn together: the step's files of both runs, each group naming the file it came from.
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["tree", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 of 4 groups" in result.stdout
    page = out.read_text()
    for path in first.written + second.written:
        assert path.name in page


def _good_line(uid: str = "g", step: int = 4) -> dict:
    responses = torch.tensor([[1, 2, 3], [1, 2, 4], [1, 5, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([[0, 0, 1.0], [0, 0, 0], [0, 0.5, 0]])
    _, _, forest = tempo_advantage_and_forest(
        rewards, mask, index=[uid] * 3, responses=responses, response_attention_mask=mask
    )
    return group_records(forest, responses, mask, [uid] * 3, step=step, max_groups=1)[0]


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    return result, result.stderr.strip().splitlines()


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path):
    folder = tmp_path / "trees"
    folder.mkdir()
    dump = folder / "tempo_trees_step4.jsonl"
    dump.write_text(json.dumps(_good_line()) + "\n")
    before = dump.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(dump)
    hard = tmp_path / "hard.html"
    os.link(dump, hard)
    cases = [
        [str(dump), "--out", str(dump)],
        [str(dump), "--out", str(folder / ".." / "trees" / dump.name)],
        [str(link), "--out", str(dump)],
        [str(dump), "--out", str(link)],
        [str(dump), "--out", str(hard)],
        [str(folder), "--out", str(dump)],
        [str(folder), "--out", str(folder / "page.jsonl")],  # would be read as an input next time
    ]
    for args in cases:
        result, lines = _invoke(["tree", *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(lines) == 1 and "is an input" in lines[0], (args, result.stderr)
        assert dump.read_bytes() == before and hard.read_bytes() == before
    assert not (folder / "page.jsonl").exists()
    result, _ = _invoke(["tree", str(folder), "--out", str(folder / "page.html")])  # beside the inputs is fine
    assert result.exit_code == 0, result.output


def _hostile_dumps() -> list[tuple[str, bytes, str]]:
    """``(name, file content, expected words in the error)``: numbers, nesting, types and bytes a reader meets."""
    good = _good_line()
    text = json.dumps(good)

    def with_(path: list, value) -> bytes:
        record = json.loads(text)
        node = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return (json.dumps(record) + "\n").encode()

    garbage = random.Random(0).randbytes(4096)
    return [
        ("token id 2^63", with_(["responses", 0, "ids", 1], 2**63), "responses[0].ids"),
        ("token id -1", with_(["responses", 0, "ids", 1], -1), "responses[0].ids"),
        ("deep list", b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested"),
        ("deep field", text[:-1].encode() + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested"),
        ("NaN score", text.replace('"score": 1.0', '"score": NaN', 1).encode() + b"\n", "score"),
        ("inf score", text.replace('"score": 1.0', '"score": 1e400', 1).encode() + b"\n", "score"),
        ("huge int score", text.replace('"score": 1.0', '"score": 1' + "0" * 400, 1).encode() + b"\n", "score"),
        ("5000 digits", text.replace('"step": 4', '"step": ' + "9" * 5000, 1).encode() + b"\n", "number"),
        ("huge step", with_(["step"], 2**64), "step"),
        ("float id", with_(["responses", 0, "ids", 0], 1.5), "responses[0].ids"),
        ("string length", with_(["responses", 1, "length"], "3"), "responses[1].length"),
        ("responses object", with_(["responses"], {"a": 1}), "responses"),
        ("uid list", with_(["uid"], [1, 2]), "uid"),
        ("huge hole", with_(["responses", 0, "mask_holes"], [[0, 10**400]]), "mask_holes"),
        ("huge branch", with_(["responses", 0, "branches", 0, 1], 10**400), "branches"),
        ("garbage", garbage, "dump.jsonl:"),
        ("zeros", b"\x00" * 64, "invalid JSON"),
        ("empty", b"", "empty file"),
        ("blank lines", b"\n  \n\t\n", "empty file"),
        ("verl NaN score", b'{"input": "q", "output": "a", "score": NaN, "step": 1}\n', "score"),
        ("verl huge score", b'{"input": "q", "output": "a", "score": 1' + b"0" * 400 + b', "step": 1}\n', "score"),
        ("verl step string", b'{"input": "q", "output": "a", "score": 1.0, "step": "2"}\n', "step"),
        ("verl huge step", b'{"input": "q", "output": "a", "score": 1.0, "step": 1' + b"0" * 30 + b"}\n", "step"),
        ("verl output list", b'{"input": "q", "output": ["a"], "score": 1.0, "step": 1}\n', "output"),
    ]


@pytest.mark.parametrize(("name", "content", "words"), _hostile_dumps(), ids=[c[0] for c in _hostile_dumps()])
def test_hostile_files_give_one_line_and_exit_status_2(tmp_path, name, content, words, make_tokenizer):
    path = tmp_path / "dump.jsonl"
    path.write_bytes(content)
    args = ["tree", str(path), "--out", str(tmp_path / "page.html")]
    if b'"input"' in content:  # verl rollout rows need a tokenizer
        args += ["--tokenizer", str(make_tokenizer(["q a"]))]
    result, lines = _invoke(args)
    assert result.exit_code == 2, (name, result.output, result.exception)
    assert len(lines) == 1 and words in lines[0], (name, result.stderr)
    assert lines[0].startswith(f"tempo-verl tree: error: {path}"), (name, lines)
    assert not (tmp_path / "page.html").exists()
    with pytest.raises(TreeInputError):
        load_tree_input(path, tokenizer=lambda texts, **_: {"input_ids": [[1] for _ in texts]})


def test_a_directory_without_dumps_and_a_directory_input_with_junk(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result, lines = _invoke(["tree", str(tmp_path), "--out", str(tmp_path / "page.html")])
    assert result.exit_code == 2 and len(lines) == 1 and "no *.jsonl files" in lines[0]
    (tmp_path / "dir.jsonl").mkdir()  # a folder with a dump's name is not a dump
    result, lines = _invoke(["tree", str(tmp_path), "--out", str(tmp_path / "page.html")])
    assert result.exit_code == 2 and len(lines) == 1 and "no *.jsonl files" in lines[0]


@pytest.mark.parametrize("offline", ["", "1"])
def test_an_unreachable_tokenizer_hub_fails_at_once_with_one_line(tmp_path, monkeypatch, offline, make_tokenizer):
    dump = tmp_path / "tempo_trees_step4.jsonl"
    dump.write_text(json.dumps(_good_line()) + "\n")
    # Port 9 (discard) on this machine refuses at once: an unreachable hub, with or without a network.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    start = time.monotonic()
    result, lines = _invoke(["tree", str(dump), "--tokenizer", "nobody/no-such-model", "--out", "x.html"])
    seconds = time.monotonic() - start
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("tempo-verl tree: error: --tokenizer nobody/no-such-model:"), lines
    assert ("HF_HUB_OFFLINE" in lines[0]) == bool(offline) and "tokenizer's directory" in lines[0], lines
    assert seconds < 20, seconds  # the documented bound: one probe of the hub (5 s), no retries (was 51 s)
    # A local tokenizer directory needs no hub.
    tok = make_tokenizer(["one two three"])
    result, _ = _invoke(["tree", str(dump), "--tokenizer", str(tok), "--out", str(tmp_path / "p.html")])
    assert result.exit_code == 0 and (tmp_path / "p.html").exists(), result.output


def test_a_verl_rollout_file_holding_several_steps_is_read_row_by_row(tmp_path, make_tokenizer):
    rows = [
        {"input": "P1", "output": f"answer {k} of step {step}", "gts": "1", "score": float(k % 2), "step": step}
        for step in (1, 2, 3)
        for k in range(3)
    ]
    rows.insert(1, {"input": "P2", "output": "alone", "score": 0.0, "step": 2})  # between rows of step 1
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def words(texts, add_special_tokens=False):
        vocab: dict[str, int] = {}
        return {"input_ids": [[vocab.setdefault(w, len(vocab)) for w in t.split()] for t in texts]}

    records = load_tree_input(path, tokenizer=words)
    assert [(r["step"], r["prompt"], len(r["responses"])) for r in records] == [
        (1, "P1", 3),
        (2, "P2", 1),
        (2, "P1", 3),
        (3, "P1", 3),
    ]
    # A prompt keeps its uid across steps (--uid follows it); the step tells its groups apart.
    assert len({r["uid"] for r in records}) == 2 and records[1]["source"] == f"{path}:2"

    tok = make_tokenizer([r["output"] for r in rows])
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["tree", str(path), "--step", "2", "--tokenizer", str(tok), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 of 2 groups" in result.stdout
    page = out.read_text()
    assert page.count('<section class="group"') == 2 and 'data-step="2"' in page and 'data-step="1"' not in page
