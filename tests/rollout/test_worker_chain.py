"""The whole CPU chain: tree rollout in verl's AgentLoopWorkerTQ (local Ray, TransferQueue) -> verl's
v1 ``_compute_advantage`` (``tempo``, ``grpo``) -> equal to the estimators called directly on the same tokens."""

from __future__ import annotations

import os
import time
import types

import numpy as np
import pytest
import torch

from tempo_verl import compute_tempo_advantage
from tempo_verl.demo.task import ParityTask

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")
import verl  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402

N, RESPONSE_LENGTH = 8, 12
TASK = ParityTask(num_digits=3)
CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture(scope="module")
def chain(policy, tmp_path_factory):
    from transformers import LlamaConfig

    from tempo_verl.rollout.backend import TransformersServer

    tokenizer, model = policy
    path = tmp_path_factory.mktemp("tiny_policy")
    tokenizer.save_pretrained(path)
    # verl's worker reads the tokenizer and the model config from here; the weights it samples with are
    # the server's. A llama config: verl's Qwen prompt builder needs a newline token this tokenizer lacks.
    LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        architectures=["LlamaForCausalLM"],
    ).save_pretrained(path)
    cfg = compose(
        [
            f"actor_rollout_ref.model.path={path}",
            "actor_rollout_ref.rollout.name=vllm",
            f"actor_rollout_ref.rollout.n={N}",
            "actor_rollout_ref.rollout.prompt_length=8",
            f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
            "actor_rollout_ref.rollout.val_kwargs.n=4",
            "actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree",
            "+actor_rollout_ref.rollout.custom.tree.roots=2",
            "algorithm.adv_estimator=tempo",
            "transfer_queue.enable=True",
            "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        ]
    )
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    tq.init(cfg.transfer_queue)
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    server = TransformersServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, RESPONSE_LENGTH)
    worker = AgentLoopWorkerTQ.remote(cfg, llm_client=server)
    yield cfg, worker
    tq.close()
    ray.shutdown()


def _generate(cfg, worker, uids: list[str], validate: bool) -> dict[str, list[str]]:
    """Send prompts to the worker as the v1 trainer does; wait for their groups; return uid -> sample keys."""
    from verl.utils import tensordict_utils as tu

    partition = "val" if validate else "train"
    texts = [TASK.prompt_text((i % 10, 3, 4)) for i in range(len(uids))]
    batch = tu.get_tensordict(
        {
            "uid": np.array(uids, dtype=object),
            "raw_prompt": np.array([[{"role": "user", "content": t}] for t in texts], dtype=object),
            "index": np.arange(len(uids)),
        }
    )
    tu.assign_non_tensor_data(batch, "global_steps", 1)
    if validate:
        tu.assign_non_tensor_data(batch, "validate", True)
    tq.kv_batch_put(keys=uids, partition_id=partition, tags=[{"is_prompt": True, "status": "pending"}] * len(uids))
    ray.get(worker.generate_sequences.remote(batch))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listing = tq.kv_list(partition_id=partition).get(partition, {})
        if all(listing.get(u, {}).get("status") in ("finished", "failure") for u in uids):
            break
        time.sleep(0.2)
    assert all(listing[u]["status"] == "finished" for u in uids), {u: listing.get(u) for u in uids}
    return {u: sorted(k for k in listing if k.startswith(f"{u}_")) for u in uids}


@pytest.mark.slow
def test_tree_rollout_through_verl_worker_and_v1_advantages(chain) -> None:
    from tensordict import TensorDict
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    from tempo_verl.rollout.metrics import read_step_metrics

    cfg, worker = chain
    uids = ["p0", "p1", "p2"]
    keys_of = _generate(cfg, worker, uids, validate=False)
    keys = [k for u in uids for k in keys_of[u]]
    assert all(len(keys_of[u]) == N for u in uids)  # group sizes equal rollout.n

    data = tq.kv_batch_get(
        keys=keys, partition_id="train", select_fields=["responses", "rollout_log_probs", "extra_fields"]
    )
    responses = [r.tolist() for r in data["responses"].unbind(0)]
    logprobs = [r.tolist() for r in data["rollout_log_probs"].unbind(0)]
    stats = [f["tempo_tree"] for f in data.pop("extra_fields").tolist()]
    for i, (ids, lp, s) in enumerate(zip(responses, logprobs, stats, strict=True)):
        assert len(ids) <= RESPONSE_LENGTH
        if s["depth"]:
            parent = i - int(keys[i].split("_")[1]) + int(s["parent"])  # the parent's row in this group
            t = int(s["depth"])
            assert ids[:t] == responses[parent][:t] and lp[:t] == logprobs[parent][:t]
    assert sum(s["depth"] > 0 for s in stats) >= 6

    # rewards: the parity checker, on the last token, as a reward loop would write them
    scores = [
        TASK.score((int(k[1]) % 10, 3, 4), " ".join(_words(ids))) + 0.25 * (len(ids) % 2)
        for k, ids in zip(keys, responses, strict=True)
    ]
    rm = [torch.zeros(len(ids)) for ids in responses]
    for r, s in zip(rm, scores, strict=True):
        r[-1] = s
    # ... and the actor's old log-probs (here the rollout's), written by the trainer before the advantage step
    nested = {
        "rm_scores": torch.nested.as_nested_tensor(rm, layout=torch.jagged),
        "old_log_probs": torch.nested.as_nested_tensor([torch.tensor(lp) for lp in logprobs], layout=torch.jagged),
    }
    tq.kv_batch_put(keys=keys, partition_id="train", fields=TensorDict(nested, batch_size=len(keys)))
    meta = KVBatchMeta(keys=keys, tags=[{"status": "success"}] * len(keys), partition_id="train")

    width = max(len(r) for r in responses)
    padded = torch.tensor([r + [0] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in responses])
    rewards = torch.nn.utils.rnn.pad_sequence(rm, batch_first=True)
    index = np.array([k.split("_")[0] for k in keys], dtype=object)
    for name in ("tempo", "grpo"):
        cfg.algorithm.adv_estimator = name
        metrics: dict = {}
        PPOTrainer._compute_advantage(types.SimpleNamespace(config=cfg, global_steps=1), meta, metrics)
        got = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]
        got = got.to_padded_tensor(0.0)
        if name == "tempo":
            expected = compute_tempo_advantage(rewards, mask, index, padded, response_attention_mask=mask)[0]
            assert metrics["tempo/shared_prefix_group_frac"] > 0.5  # the trees reached the estimator
        else:
            expected = core_algos.compute_grpo_outcome_advantage(rewards, mask, index)[0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)

    tree = read_step_metrics(tq, meta)
    assert tree["rollout_tree/saved_token_frac"] > 0.1 and tree["rollout_tree/branches_per_group"] > 0


@pytest.mark.slow
def test_validation_groups_stay_independent(chain) -> None:
    cfg, worker = chain
    keys_of = _generate(cfg, worker, ["v0", "v1"], validate=True)
    keys = [k for u in ("v0", "v1") for k in keys_of[u]]
    assert len(keys) == 8  # val_kwargs.n each
    fields = tq.kv_batch_get(keys=keys, partition_id="val", select_fields=["extra_fields"]).pop("extra_fields").tolist()
    assert all("tempo_tree" not in f for f in fields)  # the stock single-turn path


def _words(ids: list[int]) -> list[str]:
    words = TASK.words
    return [words[i] for i in ids if words[i] not in ("<eos>", "<pad>")]
