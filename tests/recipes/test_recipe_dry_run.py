"""docs/recipes.md's dry run: `PYTHON=echo` prints a recipe's main_ppo command instead of running it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = ["math/train.parquet", "math/test.parquet", "gsm_hard/test.parquet", "amc23/test.parquet"]


@pytest.mark.parametrize("script", ["run_qwen3-1.7b_math_tempo.sh", "run_qwen3-1.7b_math_grpo.sh"])
def test_python_echo_prints_the_command(tmp_path, script: str) -> None:
    for rel in FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k not in {"MODEL_PATH", "TD_COEF", "EXPERIMENT_NAME"}}
    env.update(PYTHON="echo", DATA_DIR=str(tmp_path))
    result = subprocess.run(
        ["bash", str(REPO / "recipes" / script), "trainer.total_training_steps=3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()  # the command, on one line, and nothing started
    estimator = script.rsplit("_", 1)[1].removesuffix(".sh")
    assert line.startswith("-m verl.trainer.main_ppo ")
    assert f"algorithm.adv_estimator={estimator}" in line.split()
    assert f"data.train_files='{tmp_path}/math/train.parquet'" in line.split()
    assert line.split()[-1] == "trainer.total_training_steps=3"  # extra overrides come last and win
    assert ("+algorithm.tempo.td_coef=1.0" in line.split()) == (estimator == "tempo")
