"""The tree dump: records from a PrefixForest, the background writer, reading and validating dump files."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
import torch

from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.trees.format import FORMAT, TreeInputError, dump_file_name, token_values
from tempo_verl.trees.readers import load_tree_input
from tempo_verl.trees.records import group_records
from tempo_verl.trees.writer import TreeDumpWriter


def _batch(seed: int = 0, groups: int = 5, size: int = 4, length: int = 24):
    """A batch with shared prefixes, non-contiguous groups, ragged lengths, mask holes and a singleton group.

    Returns:
        ``(responses (bs, L), attention (bs, L), response_mask (bs, L), rewards (bs, L), uids (bs,))``.
    """
    g = torch.Generator().manual_seed(seed)
    rows, uids = [], []
    for k in range(groups):
        stem = torch.randint(1, 5, (length,), generator=g)
        n = 1 if k == groups - 1 else size
        for _ in range(n):
            row = stem.clone()
            cut = int(torch.randint(0, length, (1,), generator=g))
            row[cut:] = torch.randint(1, 5, (length - cut,), generator=g)
            rows.append(row)
            uids.append(f"prompt-{k}")
    responses = torch.stack(rows)
    bs = responses.shape[0]
    perm = torch.randperm(bs, generator=g)  # rows of a group are not contiguous
    responses = responses[perm]
    uids = [uids[i] for i in perm.tolist()]
    lengths = torch.randint(length // 2, length + 1, (bs,), generator=g)
    attention = (torch.arange(length)[None, :] < lengths[:, None]).long()
    responses = responses * attention  # pad id 0 beyond the valid length
    mask = attention.clone()
    mask[0, 2:5] = 0  # a tool-output hole
    mask[1, 0] = 0
    rewards = torch.zeros(bs, length)
    rewards[:, 0] = torch.randint(0, 3, (bs,), generator=g).float() / 2
    return responses, attention, mask, rewards, uids


def _forest(responses, attention, mask, rewards, uids):
    _, _, forest = tempo_advantage_and_forest(
        rewards, mask, index=uids, responses=responses, response_attention_mask=attention
    )
    return forest


def _zero_runs(mask: list[int]) -> list[list[int]]:
    """Runs ``[start, end)`` of zeros, the slow obvious way."""
    runs: list[list[int]] = []
    for t, m in enumerate(mask):
        if m == 0 and runs and runs[-1][1] == t:
            runs[-1][1] = t + 1
        elif m == 0:
            runs.append([t, t + 1])
    return runs


def _write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_writer_round_trip_reconstructs_the_estimators_values(tmp_path):
    batch = _batch()
    responses, attention, mask, _, uids = batch
    forest = _forest(*batch)
    writer = TreeDumpWriter(tmp_path / "trees", every=10, groups=3)
    assert writer.maybe_dump(20, forest, responses, mask, uids)
    writer.close()
    assert writer.written == [tmp_path / "trees" / dump_file_name(20, writer.writer_id)]

    records = load_tree_input(tmp_path / "trees")
    assert len(records) == 3  # groups of two or more first, in batch order
    firsts = [min(r["row"] for r in rec["responses"]) for rec in records]
    assert firsts == sorted(firsts)
    assert all(len(rec["responses"]) == 4 for rec in records)
    lengths = attention.sum(-1)
    holes_seen = 0
    for rec in records:
        assert rec["format"] == FORMAT and rec["step"] == 20
        assert rec["source"].endswith(f"{dump_file_name(20, writer.writer_id)}:{records.index(rec) + 1}")
        rows = torch.tensor([r["row"] for r in rec["responses"]])
        assert {uids[i] for i in rows.tolist()} == {rec["uid"]}
        dense = forest.values(rows)
        for k, resp in enumerate(rec["responses"]):
            i, n = int(rows[k]), int(lengths[rows[k]])
            assert resp["length"] == n and resp["ids"] == responses[i, :n].tolist()
            assert resp["score"] == float(forest.scores[i])
            assert resp["mask_holes"] == _zero_runs(mask[i, :n].tolist())
            holes_seen += len(resp["mask_holes"])
            before, after, td = token_values(resp, rec["root_value"])
            assert torch.allclose(torch.tensor(before, dtype=torch.float64), dense[k, :n], rtol=0, atol=1e-12)
            assert torch.allclose(torch.tensor(after, dtype=torch.float64), dense[k, 1 : n + 1], rtol=0, atol=1e-12)
            # TD: bit-exact where the estimator applied it, exactly 0 elsewhere.
            sel = forest.branch_row == i
            expected = dict(zip(forest.branch_pos[sel].tolist(), forest.td[sel].tolist(), strict=True))
            assert {t: v for t, v in enumerate(td) if t in expected} == expected
            assert all(v == 0.0 for t, v in enumerate(td) if t not in expected)
    assert holes_seen >= 2  # the batch's mask holes are in the dumped groups


def test_group_choice_prefers_groups_of_two_or_more_in_batch_order():
    batch = _batch(seed=3, groups=4)
    responses, _, mask, _, uids = batch
    forest = _forest(*batch)
    records = group_records(forest, responses, mask, uids, step=1, max_groups=10)
    assert [len(r["responses"]) for r in records] == [4, 4, 4, 1]  # the singleton comes last
    firsts = [min(x["row"] for x in r["responses"]) for r in records[:3]]
    assert firsts == sorted(firsts)
    assert len(group_records(forest, responses, mask, uids, step=1, max_groups=2)) == 2
    assert group_records(forest, responses, mask, uids, step=1, max_groups=2) == records[:2]


def test_dump_steps_first_seen_and_every_kth_never_twice(tmp_path):
    batch = _batch()
    responses, _, mask, _, uids = batch
    forest = _forest(*batch)
    writer = TreeDumpWriter(tmp_path, every=5, groups=1)
    done = []
    for s in [3, 3, 4, 5, 5, 6, 10, None, 11]:
        if writer.maybe_dump(s, forest, responses, mask, uids):
            done.append(s)
        assert writer.flush(timeout=10)
    writer.close()
    assert done == [3, 5, 10]
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [dump_file_name(s, writer.writer_id) for s in (10, 3, 5)]
    assert not writer.maybe_dump(15, forest, responses, mask, uids)  # closed


def test_write_happens_off_the_callers_thread(tmp_path, monkeypatch):
    import tempo_verl.trees.writer as td

    batch = _batch()
    responses, _, mask, _, uids = batch
    forest = _forest(*batch)
    release = threading.Event()
    threads = []
    real_write = td.write_records

    def slow_write(directory, name, records):
        threads.append(threading.current_thread())
        release.wait(10)
        return real_write(directory, name, records)

    monkeypatch.setattr(td, "write_records", slow_write)
    writer = TreeDumpWriter(tmp_path, every=1, groups=2, max_pending=2)
    assert writer.maybe_dump(1, forest, responses, mask, uids)  # returns while the write is blocked
    assert writer.maybe_dump(2, forest, responses, mask, uids)
    assert not writer.maybe_dump(3, forest, responses, mask, uids)  # two pending: skipped, not queued
    assert not list(tmp_path.glob("*.jsonl"))
    release.set()
    writer.close()
    assert threads and all(t is not threading.main_thread() and t.daemon for t in threads)
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [
        dump_file_name(1, writer.writer_id),
        dump_file_name(2, writer.writer_id),
    ]
    assert writer.failures == 1


def test_unwritable_directory_does_not_stop_a_step(tmp_path, caplog):
    batch = _batch()
    responses, _, mask, _, uids = batch
    forest = _forest(*batch)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    writer = TreeDumpWriter(blocker / "trees", every=1, groups=2)  # construction does not raise either
    with caplog.at_level(logging.WARNING, logger="tempo_verl.trees.writer"):
        assert writer.maybe_dump(1, forest, responses, mask, uids)
        writer.close()
    assert writer.written == [] and writer.failures == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "step 1" in warnings[0].getMessage() and "a-file" in warnings[0].getMessage()


def test_a_failure_on_the_callers_thread_is_logged_not_raised(tmp_path, caplog):
    batch = _batch()
    responses, _, mask, _, uids = batch
    forest = _forest(*batch)
    writer = TreeDumpWriter(tmp_path, every=1, groups=2)
    with caplog.at_level(logging.WARNING, logger="tempo_verl.trees.writer"):
        assert not writer.maybe_dump(1, forest, responses[:, :0][:0], mask, uids)  # bad tensors
        assert writer.maybe_dump(2, forest, responses, mask, uids)  # the next dump still works
        writer.close()
    assert writer.failures == 1 and writer.written == [tmp_path / dump_file_name(2, writer.writer_id)]
    assert any("step 1 skipped" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------
# Named errors for bad files
# --------------------------------------------------------------------------------------------


def _good_record() -> dict:
    """The spec's worked example: a b c (1), a b d (0), a e (1), f (0)."""
    responses = torch.tensor([[1, 2, 3], [1, 2, 4], [1, 5, 0], [6, 0, 0]])
    attention = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0]])
    rewards = torch.zeros(4, 3)
    rewards[:, 0] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    forest = _forest(responses, attention, attention, rewards, ["q"] * 4)
    return group_records(forest, responses, attention, ["q"] * 4, step=7, max_groups=1)[0]


