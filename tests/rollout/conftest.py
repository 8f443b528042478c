"""A tiny policy for the rollout tests: the demo's parity tokenizer (with a plain chat template) and a random Qwen3."""

from __future__ import annotations

import pytest

from tempo_verl.demo.model import ModelSize, build_model, build_tokenizer
from tempo_verl.demo.task import ParityTask

TASK = ParityTask(num_digits=3)
SIZE = ModelSize(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64
)


@pytest.fixture(scope="session")
def policy():
    tokenizer = build_tokenizer(TASK)
    model = build_model(tokenizer, SIZE, seed=0).eval()
    return tokenizer, model
