"""The tree picture: compressed tries drawn as SVG (parsed, never compared as bytes) and the `tree` command."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tempo_verl.cli import app
from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.trees.records import group_records
from tempo_verl.trees.render import render_html, summary_stats
from tempo_verl.trees.writer import TreeDumpWriter

SVG = "{http://www.w3.org/2000/svg}"


def _records(groups: dict[str, list[tuple[list[int], float]]], step: int = 4) -> list[dict]:
    """Dump records of hand-made groups (uid -> [(token ids, score)]), built by the estimator's own forest."""
    rows = [(uid, ids, score) for uid, members in groups.items() for ids, score in members]
    width = max(len(ids) for _, ids, _ in rows)
    responses = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    rewards = torch.zeros(len(rows), width)
    for i, (_, ids, score) in enumerate(rows):
        responses[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        rewards[i, len(ids) - 1] = score
    uids = [uid for uid, _, _ in rows]
    _, _, forest = tempo_advantage_and_forest(
        rewards, attention, index=uids, responses=responses, response_attention_mask=attention
    )
    records = group_records(forest, responses, attention, uids, step=step, max_groups=len(groups))
    order = list(groups)
    return sorted(records, key=lambda r: order.index(r["uid"]))


def _trees(page: str) -> dict[str, ET.Element]:
    """uid -> the parsed SVG tree of that group's section."""
    out = {}
    for uid, body in re.findall(r'<section class="group"[^>]*data-uid="([^"]*)"[^>]*>(.*?)</section>', page, re.S):
        svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg" class="tree".*?</svg>', body, re.S)
        assert svg is not None
        out[uid] = ET.fromstring(svg.group(0))
    return out


def _nodes(svg: ET.Element) -> list[tuple[int, int, float, int]]:
    """``(depth, count, V rounded, leaf)`` of every node, sorted."""
    return sorted(
        (
            int(g.get("data-depth")),
            int(g.get("data-count")),
            round(float(g.get("data-value")), 9),
            int(g.get("data-leaf")),
        )
        for g in svg.iter(f"{SVG}g")
        if g.get("class") == "node"
    )


def _edges(svg: ET.Element) -> list[dict]:
    out = []
    for g in svg.iter(f"{SVG}g"):
        if g.get("class") != "edge":
            continue
        line = next(p for p in g.iter(f"{SVG}path") if p.get("class") == "line")
        title = g.find(f"{SVG}title").text or ""
        out.append(
            {
                "span": (int(g.get("data-start")), int(g.get("data-end"))),
                "branch": int(g.get("data-branch")),
                "end_marker": int(g.get("data-end-marker")),
                "td": float(g.get("data-td")),
                "rgb": tuple(int(line.get("stroke")[k : k + 2], 16) for k in (1, 3, 5)),
                "width": float(line.get("stroke-width")),
                "text": title.split("\n\n", 1)[1] if "\n\n" in title else "",
            }
        )
    return out


KNOWN = {
    # The spec's worked example: a b c (1), a b d (0), a e (1), f (0).
    "g1": [([1, 2, 3], 1.0), ([1, 2, 4], 0.0), ([1, 5], 1.0), ([6], 0.0)],
    # A shared run the root does not branch on, and a response that ends where two others go on.
    "g2": [([7, 8, 9], 1.0), ([7, 8, 10], 0.0), ([7, 8], 0.5)],
    # Exact duplicates.
    "g3": [([11, 12], 1.0), ([11, 12], 1.0), ([11, 13], 0.0)],
    # A branch that earns no TD credit (both sides score alike).
    "g4": [([14, 15], 1.0), ([14, 16], 1.0)],
    # No shared first token, and a singleton group.
    "g5": [([17], 1.0), ([18], 0.0)],
    "g6": [([19], 1.0)],
}


def test_known_trees_have_exactly_the_expected_nodes_values_and_coloured_edges():
    page = render_html(_records(KNOWN))
    trees = _trees(page)
    assert list(trees) == list(KNOWN)
    assert _nodes(trees["g1"]) == sorted(
        [
            *[(0, 4, 0.5, 0), (1, 3, round(2 / 3, 9), 0), (2, 2, 0.5, 0)],
            *[(3, 1, 1.0, 1), (3, 1, 0.0, 1), (2, 1, 1.0, 1), (1, 1, 0.0, 1)],
        ]
    )
    assert _nodes(trees["g2"]) == sorted(
        [(0, 3, 0.5, 0), (2, 3, 0.5, 0), (3, 1, 1.0, 1), (3, 1, 0.0, 1), (2, 1, 0.5, 1)]
    )
    assert _nodes(trees["g3"]) == sorted(
        [(0, 3, round(2 / 3, 9), 0), (1, 3, round(2 / 3, 9), 0), (2, 2, 1.0, 1), (2, 1, 0.0, 1)]
    )

    def summary(uid):
        return sorted(
            (e["span"], e["branch"], e["end_marker"], round(e["td"], 9), e["text"]) for e in _edges(trees[uid])
        )

    third = round(1 / 3, 9)
    assert summary("g1") == sorted(
        [
            ((0, 1), 1, 0, round(1 / 6, 9), "1"),
            ((0, 1), 1, 0, -0.5, "6"),
            ((1, 2), 1, 0, round(-1 / 6, 9), "2"),
            ((1, 2), 1, 0, third, "5"),
            ((2, 3), 1, 0, 0.5, "3"),
            ((2, 3), 1, 0, -0.5, "4"),
        ]
    )
    assert summary("g2") == sorted(
        [((0, 2), 0, 0, 0.0, "7 8"), ((2, 3), 1, 0, 0.5, "9"), ((2, 3), 1, 0, -0.5, "10"), ((2, 2), 0, 1, 0.0, "")]
    )
    assert summary("g3") == sorted(
        [((0, 1), 0, 0, 0.0, "11"), ((1, 2), 1, 0, third, "12"), ((1, 2), 1, 0, round(-2 / 3, 9), "13")]
    )

    # Colours: blue for positive credit, red for negative, grey where there is none; wider for larger |TD|.
    for uid in KNOWN:
        for e in _edges(trees[uid]):
            r, g, b = e["rgb"]
            if e["td"] > 0:
                assert b > r + 60, (uid, e)
            elif e["td"] < 0:
                assert r > b + 60, (uid, e)
            else:
                assert r == g == b, (uid, e)
    g1 = sorted(_edges(trees["g1"]), key=lambda e: abs(e["td"]))
    assert [e["width"] for e in g1] == sorted(e["width"] for e in g1) and g1[0]["width"] < g1[-1]["width"]
    g4 = sorted((e["span"], e["branch"], e["td"]) for e in _edges(trees["g4"]))
    assert g4 == [((0, 1), 0, 0.0), ((1, 2), 1, 0.0), ((1, 2), 1, 0.0)]  # branch edges without credit: grey

    # Leaves carry the scores; duplicates share one leaf.
    leaves = [g for g in trees["g3"].iter(f"{SVG}g") if g.get("data-leaf") == "1"]
    assert sorted(g.get("data-scores") for g in leaves) == ["0.0", "1.0 1.0"]
    assert any("×2" in "".join(t.itertext()) for g in leaves for t in g.iter(f"{SVG}text"))


def test_summary_header_counts_branch_tokens_shared_groups_and_divergence_depths():
    records = _records(KNOWN)
    stats = summary_stats(records)
    assert (stats["tokens"], stats["branch_tokens"], stats["td_nonzero"]) == (30, 18, 16)
    assert (stats["groups"], stats["multi_groups"], stats["shared_groups"]) == (6, 5, 4)
    assert sorted(stats["divergence"]) == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]
    hist = dict(stats["histogram"])
    assert (hist["0"], hist["1–3"], hist["4–15"]) == (3, 11, 0)

    page = render_html(records, max_groups=2)
    assert len(_trees(page)) == 2  # two drawn, all six summarised
    assert "60.0%" in page and "4 / 5" in page and "6</b><span>groups (15 responses)" in page
    buckets = dict(re.findall(r'class="bucket" data-label="([^"]*)" data-count="(\d+)"', page))
    assert buckets["0"] == "3" and buckets["1–3"] == "11"