def _corrupt(record: dict, path: list, value=None, delete: bool = False) -> dict:
    record = json.loads(json.dumps(record))
    node = record
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return record


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (_corrupt(_good_record(), ["responses", 1, "ids"], delete=True), "responses[1]: missing field 'ids'"),
        (_corrupt(_good_record(), ["root_value"], delete=True), "missing field 'root_value'"),
        (_corrupt(_good_record(), ["responses", 2, "length"], 5), "responses[2].length: 5 is beyond its 2 token ids"),
        (_corrupt(_good_record(), ["format"], "tempo-tree/9"), "format 'tempo-tree/9' is not supported"),
        (_corrupt(_good_record(), ["responses", 0, "score"], "high"), "responses[0].score: expected a finite number"),
        (_corrupt(_good_record(), ["responses", 0, "mask_holes"], [[2, 1]]), "responses[0].mask_holes"),
        (
            _corrupt(_good_record(), ["responses", 0, "branches", 1, 2], 0.9),
            "responses[0].branches at t=1: V(s_t+1) = 0.9, but the mean score of the 2 responses",
        ),
        (
            _corrupt(_good_record(), ["responses", 3, "branches"], []),
            "responses[3].branches: the group's tree branches at tokens [0]",
        ),
    ],
)
def test_corrupt_dump_lines_give_the_file_and_line(tmp_path, line, message):
    path = _write_lines(tmp_path / "tempo_trees_step7.jsonl", [_good_record(), line])
    with pytest.raises(TreeInputError) as info:
        load_tree_input(path)
    text = str(info.value)
    assert text.startswith(f"{path}:2: "), text
    assert message in text
    assert "\n" not in text


