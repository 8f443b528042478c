"""The demo's RL loop: GRPO-style training of a tiny LM on one of the demo's tasks, one estimator at a time.

Read top to bottom: advantages, then one run (:func:`train`), then the shared warm-up (:func:`prepare`)
and the whole demo (:func:`run_demo`). The settings are :class:`tempo_verl.demo.config.DemoConfig`.

Every step of :func:`train`::

    prompts  -> sample G responses each at temperature 1 (tempo_tree agent loop,  [model.py, rollout/]
                CPU backend; independent, or a tree with --rollout tree)
             -> score them with the task's checker                             [task.py]
             -> advantages from verl's registry: get_adv_estimator_fn(name)    [verl; tempo via our plugin]
             -> old log-probs, then PPO-clip loss from verl's policy-loss registry
                (compute_policy_loss_vanilla, token-mean agg_loss, verl's ActorConfig)  [verl]
             -> gradient clipping and an AdamW step, once per mini-batch

verl 0.9.1's ``main_ppo`` cannot run on a CPU-only machine (no CPU platform, GPU placement
groups, NCCL, no CPU-capable rollout engine), so the loop itself is ours; the pieces that decide
what is learned (advantages, policy loss, loss aggregation, log-probabilities) are verl's.

The estimators see identical settings, seeds, prompts and warm-up weights; only the estimator
differs. With ``td_coef = 0`` the TEMPO run reproduces the GRPO run update for update.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerFast, Qwen3ForCausalLM
from verl.trainer.ppo import core_algos
from verl.utils.torch_functional import masked_mean

import tempo_verl  # noqa: F401  (registers the `tempo` estimator in verl's registry)
from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.core.forest import PrefixForest
from tempo_verl.core.metrics import tree_metrics
from tempo_verl.demo.config import DemoConfig
from tempo_verl.demo.model import (
    build_model,
    build_tokenizer,
    encode_prompts,
    response_log_probs,
    sample_groups,
    warm_up,
)
from tempo_verl.demo.task import ItemTask
from tempo_verl.plugin.state import TokenInputs, token_inputs

__all__ = [
    "Prepared",
    "RunResult",
    "check_estimators",
    "compute_advantages",
    "prepare",
    "run_demo",
    "train",
]


def check_estimators(names: tuple[str, ...], algorithm: DictConfig) -> None:
    """Raise ``ValueError`` (one line) for names verl's registry does not know, or estimators that
    cannot run on outcome rewards alone (tried on a 4-response dummy batch, before any training)."""
    for name in names:
        try:
            core_algos.get_adv_estimator_fn(name)
        except ValueError:
            known = sorted(core_algos.ADV_ESTIMATOR_REGISTRY)
            raise ValueError(f"unknown estimator {name!r}; verl's registry has: {', '.join(known)}.") from None
        rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
        responses = torch.tensor([[3, 4, 0], [3, 5, 6], [7, 0, 0], [3, 5, 8]])
        uids = np.array(["a", "a", "b", "b"], dtype=object)
        compute_advantages(name, rewards, mask, uids, responses, mask.sum(-1).long(), algorithm)


# ----------------------------------------------------------------------------------------------
# Advantages: verl's registry, called the way verl 0.9.1's compute_advantage calls it
# ----------------------------------------------------------------------------------------------
def compute_advantages(
    name: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    uids: np.ndarray,
    responses: torch.Tensor,
    lengths: torch.Tensor,
    algorithm: DictConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantages of one batch from ``core_algos.get_adv_estimator_fn(name)``.

    GRPO gets ``norm_adv_by_std_in_grpo`` as an argument (as verl's trainer passes it); every other
    estimator gets ``config``. TEMPO receives the token ids through :func:`token_inputs`, exactly as
    the plugin's hook hands them over inside verl, and returns its ``tempo/*`` tree metrics.

    Args:
        token_level_rewards, response_mask, responses: ``(bs, L)``.
        uids: ``(bs,)`` prompt ids (verl's ``uid``).
        lengths: ``(bs,)`` valid response lengths.

    Returns:
        ``(bs, L)`` advantages and the estimator's metrics (empty for estimators other than TEMPO).
    """
    fn = core_algos.get_adv_estimator_fn(name)
    kwargs: dict[str, Any] = {"token_level_rewards": token_level_rewards, "response_mask": response_mask, "index": uids}
    if name == "grpo":
        advantages, _ = fn(**kwargs, norm_adv_by_std_in_grpo=algorithm["norm_adv_by_std_in_grpo"])
        return advantages, {}
    with token_inputs(TokenInputs(responses=responses, lengths=lengths)) as inputs:
        if name == "tempo":
            advantages, _ = fn(**kwargs, config=algorithm)
        else:
            try:
                advantages, _ = fn(**kwargs, config=algorithm)
            except (TypeError, AttributeError, KeyError, AssertionError) as err:
                raise ValueError(
                    f"estimator {name!r} cannot run in this loop (outcome rewards only: no critic values, "
                    f"reward baselines or extra batch fields): {type(err).__name__}: {err}"
                ) from None
    return advantages, dict(inputs.metrics)