def test_long_groups_are_elided_with_the_full_text_kept_for_hover():
    g = torch.Generator().manual_seed(0)
    stem = torch.randint(100, 999, (400,), generator=g).tolist()
    members = []
    for k in range(16):
        tail = torch.randint(100, 999, (2500 + 37 * k,), generator=g).tolist()
        members.append(([*stem, *tail], float(k % 3 == 0)))
    page = render_html(_records({"long": members}))
    svg = _trees(page)["long"]
    assert float(svg.get("width")) <= 1400  # one screen wide for a shallow tree
    labels = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text") if t.get("class") == "label"]
    assert len(labels) == 17 and all(len(x) <= 160 for x in labels)  # fit the picture, while texts are long
    assert all("…" in x for x in labels)
    texts = {e["text"] for e in _edges(svg)}
    assert " ".join(str(t) for t in stem) in texts  # the shared run in full, once
    assert all(" ".join(str(t) for t in ids[400:]) in texts for ids, _ in members)
    assert len(page) < 1_500_000


ROLLOUT = [
    ("P1", "The answer is yes because six times seven is 42.", 1.0),
    ("P2", "Let x be two. Then x plus x is four.", 1.0),
    ("P1", "The answer is yes since we multiply.", 1.0),
    ("P1", "The answer is no.", 0.0),
    ("P2", "Let x be two. Then x times x is four.", 1.0),
    ("P1", "I am not sure at all.", 0.0),
    ("P2", "Let y be three.", 0.0),
    ("P3", "x < y & z > w", 0.5),
]


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, make_tokenizer) -> tuple[Path, Path]:
    """A verl rollout dump directory (steps 3 and 9) and a tokenizer directory."""
    tmp = tmp_path_factory.mktemp("rollout")
    tok = make_tokenizer([text for _, text, _ in ROLLOUT])
    data = tmp / "rollout_data"
    data.mkdir()
    for step in (3, 9):
        with open(data / f"{step}.jsonl", "w") as f:
            for prompt, text, score in ROLLOUT:
                row = {"input": f"{prompt} step {step}", "output": text, "gts": "42", "score": score, "step": step}
                f.write(json.dumps(row | {"acc": score > 0}) + "\n")
    return data, tok


