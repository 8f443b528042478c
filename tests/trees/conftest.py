"""Shared fixtures of the trees tests: a tiny tokenizer built locally (no download)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def make_tokenizer(tmp_path_factory) -> Callable[[list[str]], Path]:
    """``make_tokenizer(texts)``: a byte-level BPE tokenizer trained on ``texts``, saved for ``AutoTokenizer``.

    Whole words of ``texts`` end up as tokens; the directory loads with ``AutoTokenizer.from_pretrained``.
    """

    def build(texts: list[str]) -> Path:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=2000, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        tok.train_from_iterator(texts * 3, trainer)
        out = tmp_path_factory.mktemp("tokenizer")
        PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>").save_pretrained(out)
        return out

    return build