def test_missing_empty_and_unknown_inputs(tmp_path):
    with pytest.raises(TreeInputError, match=r"nope\.jsonl: no such file or directory$"):
        load_tree_input(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TreeInputError, match=r"empty: no \*\.jsonl files"):
        load_tree_input(tmp_path / "empty")
    with pytest.raises(TreeInputError, match=r"blank\.jsonl:1: empty file"):
        load_tree_input(_write_lines(tmp_path / "blank.jsonl", [""]))
    with pytest.raises(TreeInputError, match=r"other\.jsonl:1: neither a tempo-tree dump line"):
        load_tree_input(_write_lines(tmp_path / "other.jsonl", [{"foo": 1}]))
    bad_utf8 = tmp_path / "bytes.jsonl"
    bad_utf8.write_bytes(json.dumps(_good_record()).encode() + b"\n\xff\xfe\n")
    with pytest.raises(TreeInputError, match=r"bytes\.jsonl:2: not UTF-8 text"):
        load_tree_input(bad_utf8)


def test_verl_rollout_dump_is_detected_and_needs_a_tokenizer(tmp_path):
    rows = [{"input": "q", "output": "a b", "gts": "x", "score": 1.0, "step": 3}]
    path = _write_lines(tmp_path / "3.jsonl", rows)
    with pytest.raises(TreeInputError, match=r"3\.jsonl:1: this is a verl rollout dump .*--tokenizer"):
        load_tree_input(path)

    class Words:
        """A whitespace 'tokenizer' with the call signature of a Hugging Face one."""

        def __init__(self) -> None:
            self.vocab: dict[str, int] = {}

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[self.vocab.setdefault(w, len(self.vocab)) for w in t.split()] for t in texts]}

    rows = [
        {"input": "P1", "output": "a b c", "score": 1.0, "step": 3, "acc": True},
        {"input": "P2", "output": "x y", "score": 0.0, "step": 3, "acc": False},
        {"input": "P1", "output": "a b d", "score": 0.0, "step": 3, "acc": False},
        {"input": "P1", "output": "a e", "score": 1.0, "step": 3, "acc": True},
    ]
    records = load_tree_input(_write_lines(tmp_path / "3.jsonl", rows), tokenizer=Words())
    assert [r["prompt"] for r in records] == ["P1", "P2"]
    assert [len(r["responses"]) for r in records] == [3, 1]
    assert records[0]["step"] == 3 and records[0]["source"].endswith("3.jsonl:1")
    abc = records[0]["responses"][0]
    assert [b[0] for b in abc["branches"]] == [1, 2]  # leaves 'a e' after a, 'a b d' after a b
    assert abc["branches"][0][1:] == [pytest.approx(2 / 3), pytest.approx(0.5)]

    bad = _write_lines(tmp_path / "4.jsonl", [rows[0], {"input": "P1", "score": 1.0}])
    with pytest.raises(TreeInputError, match=r"4\.jsonl:2: missing field 'output'"):
        load_tree_input(bad, tokenizer=Words())
