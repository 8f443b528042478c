"""Data preparation on small local samples shaped like each hub source, read back by verl's RLHFDataset."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tempo_verl.cli import app as root_app
from tempo_verl.recipes.data import sources as prep
from tempo_verl.recipes.data.prepare import PrepareError, prepare_eval, prepare_source, rl_schema
from tempo_verl.recipes.data.sources import CHOICE_INSTRUCTION, MATH_INSTRUCTION, choice_prompt, math_prompt
from tempo_verl.recipes.rewards import SOURCE_KINDS, compute_score


def prepare_math(
    out: Path, *, local_files: Any = None, max_train: Any = None, max_test: Any = None, seed: int = 0
) -> Any:
    return prepare_source(
        "math", out, local_files=local_files, max_rows={"train": max_train, "test": max_test}, seed=seed
    )


def prepare_medqa(
    out: Path, *, local_files: Any = None, max_train: Any = None, max_test: Any = None, seed: int = 0
) -> Any:
    return prepare_source(
        "medqa", out, local_files=local_files, max_rows={"train": max_train, "test": max_test}, seed=seed
    )


def prepare_one(name: str, out: Path, local_file: Any = None) -> Any:
    return prepare_eval(out, sets=[name], local_files={name: local_file} if local_file else None)


REPO = Path(__file__).resolve().parents[2]

# ---- samples in the hub sets' own column layouts -------------------------------------------

MATH_ROWS = [  # DigitalLearningGmbH/MATH-lighteval: problem, level, solution, type
    {
        "problem": "What is $1+1$?",
        "level": "Level 1",
        "solution": "We add: $1+1=\\boxed{2}$.",
        "type": "Prealgebra",
    },
    {
        "problem": "Simplify $\\frac{2}{4}$.",
        "level": "Level 2",
        "solution": "Divide by 2: $\\boxed{\\frac{1}{2}}$.",
        "type": "Algebra",
    },
    {"problem": "Find $x$ if $x^2=9$, $x>0$.", "level": "Level 1", "solution": "So $x=\\boxed{3}$.", "type": "Algebra"},
    {"problem": "No box here.", "level": "Level 3", "solution": "The answer is 4.", "type": "Algebra"},  # bad
    {"problem": "   ", "level": "Level 3", "solution": "\\boxed{1}", "type": "Algebra"},  # bad
]
MEDQA_OPTIONS = {"A": "Hypertension", "B": "Type 2 diabetes mellitus", "C": "Asthma", "D": "Gout"}
MEDQA_ROWS = [  # Neelectric/MedQA-USMLE: question, answer, options {A..D}, meta_info, answer_idx, metamap_phrases
    {
        "question": "A 23-year-old presents with wheezing. Most likely diagnosis?",
        "answer": "Asthma",
        "options": MEDQA_OPTIONS,
        "meta_info": "step1",
        "answer_idx": "C",
        "metamap_phrases": ["wheezing"],
    },
    {
        "question": "A 60-year-old with big toe pain. Diagnosis?",
        "answer": "Gout",
        "options": MEDQA_OPTIONS,
        "meta_info": "step2&3",
        "answer_idx": "D",
        "metamap_phrases": [],
    },
    {
        "question": "Five options here.",
        "answer": "Lupus",
        "options": {**MEDQA_OPTIONS, "E": "Lupus"},  # MedQA's five-option edition: A-E
        "meta_info": "step1",
        "answer_idx": "E",
        "metamap_phrases": [],
    },
    {
        "question": "A gap in the letters.",
        "answer": "Gout",
        "options": {"A": "x", "B": "y", "D": "z"},  # bad: options not A-D or A-E
        "meta_info": "step1",
        "answer_idx": "D",
        "metamap_phrases": [],
    },
    {
        "question": "No answer.",
        "answer": "",
        "options": MEDQA_OPTIONS,
        "meta_info": "step1",
        "answer_idx": "",  # bad: missing answer
        "metamap_phrases": [],
    },
    {
        "question": "",  # bad: empty question
        "answer": "Gout",
        "options": MEDQA_OPTIONS,
        "meta_info": "step1",
        "answer_idx": "D",
        "metamap_phrases": [],
    },
]
GSM_HARD_ROWS = [  # reasoning-machines/gsm-hard: input, code, target
    {
        "input": "Janet has 2345678 eggs and eats 3. How many are left?",
        "code": "def solution(): ...",
        "target": 2345675.0,
    },
    {"input": "Split 37 apples among 3 people. How many each?", "code": "def solution(): ...", "target": 37 / 3},
    {"input": "Broken row.", "code": "def solution(): ...", "target": None},  # bad
]
AMC23_ROWS = [  # math-ai/amc23: id, question, answer, url
    {"id": 0, "question": "How many positive divisors does 36 have?", "answer": 9.0, "url": "https://example"},
    {"id": 1, "question": "Compute $2^5$.", "answer": 32.0, "url": "https://example"},
]
MEDMCQA_ROWS = [  # openlifescienceai/medmcqa: id, question, opa..opd, cop (0-3), choice_type, exp, subject_name, ...
    {
        "id": "q1",
        "question": "Which vitamin deficiency causes scurvy?",
        "opa": "Vitamin A",
        "opb": "Vitamin B12",
        "opc": "Vitamin C",
        "opd": "Vitamin D",
        "cop": 2,
        "choice_type": "single",
        "exp": "Vitamin C.",
        "subject_name": "Biochemistry",
        "topic_name": "Vitamins",
    },
    {
        "id": "q2",
        "question": "Unanswered (test-split style).",
        "opa": "a",
        "opb": "b",
        "opc": "c",
        "opd": "d",
        "cop": -1,  # bad: missing answer
        "choice_type": "single",
        "exp": None,
        "subject_name": "Anatomy",
        "topic_name": None,
    },
    {
        "id": "q3",
        "question": "Empty option.",
        "opa": "a",
        "opb": "b",
        "opc": "c",
        "opd": "",  # bad: options not A-D
        "cop": 0,
        "choice_type": "single",
        "exp": None,
        "subject_name": "Anatomy",
        "topic_name": None,
    },
]
MMLU_ROWS = [  # cais/mmlu: question, subject, choices, answer (0-3)
    {
        "question": "The femur is in the",
        "subject": "anatomy",
        "choices": ["arm", "leg", "skull", "hand"],
        "answer": 1,
    },
    {
        "question": "DNA is made of",
        "subject": "college_biology",
        "choices": ["nucleotides", "amino acids", "lipids", "sugars only"],
        "answer": 0,
    },
    {"question": "2+2=", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},  # skip
    {"question": "Three choices", "subject": "anatomy", "choices": ["a", "b", "c"], "answer": 0},  # bad
]


def write_json_lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samples")
    return {
        "math_train": write_json_lines(root / "math_train.jsonl", MATH_ROWS),
        "math_test": write_parquet(root / "math_test.parquet", MATH_ROWS[:2]),
        "medqa_train": write_json_lines(root / "medqa_train.jsonl", MEDQA_ROWS),
        "medqa_test": write_json_lines(root / "medqa_test.jsonl", MEDQA_ROWS[:2]),
        "gsm_hard": write_json_lines(root / "gsmhardv2.jsonl", GSM_HARD_ROWS),
        "amc23": write_parquet(root / "amc23.parquet", AMC23_ROWS),
        "medmcqa": write_parquet(root / "medmcqa_validation.parquet", MEDMCQA_ROWS),
        "mmlu_medical": write_json_array(root / "mmlu.json", MMLU_ROWS),
    }


def write_json_array(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def prepared(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out")
    reports = [
        *prepare_math(out, local_files={"train": samples["math_train"], "test": samples["math_test"]}),
        *prepare_medqa(out, local_files={"train": samples["medqa_train"], "test": samples["medqa_test"]}),
        *prepare_eval(out, local_files={name: samples[name] for name in prep.EVAL_SETS}),
    ]
    return {"out": out, "reports": {(r.source, r.split): r for r in reports}}


def invoke(args: list[str]) -> Any:
    """Run ``tempo-verl ARGS`` in-process; output is de-boxed and unwrapped for matching."""
    result = CliRunner().invoke(root_app, args, env={"COLUMNS": "250", "NO_COLOR": "1"})
    result.plain = re.sub(r"[\s│╭╮╰╯─┃┏┓┗┛━┡┩┳┻╇]+", " ", result.output)
    return result


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


# ---- conversion ------------------------------------------------------------------------------


def test_reports_count_bad_rows_by_reason(prepared: dict[str, Any]) -> None:
    reports = prepared["reports"]
    expected = {
        ("math", "train"): (5, 3, {"empty question": 1, "missing answer": 1}, 0),
        ("math", "test"): (2, 2, {}, 0),
        ("medqa", "train"): (6, 3, {"empty question": 1, "missing answer": 1, "options not A-D or A-E": 1}, 0),
        ("medqa", "test"): (2, 2, {}, 0),
        ("gsm_hard", "test"): (3, 2, {"missing answer": 1}, 0),
        ("amc23", "test"): (2, 2, {}, 0),
        ("medmcqa", "test"): (3, 1, {"missing answer": 1, "options not A-D": 1}, 0),
        ("mmlu_medical", "test"): (4, 2, {"options not A-D": 1}, 1),
    }
    assert set(reports) == set(expected)
    for key, (read, written, bad, skipped) in expected.items():
        report = reports[key]
        assert (report.read, report.written, report.bad, report.skipped) == (read, written, bad, skipped), key
        assert report.path == prepared["out"] / key[0] / f"{key[1]}.parquet"
        assert len(read_rows(report.path)) == written


def test_every_file_has_the_same_schema(prepared: dict[str, Any]) -> None:
    for report in prepared["reports"].values():
        assert pq.read_schema(report.path).remove_metadata() == rl_schema(), report.path


def test_math_rows(prepared: dict[str, Any]) -> None:
    rows = read_rows(prepared["out"] / "math" / "train.parquet")
    assert [row["reward_model"] for row in rows] == [
        {"style": "rule", "ground_truth": "2"},
        {"style": "rule", "ground_truth": "\\frac{1}{2}"},
        {"style": "rule", "ground_truth": "3"},
    ]
    first = rows[0]
    assert first["data_source"] == "math" and first["ability"] == "math"
    assert first["prompt"] == [{"role": "user", "content": "What is $1+1$?\n\n" + MATH_INSTRUCTION}]
    assert [row["extra_info"]["index"] for row in rows] == [0, 1, 2]
    assert first["extra_info"] == {"split": "train", "index": 0, "options": []}


def test_multiple_choice_rows(prepared: dict[str, Any]) -> None:
    medqa = read_rows(prepared["out"] / "medqa" / "train.parquet")
    assert [row["reward_model"]["ground_truth"] for row in medqa] == ["C", "D", "E"]
    assert medqa[0]["extra_info"]["options"] == list(MEDQA_OPTIONS.values())
    assert medqa[2]["extra_info"]["options"] == [*MEDQA_OPTIONS.values(), "Lupus"]
    assert "(A, B, C, D or E)" in medqa[2]["prompt"][0]["content"]
    assert medqa[2]["prompt"][0]["content"].endswith("D. Gout\nE. Lupus")
    assert medqa[0]["prompt"][0]["content"] == (
        CHOICE_INSTRUCTION
        + "\n\nQuestion: A 23-year-old presents with wheezing. Most likely diagnosis?\n\n"
        + "A. Hypertension\nB. Type 2 diabetes mellitus\nC. Asthma\nD. Gout"
    )
    medmcqa = read_rows(prepared["out"] / "medmcqa" / "test.parquet")
    assert medmcqa[0]["reward_model"]["ground_truth"] == "C" and medmcqa[0]["ability"] == "medicine"
    mmlu = read_rows(prepared["out"] / "mmlu_medical" / "test.parquet")
    assert [(row["reward_model"]["ground_truth"], row["extra_info"]["index"]) for row in mmlu] == [("B", 0), ("A", 1)]


def test_numeric_ground_truths(prepared: dict[str, Any]) -> None:
    gsm = read_rows(prepared["out"] / "gsm_hard" / "test.parquet")
    assert [row["reward_model"]["ground_truth"] for row in gsm] == ["2345675", repr(37 / 3)]
    amc = read_rows(prepared["out"] / "amc23" / "test.parquet")
    assert [row["reward_model"]["ground_truth"] for row in amc] == ["9", "32"]


def test_written_rows_score_with_the_reward_function(prepared: dict[str, Any]) -> None:
    """Every data_source written has a reward, and a right answer to every row scores 1.0."""
    for report in prepared["reports"].values():
        for row in read_rows(report.path):
            source, truth = row["data_source"], row["reward_model"]["ground_truth"]
            kind = SOURCE_KINDS[source]
            right = f"\\boxed{{{truth}}}" if kind != "numeric" else f"The answer is {float(truth):.4f}"
            assert compute_score(source, right, truth, row["extra_info"]) == 1.0, (source, truth)
            if kind == "choice":
                wrong = next(letter for letter in "ABCD" if letter != truth)
                assert compute_score(source, f"\\boxed{{{wrong}}}", truth, row["extra_info"]) == 0.0
                text = row["extra_info"]["options"]["ABCDE".index(truth)]
                assert compute_score(source, f"The answer is {text}.", truth, row["extra_info"]) == 1.0


def test_prompt_templates() -> None:
    assert (
        math_prompt("  Compute $x$. ")
        == "Compute $x$.\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
    assert choice_prompt("Q?", ["a", "b", "c", "d"]).endswith("Question: Q?\n\nA. a\nB. b\nC. c\nD. d")
    docs = (REPO / "docs" / "data.md").read_text()
    assert MATH_INSTRUCTION in docs and CHOICE_INSTRUCTION in docs, (
        "docs/data.md must quote the templates word for word"
    )


# ---- subsets ---------------------------------------------------------------------------------


def test_subset_is_seeded_and_sized(samples: dict[str, Path], tmp_path: Path) -> None:
    def drawn(seed: int, sub: str) -> list[int]:
        report = prepare_math(tmp_path / sub, local_files={"train": samples["math_train"]}, max_train=2, seed=seed)[0]
        assert (report.written, report.skipped) == (2, 1)
        return [row["extra_info"]["index"] for row in read_rows(report.path)]

    first = drawn(0, "a")
    assert first == drawn(0, "b")
    assert len(set(first)) == 2 and set(first) <= {0, 1, 2}
    assert {tuple(drawn(seed, f"s{seed}")) for seed in range(8)} != {tuple(first)}


def test_bad_arguments_are_named(samples: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="max rows"):
        prepare_math(tmp_path, local_files={"train": samples["math_train"]}, max_train=0)
    with pytest.raises(PrepareError, match="no split 'validation'"):
        prepare_source("math", tmp_path, local_files={"validation": samples["math_train"]})
    with pytest.raises(PrepareError, match=r"unsupported file type '\.csv'"):
        prepare_one("gsm_hard", tmp_path, tmp_path / "x.csv")
    with pytest.raises(PrepareError, match="no such file"):
        prepare_one("amc23", tmp_path, tmp_path / "missing.jsonl")
    with pytest.raises(PrepareError, match="unknown evaluation set"):
        prepare_eval(tmp_path, sets=["gsm8k"])
    with pytest.raises(PrepareError, match=r"local file is given for \['gsm_hard'\]"):
        prepare_eval(tmp_path, sets=["amc23"], local_files={"gsm_hard": "x.jsonl"})


# ---- the hub path (datasets.load_dataset faked: no network here) -------------------------


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, str]]:
    import datasets

    calls: list[tuple[str, str | None, str]] = []
    by_id = {
        "DigitalLearningGmbH/MATH-lighteval": MATH_ROWS,
        "Neelectric/MedQA-USMLE": MEDQA_ROWS,
        "reasoning-machines/gsm-hard": GSM_HARD_ROWS,
        "math-ai/amc23": AMC23_ROWS,
        "openlifescienceai/medmcqa": MEDMCQA_ROWS,
    }
    real = datasets.load_dataset

    def fake(path: str, name: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
        if path in ("json", "parquet"):
            return real(path, name, split=split, **kwargs)
        calls.append((path, name, split))
        rows = [row for row in MMLU_ROWS if row["subject"] == name] if path == "cais/mmlu" else by_id[path]
        return datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return calls


def test_hub_ids_splits_and_subjects(fake_hub: list[tuple[str, str | None, str]], tmp_path: Path) -> None:
    reports = [*prepare_math(tmp_path), *prepare_medqa(tmp_path, max_train=1, max_test=1), *prepare_eval(tmp_path)]
    assert ("DigitalLearningGmbH/MATH-lighteval", None, "train") in fake_hub
    assert ("DigitalLearningGmbH/MATH-lighteval", None, "test") in fake_hub
    assert ("Neelectric/MedQA-USMLE", None, "train") in fake_hub
    assert ("reasoning-machines/gsm-hard", None, "train") in fake_hub
    assert ("math-ai/amc23", None, "test") in fake_hub
    assert ("openlifescienceai/medmcqa", None, "validation") in fake_hub  # its test split has no answers
    assert sorted(name for hub, name, _ in fake_hub if hub == "cais/mmlu") == sorted(prep.MMLU_MEDICAL_SUBJECTS)
    written = {(r.source, r.split): r.written for r in reports}
    assert written[("medqa", "train")] == 1 and written[("mmlu_medical", "test")] == 2
    assert all(r.split in ("train", "test") for r in reports)


def test_hub_failure_says_how_to_use_a_local_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(PrepareError, match=r"gsm-hard.*--local-file gsm_hard=PATH"):
        prepare_one("gsm_hard", tmp_path)
    with pytest.raises(PrepareError, match=r"MATH-lighteval.*--local-file train=PATH"):
        prepare_math(tmp_path)


# ---- verl reads what we write --------------------------------------------------------------


def token_count(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


def tiny_tokenizer(texts: list[str]) -> Any:
    """A word-level tokenizer trained here on the test's own text, with a ChatML-like chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")
    tokenizer.chat_template = (
        "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}<s> assistant {% endif %}"
    )
    return tokenizer


