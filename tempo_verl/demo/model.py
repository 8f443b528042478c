"""The demo's policy: a tiny Qwen3-style causal LM, a word-level tokenizer built locally, the
supervised format warm-up, sampling (through the ``tempo_tree`` agent loop and the CPU backend of
:mod:`tempo_verl.rollout`), and per-token log-probabilities.

Nothing is downloaded: the tokenizer is a ``tokenizers`` WordLevel model over the task's words,
and the model is ``transformers.Qwen3ForCausalLM`` built from a small ``Qwen3Config`` with random
weights. Log-probabilities go through verl's own ``logprobs_from_logits``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM
from verl.utils.torch_functional import logprobs_from_logits

from tempo_verl.demo.task import EOS, PAD, UNK, ItemTask
from tempo_verl.rollout import STATS_KEY
from tempo_verl.rollout.backend import TransformersServer
from tempo_verl.rollout.local import agent_loop_factory, new_event_loop, rollout_groups
from tempo_verl.rollout.metrics import tree_rollout_metrics

__all__ = [
    "ModelSize",
    "build_model",
    "build_tokenizer",
    "encode_prompts",
    "response_log_probs",
    "sample_groups",
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


def build_tokenizer(task: ItemTask) -> PreTrainedTokenizerFast:
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


_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    """One event loop for every step (``asyncio.run`` would start, and stop, a fresh one each step)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = new_event_loop()
    return _loop


def sample_groups(
    model: Qwen3ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompt_texts: Sequence[str],
    group_size: int,
    max_new_tokens: int,
    generator: torch.Generator,
    roots: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Sample ``group_size`` responses per prompt through the ``tempo_tree`` agent loop and the CPU backend.

    The same loop verl runs (:class:`tempo_verl.rollout.loop.TreeAgentLoop`, sessions fanned out as verl's
    v1 worker does) on :class:`tempo_verl.rollout.backend.TransformersServer`, at temperature 1 from the
    full distribution. ``roots = group_size`` is independent sampling; fewer roots sample each group as
    a tree. One seed drawn from ``generator`` per call; each session derives its own from it, so a
    step is reproducible for a given generator state and weights (up to float rounding of the batches).

    Returns:
        ``responses`` ``(P*G, L)`` right-padded with ``<pad>`` (rows of a group adjacent, ``<eos>``
        included when sampled), ``lengths`` ``(P*G,)`` valid lengths, and the step's ``rollout_tree/*``
        metrics as a verl run logs them (:func:`~tempo_verl.rollout.metrics.tree_rollout_metrics`), among
        them ``rollout_tree/generated_tokens``: the tokens the model generated (a branch's prefix is its
        parent's, not generated again).
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    server = TransformersServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, max_new_tokens)
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": False, "seed": seed}
    uids = [str(i) for i in range(len(prompt_texts))]

    async def rollout() -> list:
        make_loop = agent_loop_factory(server, tokenizer, group_size, 64, max_new_tokens, {"roots": roots})
        return await rollout_groups(make_loop, prompt_texts, uids, group_size, params)

    outputs = [out for group in _event_loop().run_until_complete(rollout()) for out in group]
    responses = torch.full((len(outputs), max_new_tokens), tokenizer.pad_token_id, dtype=torch.long)
    lengths = torch.tensor([len(out.response_ids) for out in outputs], dtype=torch.long)
    for i, out in enumerate(outputs):
        responses[i, : len(out.response_ids)] = torch.tensor(out.response_ids, dtype=torch.long)
    group_uids = [uid for uid in uids for _ in range(group_size)]
    metrics = tree_rollout_metrics([out.extra_fields[STATS_KEY] for out in outputs], group_uids)
    return responses, lengths, metrics


def warm_up(
    model: Qwen3ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    task: ItemTask,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
) -> list[float]:
    """Supervised warm-up on the task's *format*: next-token cross-entropy on random-label responses.

    The labels of the warm-up data are coin flips (:meth:`ItemTask.format_example`), so the
    warmed-up policy writes well-formed responses but guesses every label. Loss on response
    tokens (``<eos>`` included) only.

    Returns:
        the loss of each step.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        problems = task.sample_prompts(batch_size, generator)
        prompts = encode_prompts(tokenizer, [task.prompt_text(p) for p in problems], device)
        texts = [task.format_example(p, generator) for p in problems]
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
