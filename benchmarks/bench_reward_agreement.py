"""How often the reward agrees with a careful human grader on real model outputs.

    python benchmarks/bench_reward_agreement.py                          # this checkout
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_reward_agreement.py   # e.g. an older one

Reads ``tests/recipes/reward_real_outputs.jsonl``: responses of SmolLM2-135M-Instruct to the recipes'
prompt templates (math, GSM-HARD, AMC23, MedQA, MedMCQA, MMLU-Medical questions), each graded by hand
after reading the whole response (``grade``: 1 right, 0 wrong or no answer; ``note`` says why). Scores
each with ``compute_score`` and prints the agreement, the false positives (wrong answers rewarded) and
false negatives (right answers scored 0), and every disagreement. The fixture is read from this
file's checkout; the reward from whatever ``tempo_verl`` Python imports, so the same fixture can grade
an older reward.
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "recipes" / "reward_real_outputs.jsonl"


def main() -> None:
    from tempo_verl.recipes.rewards import compute_score

    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    false_pos, false_neg = [], []
    for row in rows:
        extra_info = {"options": row["options"]} if row["options"] else None
        score = compute_score(row["data_source"], row["response"], row["ground_truth"], extra_info)
        if score > row["grade"]:
            false_pos.append(row)
        elif score < row["grade"]:
            false_neg.append(row)
    right = sum(row["grade"] for row in rows)
    agree = len(rows) - len(false_pos) - len(false_neg)
    print(f"fixture: {FIXTURE.name}, {len(rows)} responses ({right} right by the grader)")
    print(f"agreement: {agree}/{len(rows)} = {agree / len(rows):.1%}")
    print(f"false positives (wrong answers rewarded): {len(false_pos)}")
    print(f"false negatives (right answers scored 0): {len(false_neg)}")
    for label, found in (("FP", false_pos), ("FN", false_neg)):
        for row in found:
            print(f"  {label} {row['id']}: {row['note']}")


if __name__ == "__main__":
    main()
