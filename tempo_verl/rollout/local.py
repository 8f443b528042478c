"""Run agent loops in-process, the way verl's v1 worker fans a prompt out (no Ray): the demo's rollout.

:func:`agent_loop_factory` builds ``tempo_tree`` agent loops around any ``server_manager``;
:func:`rollout_groups` starts the ``n`` sessions of every prompt as tasks of one event loop with
``uid`` and ``session_id``, as ``AgentLoopWorkerTQ._run_prompt`` does, each with a loop object of its
own, as verl's ``_run_agent_loop`` builds one per session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, DictConfigWrap
from verl.utils.dataset.rl_dataset import RLHFDataset

from tempo_verl.rollout.loop import TreeAgentLoop

__all__ = ["agent_loop_factory", "new_event_loop", "rollout_groups"]


class _Inline(ThreadPoolExecutor):
    """Runs what verl's loops hand to ``run_in_executor`` (tokenizing a prompt) at once, in the loop's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # handed to the awaiting session, as a thread pool would
            future.set_exception(err)
        return future


class _Node(dict):
    """The in-process trainer config: a dict read the way verl's loops read their ``DictConfig``
    (``config.actor_rollout_ref.rollout.n``, ``.get(key, default)``), without OmegaConf's cost per read
    (a few tens of ms per demo step of 128 sessions). verl's own workers hand the loop a ``DictConfig``;
    the tests through them check that path."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def of(cls, tree: dict[str, Any]) -> _Node:
        return cls({k: cls.of(v) if isinstance(v, dict) else v for k, v in tree.items()})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop for in-process rollouts whose default executor runs inline: no thread hop per session
    (tens of ms per demo step of 128 sessions), and the sessions' requests reach the server in the same
    order on every run."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_Inline(max_workers=1))
    return loop


def agent_loop_factory(
    server: Any, tokenizer: Any, n: int, prompt_length: int, response_length: int, tree: dict[str, Any] | None
) -> Callable[[], AgentLoopBase]:
    """Builds ``TreeAgentLoop`` objects that share one trainer config (``rollout.n``, the lengths,
    ``custom.tree = tree``): call it once per session, inside the event loop that will run it (verl's
    loops keep the running loop).
    """
    rollout = {
        "n": n,
        "prompt_length": prompt_length,
        "response_length": response_length,
        "custom": {"tree": tree or {}},
    }
    config = _Node.of({"actor_rollout_ref": {"rollout": rollout}, "data": {}})
    trainer_config, data_config = DictConfigWrap(config), DictConfigWrap(config.data)
    # verl warns once per loop that a tokenizer without a model family gets its default prompt builder
    wiring = logging.getLogger("verl.utils.tokenizer.continuous_token_wiring")

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    def make() -> AgentLoopBase:
        wiring.addFilter(errors_only)
        try:
            return TreeAgentLoop(
                trainer_config=trainer_config,
                server_manager=server,
                tokenizer=tokenizer,
                processor=None,
                dataset_cls=RLHFDataset,
                data_config=data_config,
            )
        finally:
            wiring.removeFilter(errors_only)

    return make


async def rollout_groups(
    make_loop: Callable[[], AgentLoopBase],
    prompts: Sequence[str],
    uids: Sequence[str],
    n: int,
    sampling_params: dict[str, Any],
) -> list[list[AgentLoopOutput]]:
    """``n`` sessions per prompt (a user message each), all as tasks of this event loop.

    Args:
        make_loop: builds one agent loop (called once per session, inside this event loop).

    Returns:
        ``[prompt][session]`` outputs. A failing session raises here after all sessions settled.
    """
    tasks = [
        [
            asyncio.create_task(
                make_loop().run(
                    dict(sampling_params), raw_prompt=[{"role": "user", "content": text}], uid=uid, session_id=s
                )
            )
            for s in range(n)
        ]
        for text, uid in zip(prompts, uids, strict=True)
    ]
    flat = await asyncio.gather(*(t for group in tasks for t in group), return_exceptions=True)
    for result in flat:
        if isinstance(result, BaseException):
            raise result
    return [list(flat[i * n : (i + 1) * n]) for i in range(len(prompts))]
