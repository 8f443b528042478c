"""The answer formats instruction-tuned models write, scored as docs/data.md's example table says (each row a test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tempo_verl.recipes.rewards import compute_score

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data.md"
OPTIONS = {
    "4": ["Hypertension", "Type 2 diabetes mellitus", "Asthma", "Gout"],
    "5": ["Hypertension", "Type 2 diabetes mellitus", "Asthma", "Gout", "Lupus"],
    "—": None,
}


def example_rows() -> list[tuple[str, str, str, str, float]]:
    """The rows of docs/data.md's reward example table: (data_source, response, truth, options, score)."""
    text = DOCS.read_text()
    table = text.split("<!-- reward-examples:start -->", 1)[1].split("<!-- reward-examples:end -->", 1)[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        source, response, truth, options, score = cells[:5]
        unquote = lambda cell: re.fullmatch(r"`(.*)`", cell).group(1)  # noqa: E731
        rows.append((source, unquote(response).replace(" ⏎ ", "\n"), unquote(truth), options, float(score)))
    return rows


ROWS = example_rows()


def test_the_table_covers_every_rule() -> None:
    assert len(ROWS) >= 30
    assert {source for source, *_ in ROWS} >= {"medqa", "mmlu_medical", "math", "gsm_hard"}
    assert any(options == "5" for *_, options, _ in ROWS)


@pytest.mark.parametrize(("source", "response", "truth", "options", "score"), ROWS, ids=[row[1][:40] for row in ROWS])
def test_documented_example(source: str, response: str, truth: str, options: str, score: float) -> None:
    extra_info = {"split": "test", "index": 0, "options": OPTIONS[options]} if OPTIONS[options] else None
    assert compute_score(source, response, truth, extra_info) == score


def test_letters_follow_the_option_count() -> None:
    five = {"options": OPTIONS["5"]}
    assert compute_score("medqa", "The answer is E.", "E", five) == 1.0
    assert compute_score("medqa", "The answer is E.", "D", {"options": OPTIONS["4"]}) == 0.0
    # old rows (no options) keep A-D; a later ground-truth letter extends them
    assert compute_score("medqa", r"\boxed{E}", "E") == 1.0
    assert compute_score("medqa", r"\boxed{E}", "D") == 0.0
    with pytest.raises(ValueError, match=r"A, B, C, D, E \(its 5 options\)"):
        compute_score("medqa", r"\boxed{F}", "F", five)
