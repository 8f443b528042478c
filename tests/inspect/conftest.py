"""A tiny random-initialised causal LM saved as a local model folder (word-level tokenizer over digits and a few
words, a plain chat template), and a gsm_hard parquet written by ``tempo-verl data`` from a local sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

WORDS = ["<pad>", "<eos>", "<unk>", *[str(d) for d in range(10)], "so", "the", "answer", "is", "+", "="]


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A 1-layer Llama over :data:`WORDS` with random weights, and its tokenizer, saved to ``folder``."""
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.chat_template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def gsm_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tempo-verl data eval --set gsm_hard --local-file gsm_hard=...``: one-digit answers the tiny model can hit."""
    from typer.testing import CliRunner

    from tempo_verl.cli import app

    root = tmp_path_factory.mktemp("gsm")
    sample = root / "gsm_sample.jsonl"
    rows = [
        {"input": f"What is {a} + {b}?", "code": "", "target": float(a + b)}
        for a, b in [(1, 2), (3, 4), (2, 2), (0, 5), (4, 4)]
    ]
    sample.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["data", "eval", "--out", str(root / "data"), "--set", "gsm_hard", "--local-file", f"gsm_hard={sample}"]
    )
    assert result.exit_code == 0, result.output
    return root / "data" / "gsm_hard" / "test.parquet"
