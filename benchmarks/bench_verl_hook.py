"""What the verl glue adds to a training step: the hook's extra TransferQueue read, and the tree metrics.

    python benchmarks/bench_verl_hook.py                       # 128 prompts x 7 x 4096 tokens (~2 minutes)
    python benchmarks/bench_verl_hook.py --prompts 512 --width 8192

1. Tree metrics (``tempo_verl.core.metrics.tree_metrics``) against the estimator itself, paper scale, in-process.
2. The v1 hook: verl's real ``PPOTrainer._compute_advantage`` on TransferQueue (local Ray), samples written
   as the agent loop writes them; the hook's extra read of ``responses`` (``tempo/hook_fetch_time_s``)
   against the whole advantage step, and the same step with ``grpo_vectorized`` for reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_estimator import best_time, make_batch


def metrics_cost(repeats: int) -> None:
    from tempo_verl import tempo_advantage_and_forest
    from tempo_verl.core.metrics import tree_metrics

    rewards, mask, attention, index, responses = make_batch(512, 7, 8192, 30.0)
    _, _, forest = tempo_advantage_and_forest(rewards, mask, index, responses, response_attention_mask=attention)
    t_est = best_time(
        lambda: tempo_advantage_and_forest(rewards, mask, index, responses, response_attention_mask=attention), repeats
    )
    t_met = best_time(lambda: tree_metrics(forest, mask), repeats)
    print("\n[1. tree metrics vs the estimator, 512 x 7 x 8192]")
    print(f"  estimator        {t_est * 1e3:9.1f} ms")
    print(f"  tree_metrics     {t_met * 1e3:9.2f} ms   ({t_met / t_est:.1%} of the estimator)")


def hook_cost(prompts: int, group: int, width: int, repeats: int) -> None:
    import ray
    import transfer_queue as tq
    import verl
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from transfer_queue import KVBatchMeta
    from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    import tempo_verl  # noqa: F401

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    overrides = [
        "algorithm.adv_estimator=tempo",
        "transfer_queue.enable=True",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    ]
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init(cfg.transfer_queue)
    try:
        rewards, _, attention, index, responses = make_batch(prompts, group, width, 30.0)
        lengths = attention.sum(-1)
        keys, tags = [], []
        for start in range(0, len(index), 256):  # written in slices, as agent-loop workers do
            fields = []
            for i in range(start, min(start + 256, len(index))):
                n = int(lengths[i])
                out = AgentLoopOutput(
                    prompt_ids=list(range(1, 65)),
                    response_ids=responses[i, :n].tolist(),
                    response_mask=[1] * n,
                    reward_score=float(rewards[i].sum()),
                    num_turns=2,
                    metrics={},
                )
                field = out.as_dict()
                field.update({"uid": index[i], "session_id": i % group, "global_steps": 1})
                fields.append(field)
                keys.append(f"{index[i]}_{i % group}_0")
                tags.append({"status": "success"})
            tq.kv_batch_put(
                keys=keys[start:], fields=list_of_dict_to_tensordict(fields), tags=tags[start:], partition_id="train"
            )
        meta = KVBatchMeta(keys=keys, tags=tags, partition_id="train")

        def step(estimator: str) -> dict:
            metrics: dict = {}
            config = OmegaConf.merge(cfg, {"algorithm": {"adv_estimator": estimator}})
            PPOTrainer._compute_advantage(types.SimpleNamespace(config=config, global_steps=1), meta, metrics)
            return metrics

        results = {}
        for estimator in ("grpo_vectorized", "tempo"):
            step(estimator)
            best, best_metrics = float("inf"), {}
            for _ in range(repeats):
                start = time.perf_counter()
                metrics = step(estimator)
                elapsed = time.perf_counter() - start
                if elapsed < best:
                    best, best_metrics = elapsed, metrics
            results[estimator] = (best, best_metrics)
        fetch = results["tempo"][1]["tempo/hook_fetch_time_s"]
        print(f"\n[2. v1 PPOTrainer._compute_advantage on TransferQueue, {prompts} x {group} x {width}]")
        print(f"  grpo_vectorized step  {results['grpo_vectorized'][0] * 1e3:9.1f} ms")
        print(f"  tempo step            {results['tempo'][0] * 1e3:9.1f} ms")
        print(
            f"  of which hook's extra TransferQueue read of responses {fetch * 1e3:9.1f} ms "
            f"({fetch / results['tempo'][0]:.0%} of the tempo step)"
        )
        print(f"  of which the estimator (tempo/time_s) {results['tempo'][1]['tempo/time_s'] * 1e3:9.1f} ms")
    finally:
        tq.close()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--group", type=int, default=7)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    metrics_cost(args.repeats)
    hook_cost(args.prompts, args.group, args.width, args.repeats)


if __name__ == "__main__":
    main()
