"""The demo's settings: one dataclass, the documented defaults, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from verl.trainer.config import AlgoConfig
from verl.workers.config import ActorConfig

from tempo_verl.demo.model import ModelSize
from tempo_verl.demo.task import TASKS, ItemTask, make_task

__all__ = ["ROLLOUTS", "TASK_SETTINGS", "DemoConfig"]

#: The demo's rollouts (``DemoConfig.rollout``): independent samples, or a prefix tree through the
#: ``tempo_tree`` agent loop (:mod:`tempo_verl.rollout`).
ROLLOUTS: tuple[str, ...] = ("independent", "tree")

#: The demo's run of each task (``tempo-verl demo --task NAME``): steps, the one learning rate every
#: estimator shares, and the target. ``parity``: the defaults below. ``rule``: the study protocol's
#: budget and target (docs/demo.md, "Study protocol") at the smallest lr of its grid, the lr most of
#: the study's arms chose on this task.
TASK_SETTINGS: dict[str, dict[str, float | int]] = {
    "parity": {"steps": 80, "lr": 3e-4, "target": 0.8},
    "rule": {"steps": 150, "lr": 5e-4, "target": 0.4},
}


# ----------------------------------------------------------------------------------------------
# Settings (fixed before any estimator was compared; see docs/demo.md)
# ----------------------------------------------------------------------------------------------
@dataclass
class DemoConfig:
    """Everything a demo run depends on. Defaults are the documented demo (``steps``, ``lr`` and
    ``target``: the ``parity`` task's :data:`TASK_SETTINGS`).

    Attributes:
        out: output folder.
        seeds: number of seeds (``0..seeds-1``) per estimator.
        steps: RL steps per run.
        estimators: names in verl's advantage-estimator registry (``tempo`` is ours).
        device: ``cpu`` or ``cuda``.
        task: the task's name in :data:`tempo_verl.demo.task.TASKS` (``parity``, ``rule``).
        num_digits: decision tokens per response (``K``); None: the task's default (3).
        rollout: ``independent`` (every response sampled from the prompt) or ``tree`` (a quarter of each
            group are roots, the rest branch from them at their least sure tokens: ``tempo_tree``).
        prompts_per_step, group_size: ``P`` prompts per step, ``G`` responses per prompt.
        max_new_tokens: response width ``L``; None: the well-formed length (``<eos>`` included) plus 7
            (parity, K = 3: 16).
        lr: AdamW learning rate of the RL phase.
        mini_batches: optimizer steps per RL step (verl's ``ppo_mini_batch_size = P*G/mini_batches``), 1 epoch.
        clip_ratio: PPO clip range.
        grad_clip: max gradient norm (verl's ``actor.grad_clip``).
        td_coef: TEMPO's TD weight (``algorithm.tempo.td_coef``); 1.0 is the paper's estimator.
        norm_adv_by_std_in_grpo: GRPO/TEMPO divide by the group std.
        target: the reward a run must reach (mean over a window of steps) to count as converged.
        target_window: steps averaged for the target test.
        warmup_steps, warmup_batch, warmup_lr, warmup_seed: the shared supervised format warm-up.
        model: the Qwen3 sizes.
        tree_step: the step whose groups the tree picture shows (default: the middle step).
        threads: torch CPU threads.
    """

    out: Path = Path("tempo_demo")
    seeds: int = 5
    steps: int = int(TASK_SETTINGS["parity"]["steps"])
    estimators: tuple[str, ...] = ("tempo", "grpo")
    device: str = "cpu"
    task: str = "parity"
    num_digits: int | None = None
    rollout: str = "independent"
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int | None = None
    lr: float = TASK_SETTINGS["parity"]["lr"]
    mini_batches: int = 2
    clip_ratio: float = 0.2
    grad_clip: float = 1.0
    td_coef: float = 1.0
    norm_adv_by_std_in_grpo: bool = True
    target: float = TASK_SETTINGS["parity"]["target"]
    target_window: int = 3
    warmup_steps: int = 300
    warmup_batch: int = 64
    warmup_lr: float = 3e-3
    warmup_seed: int = 1234
    model: ModelSize = field(default_factory=ModelSize)
    tree_step: int | None = None
    threads: int = 1

    def roots(self) -> int:
        """Roots per group of the ``tempo_tree`` loop: all of them for independent sampling."""
        return self.group_size if self.rollout == "independent" else max(1, self.group_size // 4)

    def make_task(self) -> ItemTask:
        """The task these settings name."""
        return make_task(self.task, self.num_digits)

    def response_width(self, task: ItemTask) -> int:
        """``L``: ``max_new_tokens``, or the task's well-formed length (``<eos>`` included) plus 7."""
        return self.max_new_tokens if self.max_new_tokens is not None else task.max_response_words + 8

    def algorithm_config(self) -> DictConfig:
        """verl's ``algorithm`` section as its trainer hands it to estimators: verl's ``AlgoConfig``
        defaults (``gamma``, ``lam``, ...) as a DictConfig, plus ``tempo.td_coef``."""
        node = OmegaConf.to_container(OmegaConf.structured(AlgoConfig()))
        node.update(adv_estimator=self.estimators[0], norm_adv_by_std_in_grpo=self.norm_adv_by_std_in_grpo)
        node["tempo"] = {"td_coef": self.td_coef}
        return OmegaConf.create(node)

    def actor_config(self) -> ActorConfig:
        """verl's own ``ActorConfig``: what its policy-loss functions read (clip ratios, aggregation)."""
        batch = self.prompts_per_step * self.group_size
        return ActorConfig(
            strategy="fsdp",
            rollout_n=self.group_size,
            ppo_mini_batch_size=batch // self.mini_batches,
            ppo_micro_batch_size_per_gpu=batch // self.mini_batches,
            ppo_epochs=1,
            clip_ratio=self.clip_ratio,
            clip_ratio_low=self.clip_ratio,
            clip_ratio_high=self.clip_ratio,
            loss_agg_mode="token-mean",
            use_torch_compile=False,
        )

    def check(self) -> None:
        """Raise ``ValueError`` (one line) on settings the loop cannot run."""
        positive = ("seeds", "steps", "num_digits", "prompts_per_step", "group_size", "mini_batches", "threads")
        for name in positive:
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.task not in TASKS:
            raise ValueError(f"task: unknown task {self.task!r}; known tasks: {', '.join(TASKS)}.")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {list(ROLLOUTS)}, got {self.rollout!r}.")
        task = self.make_task()
        if self.response_width(task) <= task.max_response_words:
            raise ValueError(
                f"max_new_tokens must exceed the task's well-formed response ({task.max_response_words} words "
                f"+ <eos>), got {self.max_new_tokens}."
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}.")
        if not self.estimators:
            raise ValueError("estimators: give at least one estimator name.")
        if len(set(self.estimators)) != len(self.estimators):
            raise ValueError(f"estimators: names repeat in {list(self.estimators)}.")
        if (self.prompts_per_step * self.group_size) % self.mini_batches:
            raise ValueError("mini_batches must divide prompts_per_step * group_size.")
        if self.prompts_per_step % self.mini_batches:
            raise ValueError("mini_batches must divide prompts_per_step (a mini-batch holds whole groups).")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}.")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA device; use --device cpu.")
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"target must lie in [0, 1], got {self.target}.")
        if self.tree_step is not None and not 1 <= self.tree_step <= self.steps:
            raise ValueError(f"tree_step must lie in [1, steps={self.steps}], got {self.tree_step}.")