# ----------------------------------------------------------------------------------------------
# One run: one estimator, one seed
# ----------------------------------------------------------------------------------------------
@dataclass
class TreeSnapshot:
    """The batch of one step, kept for the tree picture."""

    step: int
    forest: PrefixForest
    responses: torch.Tensor
    response_mask: torch.Tensor
    uids: list[str]
    prompts: dict[str, str]  # uid -> prompt text


@dataclass
class RunResult:
    """What one run produced.

    Attributes:
        estimator, seed: which run.
        rewards: mean checker reward of each step's batch (before that step's update).
        step_logs: one dict of metrics per step (reward, times, loss, ``tempo/*`` tree metrics, ...).
        final_state: the policy's parameters after the last step.
        tree: the snapshot for the tree picture, when requested.
        generated_tokens: tokens the policy generated in each step's rollout (a tree branch's prefix
            is its parent's and is not counted twice).
    """

    estimator: str
    seed: int
    rewards: list[float]
    step_logs: list[dict[str, float]]
    final_state: dict[str, torch.Tensor]
    tree: TreeSnapshot | None = None
    generated_tokens: list[int] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    estimator: str,
    seed: int,
    cfg: DemoConfig,
    warm_state: dict[str, torch.Tensor],
    tokenizer: PreTrainedTokenizerFast,
    task: ItemTask,
    keep_tree_at: int | None = None,
    on_step: Callable[[str, int, float], None] | None = None,
) -> RunResult:
    """Train a copy of the warmed-up policy with one estimator for ``cfg.steps`` steps.

    The prompt stream and the sampling stream are seeded by ``seed`` alone, so two estimators with
    the same seed see the same prompts, and the same samples for as long as their weights agree.
    """
    device = torch.device(cfg.device)
    model: Qwen3ForCausalLM = build_model(tokenizer, cfg.model, seed=cfg.warmup_seed).to(device)
    model.load_state_dict(copy.deepcopy(warm_state))
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    actor = cfg.actor_config()
    policy_loss = core_algos.get_policy_loss_fn("vanilla")
    algorithm = cfg.algorithm_config()
    prompt_rng = torch.Generator().manual_seed(seed)
    sample_rng = torch.Generator().manual_seed(10_000 + seed)
    G, P = cfg.group_size, cfg.prompts_per_step
    width = cfg.response_width(task)
    rewards_curve: list[float] = []
    generated_tokens: list[int] = []
    logs: list[dict[str, float]] = []
    snapshot: TreeSnapshot | None = None

    for step in range(1, cfg.steps + 1):
        _sync(device)
        t_start = time.perf_counter()

        # 1. Rollout: G samples per prompt at temperature 1 (independent, or a tree), rows of a group adjacent.
        problems = task.sample_prompts(P, prompt_rng)
        texts = [task.prompt_text(p) for p in problems]
        prompts = encode_prompts(tokenizer, texts, device).repeat_interleave(G, 0)
        model.eval()
        responses, lengths, rollout_metrics = sample_groups(model, tokenizer, texts, G, width, sample_rng, cfg.roots())
        responses, lengths = responses.to(device), lengths.to(device)
        generated = int(rollout_metrics["rollout_tree/generated_tokens"])
        generated_tokens.append(generated)
        positions = torch.arange(responses.shape[1], device=device)
        response_mask = (positions[None, :] < lengths[:, None]).float()  # (bs, L), <eos> included
        uids = np.array([f"{step}-{i // G}" for i in range(P * G)], dtype=object)

        # 2. Reward: the checker reads each response up to its end; the score sits on the last token.
        scores = torch.tensor(
            [task.score(problems[i // G], t) for i, t in enumerate(_response_texts(tokenizer, responses, lengths))],
            dtype=torch.float32,
            device=device,
        )
        token_level_rewards = torch.zeros_like(response_mask)
        token_level_rewards[torch.arange(P * G, device=device), (lengths - 1).clamp(min=0)] = scores

        # 3. Advantages from verl's registry (timed: the estimator's share of the step).
        _sync(device)
        t_adv = time.perf_counter()
        advantages, adv_metrics = compute_advantages(
            estimator, token_level_rewards, response_mask, uids, responses, lengths, algorithm
        )
        _sync(device)
        estimator_time = time.perf_counter() - t_adv

        # 4. PPO update with verl's policy loss: old log-probs, then one epoch of mini-batches.
        with torch.no_grad():
            old_log_prob = response_log_probs(model, prompts, responses)
        model.train()
        step_stats: dict[str, list[float]] = {"loss": [], "pg_clipfrac": [], "ppo_kl": [], "grad_norm": []}
        rows = P * G // cfg.mini_batches
        for mb in range(cfg.mini_batches):
            sl = slice(mb * rows, (mb + 1) * rows)
            log_prob = response_log_probs(model, prompts[sl], responses[sl])
            loss, pg_metrics = policy_loss(
                old_log_prob=old_log_prob[sl],
                log_prob=log_prob,
                advantages=advantages[sl],
                response_mask=response_mask[sl],
                loss_agg_mode=actor.loss_agg_mode,
                config=actor,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step_stats["loss"].append(float(loss.detach()))
            step_stats["pg_clipfrac"].append(pg_metrics["actor/pg_clipfrac"])
            step_stats["ppo_kl"].append(pg_metrics["actor/ppo_kl"])
            step_stats["grad_norm"].append(float(grad_norm))
        _sync(device)
        step_time = time.perf_counter() - t_start

        # 5. Logging (outside the timed step): the tree metrics for every estimator, since the
        # policy branches whichever estimator trains it; TEMPO already returned its own.
        forest = None
        if not adv_metrics or step == keep_tree_at:
            _, _, forest = tempo_advantage_and_forest(
                token_level_rewards, response_mask, uids, responses, response_lengths=lengths
            )
            if not adv_metrics:
                adv_metrics = tree_metrics(forest, response_mask)
        if step == keep_tree_at and forest is not None:
            texts = {str(uids[i * G]): task.prompt_text(p) for i, p in enumerate(problems)}
            snapshot = TreeSnapshot(step, forest, responses.cpu(), response_mask.cpu(), [str(u) for u in uids], texts)
        reward = float(scores.mean())
        rewards_curve.append(reward)
        log = {
            "step": float(step),
            "reward": reward,
            "step_time_s": step_time,
            "estimator_time_s": estimator_time,
            "response_length": float(lengths.float().mean()),
            "generated_tokens": float(generated),
            "adv_abs_mean": float(masked_mean(advantages.abs(), response_mask)),
        }
        log.update({k: float(np.mean(v)) for k, v in step_stats.items()})
        log.update({k: float(v) for k, v in adv_metrics.items() if k != "tempo/time_s"})
        log.update(rollout_metrics)
        logs.append(log)
        if on_step is not None:
            on_step(estimator, step, reward)

    final_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return RunResult(estimator, seed, rewards_curve, logs, final_state, snapshot, generated_tokens)


def _response_texts(tokenizer: PreTrainedTokenizerFast, responses: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Each response's words up to its end, one trailing ``<eos>`` removed; any other special token stays
    in the text (so a stray ``<pad>`` inside a response makes it wrong instead of vanishing)."""
    texts = []
    eos = tokenizer.eos_token_id
    for row, n in zip(responses.tolist(), lengths.tolist(), strict=True):
        ids = row[:n]
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        texts.append(" ".join(tokenizer.convert_ids_to_tokens(ids)))
    return texts


# ----------------------------------------------------------------------------------------------
# The shared warm-up, then the whole demo: every (seed, estimator) run from the same weights
# ----------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """What every run of one task starts from: the task, its tokenizer and the warmed-up weights."""

    task: ItemTask
    tokenizer: PreTrainedTokenizerFast
    warm_state: dict[str, torch.Tensor]
    warmup_losses: list[float]
    warmup_time_s: float


def prepare(cfg: DemoConfig) -> Prepared:
    """Set the CPU threads, build the task's tokenizer and policy, and run the supervised format warm-up once."""
    if cfg.device == "cpu":
        torch.set_num_threads(max(1, min(cfg.threads, os.cpu_count() or 1)))
    device = torch.device(cfg.device)
    task = cfg.make_task()
    tokenizer = build_tokenizer(task)
    t0 = time.perf_counter()
    model = build_model(tokenizer, cfg.model, seed=cfg.warmup_seed).to(device)
    losses = warm_up(model, tokenizer, task, cfg.warmup_steps, cfg.warmup_batch, cfg.warmup_lr, cfg.warmup_seed, device)
    warm_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Prepared(task, tokenizer, warm_state, losses, time.perf_counter() - t0)


@dataclass
class DemoResult:
    """All runs of a demo, plus what the report needs."""

    cfg: DemoConfig
    runs: list[RunResult]
    warmup_losses: list[float]
    warmup_time_s: float
    tokenizer: PreTrainedTokenizerFast
    warm_state: dict[str, torch.Tensor]


def run_demo(
    cfg: DemoConfig,
    on_step: Callable[[str, int, int, float], None] | None = None,
) -> DemoResult:
    """Warm up once, then train every estimator on every seed from the same warm-up weights.

    Args:
        on_step: called as ``on_step(estimator, seed, step, reward)`` after every RL step.
    """
    cfg.check()
    check_estimators(cfg.estimators, cfg.algorithm_config())
    ready = prepare(cfg)
    tree_step = cfg.tree_step if cfg.tree_step is not None else max(1, cfg.steps // 2)
    runs = []
    for seed in range(cfg.seeds):
        for i, name in enumerate(cfg.estimators):
            keep = tree_step if (seed == 0 and i == 0) else None

            def step_cb(est: str, step: int, reward: float, seed: int = seed) -> None:
                if on_step is not None:
                    on_step(est, seed, step, reward)

            args = (ready.warm_state, ready.tokenizer, ready.task)
            runs.append(train(name, seed, cfg, *args, keep_tree_at=keep, on_step=step_cb))
    return DemoResult(cfg, runs, ready.warmup_losses, ready.warmup_time_s, ready.tokenizer, ready.warm_state)
