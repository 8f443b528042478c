"""The demo's policy: a tiny Qwen3-style causal LM, a word-level tokenizer built locally, the
supervised format warm-up, sampling with a KV cache, and per-token log-probabilities.

Nothing is downloaded: the tokenizer is a ``tokenizers`` WordLevel model over the task's words,
and the model is ``transformers.Qwen3ForCausalLM`` built from a small ``Qwen3Config`` with random
weights. Log-probabilities go through verl's own ``logprobs_from_logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM
from verl.utils.torch_functional import logprobs_from_logits

from tempo_verl.demo.task import EOS, PAD, UNK, ParityTask

__all__ = [
    "ModelSize",
    "build_model",
    "build_tokenizer",
    "encode_prompts",
    "response_log_probs",
    "sample_responses",
    "warm_up",
]


@dataclass(frozen=True)
class ModelSize:
    """The Qwen3 config knobs the demo sets (everything else keeps ``Qwen3Config``'s defaults)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 192


#: The demo's chat template: the messages' text, nothing added (verl's agent loops build prompts with it).
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def build_tokenizer(task: ParityTask) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``task.words`` (``<pad>`` = 0, ``<eos>`` = 1), :data:`CHAT_TEMPLATE`."""
    vocab = {w: i for i, w in enumerate(task.words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, size: ModelSize, seed: int) -> Qwen3ForCausalLM:
    """A randomly initialised ``Qwen3ForCausalLM`` (float32) whose vocabulary is the tokenizer's."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def encode_prompts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], device: torch.device) -> torch.Tensor:
    """``(n, Lp)`` prompt ids. All prompts of the task have the same length, so there is no padding."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if len({len(x) for x in ids}) != 1:
        raise ValueError("encode_prompts: prompts of one batch must have equal token length.")
    return torch.tensor(ids, dtype=torch.long, device=device)


def response_log_probs(model: Qwen3ForCausalLM, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Per-token log-probabilities of the responses under ``model`` (one causal forward pass).

    Args:
        prompts: ``(bs, Lp)`` prompt ids (no padding).
        responses: ``(bs, L)`` response ids, right-padded; positions past a response's end are
            computed too (causal attention keeps them from affecting earlier positions) and are
            masked out by the caller.

    Returns:
        ``(bs, L)`` float32 ``log pi(responses[:, t] | prompt, responses[:, :t])`` via verl's
        ``logprobs_from_logits``.
    """
    input_ids = torch.cat([prompts, responses], dim=1)
    logits = model(input_ids=input_ids, use_cache=False).logits
    p = prompts.shape[1]
    return logprobs_from_logits(logits[:, p - 1 : -1].float(), responses)


@torch.no_grad()
def sample_responses(
    model: Qwen3ForCausalLM,
    prompts: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one response per row at ``temperature`` from the full distribution (no top-k/top-p), with a KV cache.

    Exactly reproducible for a given ``generator`` state and weights (``torch.multinomial`` with an
    explicit generator), which is what makes the estimators' runs comparable token for token.

    Args:
        prompts: ``(bs, Lp)`` prompt ids; repeat each prompt ``G`` times for a group of ``G``.
        max_new_tokens: ``L``, the response width.

    Returns:
        ``responses`` ``(bs, L)`` right-padded with ``pad_id`` (``<eos>`` included when sampled),
        and ``lengths`` ``(bs,)`` valid lengths (``<eos>`` counted).
    """
    bs = prompts.shape[0]
    device = prompts.device
    responses = torch.full((bs, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((bs,), max_new_tokens, dtype=torch.long, device=device)
    done = torch.zeros(bs, dtype=torch.bool, device=device)
    out = model(input_ids=prompts, use_cache=True)
    for t in range(max_new_tokens):
        probs = torch.softmax(out.logits[:, -1].float() / temperature, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        responses[:, t] = token
        ended = ~done & (token == eos_id)
        lengths = torch.where(ended, torch.full_like(lengths, t + 1), lengths)
        done |= ended
        if bool(done.all()) or t + 1 == max_new_tokens:
            break
        out = model(input_ids=token[:, None], past_key_values=out.past_key_values, use_cache=True)
    return responses, lengths


def warm_up(
    model: Qwen3ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    task: ParityTask,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
) -> list[float]:
    """Supervised warm-up on the task's *format*: next-token cross-entropy on random-label responses.

    The labels of the warm-up data are coin flips (:meth:`ParityTask.format_example`), so the
    warmed-up policy writes well-formed responses but guesses every parity. Loss on response
    tokens (``<eos>`` included) only.

    Returns:
        the loss of each step.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        digits = task.sample_digits(batch_size, generator)
        prompts = encode_prompts(tokenizer, [task.prompt_text(d) for d in digits], device)
        texts = [task.format_example(d, generator) for d in digits]
        # Every well-formed response has the same number of words, so no padding is needed.
        targets = torch.tensor(
            [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts],
            dtype=torch.long,
            device=device,
        )
        loss = -response_log_probs(model, prompts, targets).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