def test_verl_rlhf_dataset_loads_all_files_together(prepared: dict[str, Any], tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    paths = [str(report.path) for report in prepared["reports"].values()]
    rows = [row for path in paths for row in read_rows(Path(path))]
    tokenizer = tiny_tokenizer([row["prompt"][0]["content"] for row in rows] + ["user assistant"])

    def dataset(max_prompt_length: int) -> Any:
        config = OmegaConf.create(
            {
                "cache_dir": str(tmp_path / "cache"),
                "prompt_key": "prompt",
                "max_prompt_length": max_prompt_length,
                "filter_overlong_prompts": True,
                "filter_overlong_prompts_workers": 1,
                "truncation": "error",
                "return_raw_chat": True,
            }
        )
        return RLHFDataset(data_files=paths, tokenizer=tokenizer, config=config)

    full = dataset(4096)
    assert len(full) == len(rows)
    sources = set()
    for i in range(len(full)):
        item = full[i]
        sources.add(item["data_source"])
        assert item["raw_prompt"][0]["role"] == "user"
        assert item["index"] == item["extra_info"]["index"]
        assert item["reward_model"]["style"] == "rule"
        ids = tokenizer.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert len(ids) > 5 and tokenizer.unk_token_id not in ids  # the tokenizer knows every word
    assert sources == {"math", "medqa", "gsm_hard", "amc23", "medmcqa", "mmlu_medical"}

    # verl's length filter sees our prompts through the tokenizer: short limits drop the long ones
    lengths = sorted(token_count(tokenizer, row["prompt"]) for row in rows)
    cut = lengths[len(lengths) // 2]
    assert len(dataset(cut)) == sum(1 for n in lengths if n <= cut)


# ---- the command line ----------------------------------------------------------------------


def test_cli_writes_and_reports(samples: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(
        [
            "data",
            "medqa",
            "--out",
            str(tmp_path),
            "--local-file",
            f"train={samples['medqa_train']}",
            "--max-train",
            "1",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "options not A-D or A-E: 1" in result.plain
    assert len(read_rows(tmp_path / "medqa" / "train.parquet")) == 1
    assert not (tmp_path / "medqa" / "test.parquet").exists()

    result = invoke(
        ["data", "eval", "--out", str(tmp_path), "--set", "amc23", "--local-file", f"amc23={samples['amc23']}"],
    )
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "amc23" / "test.parquet")) == 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["data", "math", "--local-file", "train"], 2, "KEY=PATH"),
        (["data", "math", "--local-file", "valid=x.jsonl"], 2, "math has no split 'valid'"),
        (["data", "math", "--local-file", "train=/nonexistent/x.jsonl"], 2, "no such file"),
        (["data", "math", "--max-train", "0"], 2, "--max-train"),
        (["data", "eval", "--set", "gsm8k"], 2, "gsm8k"),
        (
            ["data", "eval", "--set", "amc23", "--local-file", "gsm_hard=x.jsonl"],
            2,
            "which the chosen sets ['amc23'] do not include",
        ),
    ],
)
def test_cli_errors_are_one_clear_message(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    result = invoke([*args[:2], "--out", str(tmp_path), *args[2:]])
    assert result.exit_code == code, result.output
    assert message in result.plain
    assert "Traceback" not in result.output


def test_cli_fails_when_no_row_is_valid(tmp_path: Path) -> None:
    bad = write_json_lines(tmp_path / "bad.jsonl", [GSM_HARD_ROWS[2]])
    result = invoke(["data", "eval", "--out", str(tmp_path), "--set", "gsm_hard", "--local-file", f"gsm_hard={bad}"])
    assert result.exit_code == 1
    assert "no valid rows for gsm_hard/test" in result.plain
    assert not (tmp_path / "gsm_hard" / "test.parquet").exists()


def test_a_rerun_with_a_bad_split_changes_no_file(samples: dict[str, Path], tmp_path: Path) -> None:
    """All splits of one command whole or none: a rerun whose test split is bad leaves the first run's train."""
    out = tmp_path / "out"
    first = {"train": samples["medqa_train"], "test": samples["medqa_test"]}
    assert all(r.path for r in prepare_medqa(out, local_files=first))
    before = {split: (out / "medqa" / f"{split}.parquet").read_bytes() for split in ("train", "test")}

    bad_test = write_json_lines(tmp_path / "bad_test.jsonl", MEDQA_ROWS[3:])  # every row bad
    again = ["data", "medqa", "--out", str(out), "--local-file", f"train={samples['medqa_train']}"]
    result = invoke([*again, "--local-file", f"test={bad_test}", "--max-train", "1"])
    assert result.exit_code == 1, result.output
    assert "no valid rows for medqa/test" in result.plain and "no file was written or changed" in result.plain
    assert {split: (out / "medqa" / f"{split}.parquet").read_bytes() for split in ("train", "test")} == before
    assert sorted(p.name for p in (out / "medqa").iterdir()) == ["test.parquet", "train.parquet"]  # no temporaries

    reports = prepare_eval(
        out, sets=["amc23", "gsm_hard"], local_files={"amc23": samples["amc23"], "gsm_hard": bad_test}
    )
    assert [r.path for r in reports] == [None, None] and not (out / "amc23").exists()


def test_a_file_that_cannot_be_written_changes_no_file(
    samples: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failure on the second split leaves the first split's previous file in place."""
    from tempo_verl.recipes.data import prepare

    out = tmp_path / "out"
    files = {"train": samples["medqa_train"], "test": samples["medqa_test"]}
    prepare_medqa(out, local_files=files)
    before = (out / "medqa" / "train.parquet").read_bytes()
    real = prepare._write_beside

    def fail_on_test(rows: Any, target: Path) -> Path:
        if target.name == "test.parquet":
            raise OSError(28, "No space left on device")
        return real(rows, target)

    monkeypatch.setattr(prepare, "_write_beside", fail_on_test)
    with pytest.raises(PrepareError, match=r"test\.parquet: .*No space left on device; no file was changed"):
        prepare_medqa(out, local_files=files, max_train=1)
    assert (out / "medqa" / "train.parquet").read_bytes() == before
    assert sorted(p.name for p in (out / "medqa").iterdir()) == ["test.parquet", "train.parquet"]


def test_prepare_data_script_calls_a_valid_cli(fake_hub: list[Any], tmp_path: Path) -> None:
    """recipes/prepare_data.sh's calls, recorded, then replayed through the real command line."""
    recorder = tmp_path / "record"
    log = tmp_path / "calls.jsonl"
    recorder.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "data"
    env = {**os.environ, "TEMPO_VERL": str(recorder), "DATA_DIR": str(out), "SUBSET": "paper", "SEED": "5"}
    proc = subprocess.run(["bash", str(REPO / "recipes" / "prepare_data.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call[:2] for call in calls] == [["data", "math"], ["data", "medqa"], ["data", "eval"]]
    for call in calls[:2]:
        assert call[call.index("--max-train") + 1] == "1000" and call[call.index("--max-test") + 1] == "100"
        assert call[call.index("--seed") + 1] == "5"
    for call in calls:
        result = invoke(call)
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == sorted(
        [
            "math/train.parquet",
            "math/test.parquet",
            "medqa/train.parquet",
            "medqa/test.parquet",
            "gsm_hard/test.parquet",
            "amc23/test.parquet",
            "medmcqa/test.parquet",
            "mmlu_medical/test.parquet",
        ]
    )

    bad = subprocess.run(
        ["bash", str(REPO / "recipes" / "prepare_data.sh")],
        env={**env, "SUBSET": "tiny"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "SUBSET must be" in bad.stderr


# ---- hostile local files: one line and exit 2, never a crash ----------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``tempo-verl ARGS`` in a fresh process: a crash (segfault) shows as a negative return code."""
    code = "from tempo_verl.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"}
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", "line 1: JSON nested too deeply"),
        (
            "deep_value.jsonl",
            '{"input": "q", "target": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
            "line 1: JSON nested",
        ),
        ("deep.json", "[" + "{" * 1 + '"a":' + "[" * 100_000 + "]" * 100_000 + "}]", "JSON nested too deeply"),
        ("digits.jsonl", '{"input": "q", "target": ' + "9" * 5000 + "}\n", "line 1: not valid JSON"),
        ("scalar.jsonl", "5\n", "line 1: expected a JSON object"),
    ],
)
def test_hostile_local_json_is_one_line_and_exit_2(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    proc = run_cli(
        "data", "eval", "--out", str(tmp_path / "out"), "--set", "gsm_hard", "--local-file", f"gsm_hard={path}"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3


def test_numbers_beyond_float_are_bad_rows(tmp_path: Path) -> None:
    rows = [
        {"input": "q1", "target": 1e308 * 10},  # json.dumps writes Infinity
        {"input": "q2", "target": 10**400},
        {"input": "q3", "target": "1e999"},
        {"input": "q4", "target": 2.5},
    ]
    path = tmp_path / "gsm.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    amc = write_json_lines(
        tmp_path / "amc.jsonl", [{"question": "q", "answer": 10**400}, {"question": "q", "answer": 3}]
    )
    mmlu = write_json_lines(
        tmp_path / "mmlu.jsonl", [{"question": "q", "subject": "anatomy", "choices": list("abcd"), "answer": 1e300}]
    )
    reports = prepare_eval(
        tmp_path / "out",
        sets=["gsm_hard", "amc23", "mmlu_medical"],
        local_files={"gsm_hard": path, "amc23": amc, "mmlu_medical": mmlu},
    )
    by_set = {report.source: report for report in reports}
    assert by_set["gsm_hard"].bad == {"answer not a finite number": 3}
    assert by_set["gsm_hard"].written == 1
    assert by_set["amc23"].bad == {"answer not a finite number": 1}
    assert by_set["mmlu_medical"].bad == {"answer not A-D": 1}