def test_verl_rollout_dump_is_grouped_by_prompt_and_drawn_with_text(rollout, tmp_path):
    data, tok = rollout
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["tree", str(data), "--tokenizer", str(tok), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 of 3 groups from 9.jsonl" in result.stdout  # the latest step of the directory
    page = out.read_text()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    trees = _trees(page)
    assert len(trees) == 3
    prompts = re.findall(r"<summary>prompt[^<]*</summary><pre>([^<]*)</pre>", page)
    assert prompts == ["P1 step 9", "P2 step 9", "P3 step 9"]
    texts = [sorted(e["text"] for e in _edges(svg)) for svg in trees.values()]
    assert texts[0] == sorted(
        [
            "The answer is",
            " yes",
            " because six times seven is 42.",
            " since we multiply.",
            " no.",
            "I am not sure at all.",
        ]
    )
    assert texts[1] == sorted(["Let", " x be two. Then x", " plus x is four.", " times x is four.", " y be three."])
    assert texts[2] == ["x < y & z > w"]  # escaped in the page, the same text once parsed
    for shared in ("The answer is", " x be two. Then x"):
        assert sum(shared in t for ts in texts for t in ts) == 1
    counts = [_nodes(svg) for svg in trees.values()]
    assert (0, 4, 0.5, 0) in counts[0] and (3, 3, round(2 / 3, 9), 0) in counts[0]  # "The answer is": 3, V 2/3

    uid = list(trees)[1]
    one = tmp_path / "one.html"
    args = ["tree", str(data / "3.jsonl"), "--tokenizer", str(tok), "--out", str(one), "--uid", uid]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0  # uids come from the prompt text, which differs between steps
    assert "not found" in result.stderr
    args = ["tree", str(data), "--step", "3", "--tokenizer", str(tok), "--out", str(one), "--groups", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(_trees(one.read_text())) == 1 and "P1 step 3" in one.read_text()


def test_dump_files_round_trip_through_the_command(tmp_path):
    records = _records(KNOWN)
    raw = [{k: v for k, v in r.items() if k != "source"} for r in records]
    (tmp_path / "tempo_trees_step4.jsonl").write_text("".join(json.dumps(r) + "\n" for r in raw))
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["tree", str(tmp_path), "--out", str(out), "--uid", "g2", "--uid", "g3"])
    assert result.exit_code == 0, result.output
    trees = _trees(out.read_text())
    assert list(trees) == ["g2", "g3"]
    assert _nodes(trees["g2"]) == _nodes(_trees(render_html(records))["g2"])

    # The writer's own files too, from a real forest.
    responses = torch.tensor([[1, 2, 3], [1, 2, 4], [1, 5, 0]])
    attention = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0.5, 0, 0]])
    _, _, forest = tempo_advantage_and_forest(
        rewards, attention, index=["u"] * 3, responses=responses, response_attention_mask=attention
    )
    writer = TreeDumpWriter(tmp_path / "dumps", every=1, groups=4)
    assert writer.maybe_dump(12, forest, responses, attention, ["u"] * 3)
    writer.close()
    result = CliRunner().invoke(app, ["tree", str(tmp_path / "dumps"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _nodes(_trees(out.read_text())["u"]) == sorted(
        [(0, 3, 0.5, 0), (1, 3, 0.5, 0), (2, 2, 0.5, 0), (3, 1, 1.0, 1), (3, 1, 0.0, 1), (2, 1, 0.5, 1)]
    )


def test_command_errors_are_one_line_with_exit_status_2(tmp_path, rollout):
    data, _ = rollout
    good = json.dumps({k: v for k, v in _records(KNOWN)[0].items() if k != "source"})
    bad = tmp_path / "tempo_trees_step1.jsonl"
    bad.write_text(good + "\n" + good.replace('"ids"', '"idz"', 1) + "\n")
    runner = CliRunner()
    cases = [
        (["tree", str(tmp_path / "missing.jsonl"), "--out", "x.html"], "missing.jsonl: no such file or directory"),
        (["tree", str(bad), "--out", str(tmp_path / "x.html")], f"{bad}:2: responses[0]: missing field 'ids'"),
        (["tree", str(data), "--out", str(tmp_path / "x.html")], "9.jsonl:1: this is a verl rollout dump"),
        (["tree", str(data), "--tokenizer", str(tmp_path / "none"), "--out", "x.html"], "--tokenizer"),
        (["tree", str(data), "--step", "5", "--out", "x.html"], "no file for step 5 (steps here: 3, 9)"),
        (["tree", str(bad), "--uid", "zzz", "--out", str(tmp_path / "x.html")], "uid 'zzz' not found"),
        (["tree", str(data / "3.jsonl"), "--out", str(bad / "x.html")], "cannot write the page"),
    ]
    for args, message in cases:
        if "--uid" in args or "cannot write" in message:  # these need a readable input
            args[1] = str(tmp_path / "ok.jsonl") if "--uid" in args else args[1]
            (tmp_path / "ok.jsonl").write_text(good + "\n")
        if "cannot write" in message:
            args[1] = str(tmp_path / "ok.jsonl")
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        assert "Traceback" not in result.output


def test_help_documents_the_command():
    result = CliRunner().invoke(app, ["tree", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for word in ("INPUT", "--out", "--tokenizer", "--groups", "--uid", "--step", "verl rollout dump", "Exit status"):
        assert word in result.stdout, word


def test_masked_branch_tokens_empty_responses_and_singletons():
    records = _records({"e": [([], 1.0), ([1, 2], 0.0), ([1, 3], 1.0), ([4], 0.0)], "s": [([5, 6, 7], 0.25)]})
    records[0]["responses"][3]["mask_holes"] = [[0, 1]]  # the branch token of "4" is a tool-output token
    records[0]["responses"][1]["mask_holes"] = [[0, 1]]  # one of the two responses through "1": still credited
    trees = _trees(render_html(records))
    # The empty response ends at the root: an end marker to a leaf with V(root) (the prefix value TEMPO uses).
    assert _nodes(trees["e"]) == sorted(
        [(0, 4, 0.5, 0), (0, 1, 0.5, 1), (1, 2, 0.5, 0), (2, 1, 0.0, 1), (2, 1, 1.0, 1), (1, 1, 0.0, 1)]
    )
    masked = {
        e.get("data-start") + "-" + e.get("data-end"): e
        for e in trees["e"].iter(f"{SVG}g")
        if e.get("class") == "edge" and e.get("data-masked") == "1"
    }
    assert list(masked) == ["0-1"] and float(masked["0-1"].get("data-td")) == -0.5  # only the edge to "4"
    line = next(p for p in masked["0-1"].iter(f"{SVG}path") if p.get("class") == "line")
    assert line.get("stroke-dasharray")
    assert any("no credit" in (t.text or "") for t in masked["0-1"].iter(f"{SVG}text"))
    leaves = [g for g in trees["e"].iter(f"{SVG}g") if g.get("data-leaf") == "1"]
    assert sorted(g.get("data-scores") for g in leaves) == ["0.0", "0.0", "1.0", "1.0"]
    # A singleton group: one unbranched edge, nothing credited.
    assert _nodes(trees["s"]) == [(0, 1, 0.25, 0), (3, 1, 0.25, 1)]
    assert [(e["branch"], e["td"], e["text"]) for e in _edges(trees["s"])] == [(0, 0.0, "5 6 7")]
